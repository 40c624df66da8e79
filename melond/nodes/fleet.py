"""Node sessions: one channel per node to its helper, kept up with backoff and jitter.

A session turns the helper's frames into awaited replies and event callbacks;
it knows nothing of jobs or the store. The daemon reacts to `on_up` (reconcile
the node's spool with the store) and `on_event` (a job ended).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from melond.errors import MelonError, NodeTimeout, NodeUnavailable, NotLeader, StaleEpoch, node_error
from melon_remote import bootstrap as bootstrap_mod
from melon_remote import wire
from melon_remote.protocol import Event, Op

log = logging.getLogger("melond.fleet")

BOOT_TIMEOUT = 20.0
REQUEST_TIMEOUT = 30.0
QUIET_PING = 15.0  # seconds without a word from a node's helper before asking it for one
PING_TIMEOUT = 30.0  # seconds a helper has to answer a ping: one silent that long is down, and reached again


@dataclass
class Backoff:
    """Exponential backoff with full jitter, so a fleet of nodes does not reconnect in step."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        # The exponent stops growing long before the cap matters: 2**attempt as a float would
        # overflow after about a thousand failures, a node down for a day or so.
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 64))
        self.attempt += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


async def bootstrap(transport, spool: str, limits: str = "auto"):
    """Start the helper through a transport; return (channel, decoder, the helper's hello info)."""
    channel = await transport.open(spool, limits)
    try:
        await _read_marker(channel)
        channel.writer.write(bootstrap_mod.payload())
        decoder = wire.Decoder()
        while True:
            data = await channel.reader.read(65536)
            if not data:
                err = " ".join((await channel.stderr_lines())[-5:])
                raise ConnectionError(f"helper exited during start-up; stderr: {err or '(empty)'}")
            try:
                messages = decoder.feed(data)
            except wire.FrameError as exc:
                raise ConnectionError(f"protocol error before hello: {exc}") from None
            for msg in messages:
                if msg.get("event") == Event.HELLO and isinstance(msg.get("info"), dict):
                    return channel, decoder, msg["info"]
                raise ConnectionError(f"helper spoke before saying hello: {repr(msg)[:200]}")
    except BaseException:
        channel.close()
        raise


async def _read_marker(channel) -> None:
    """Exactly the ready marker's bytes, refused at the first byte that differs: whatever else
    answers (a shell banner, another program) is reported with the bytes seen, never waited on
    for a newline that may not come."""
    seen = b""
    while len(seen) < len(bootstrap_mod.READY):
        chunk = await channel.reader.read(len(bootstrap_mod.READY) - len(seen))
        seen += chunk
        if not chunk or not bootstrap_mod.READY.startswith(seen):
            err = " ".join((await channel.stderr_lines())[-5:]) if not chunk else "(not read)"
            raise ConnectionError(f"helper bootstrap failed: got {seen!r}; stderr: {err or '(empty)'}")


class NodeSession:
    """The live channel to one node's helper."""

    def __init__(self, name: str, transport, spool: str, *,
                 on_up: Callable[[str, dict], Awaitable[None]],
                 on_down: Callable[[str, str], Awaitable[None]],
                 on_event: Callable[[str, dict], None],
                 handshakes: asyncio.Semaphore, limits: str = "auto") -> None:
        self.name = name
        self.limits = limits
        self.transport = transport
        self.spool = spool
        self.on_up, self.on_down, self.on_event = on_up, on_down, on_event
        self.handshakes = handshakes
        self.info: dict | None = None
        self._channel = None
        self._outbox = wire.Outbox(self._write)
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._connected = asyncio.Event()
        self._stopping = False
        self.backoff = Backoff()
        self.last_heard: float | None = None  # epoch seconds of the helper's last message (the UI's "last contact")
        self._heard = 0.0  # the same, on the monotonic clock (what the pings' timing reads)
        # For `/metrics`: helpers started (each with its own job supervisor), connections lost
        # after they were up, and the last ping's round trip in seconds.
        self.helper_starts = 0
        self.losses = 0
        self.round_trip: float | None = None
        self.epoch = 0  # the leading melond's fencing token, sent with each request (0: none; remote/fence.py)
        self.on_stale: Callable[[str], None] | None = None  # the node has heard a newer melond's epoch
        self.may_act: Callable[[], bool] | None = None  # false: this melond no longer leads, send nothing

    @property
    def up(self) -> bool:
        return self._connected.is_set()

    async def run(self) -> None:
        """Connect, serve, and reconnect until stopped."""
        while not self._stopping:
            reason = "stopped"
            try:
                async with self.handshakes:
                    decoder, hello = await asyncio.wait_for(self._connect(), BOOT_TIMEOUT)
                if self._stopping:  # stopped while the handshake ran: this channel serves nobody
                    self._lost("melond stopping")
                    break
                self.info = hello
                self.last_heard, self._heard = time.time(), time.monotonic()
                self.helper_starts += 1
                self._connected.set()
                log.info("node up", extra={"node": self.name, "backend": hello.get("backend"),
                                           "cpus": hello.get("cpus"), "memory_mib": hello.get("memory")})
                serving = asyncio.ensure_future(self._serve(decoder))
                try:
                    await self.on_up(self.name, hello)
                except BaseException:
                    serving.cancel()
                    raise
                # Only a node melond has taken back (reconciled) starts its backoff afresh: one
                # whose reconcile fails each time (the store cannot record it) is retried ever
                # less often, and does not flap up and down.
                self.backoff.reset()
                reason = await serving
            except asyncio.CancelledError:
                self._lost("melond stopping")  # the channel too: the helper leaves, its jobs do not
                raise
            except TimeoutError as exc:  # (asyncio's says nothing)
                reason = f"TimeoutError: {exc}" if str(exc) else f"no answer within {BOOT_TIMEOUT:g} s of connecting"
            except Exception as exc:  # noqa: BLE001 - any failure means "down, retry later"
                reason = f"{type(exc).__name__}: {exc}"
            if self.up:
                self.losses += 1
            self._lost(reason)
            if self._stopping:
                break
            try:
                await self.on_down(self.name, reason)
            except Exception:  # noqa: BLE001 - recording the loss must not end the reconnecting
                log.exception("recording a node's loss failed", extra={"node": self.name})
            delay = self.backoff.next()
            log.warning("node down", extra={"node": self.name, "reason": reason, "retry_in": round(delay, 2)})
            await asyncio.sleep(delay)

    async def _connect(self) -> tuple[wire.Decoder, dict]:
        self._channel, decoder, hello = await bootstrap(self.transport, self.spool, self.limits)
        return decoder, hello

    async def _serve(self, decoder: wire.Decoder) -> str:
        """Until the channel closes, or its helper stops answering while it stays open (a hung
        node behind a live connection, a stopped helper): why it ended."""
        reading = asyncio.ensure_future(self._read_frames(decoder))
        pinging = asyncio.ensure_future(self._ping_when_quiet())
        try:
            done, _ = await asyncio.wait({reading, pinging}, return_when=asyncio.FIRST_COMPLETED)
            reason = reading.result() if reading in done else pinging.result()
        finally:
            reading.cancel()
            pinging.cancel()
        self._fail_pending(reason)  # on_up may be awaiting a reply that will never come
        return reason

    async def _ping_when_quiet(self) -> str:
        """A quiet node is asked for a ping now and then, so its last contact stays recent; the
        first comes at once, so that a node's round trip is known from its start. Returns once a
        ping goes unanswered for PING_TIMEOUT, as Slurm stops waiting for a node that does not
        respond: the connection is dropped and made again, and a node that cannot be reached is
        lost after node_timeout."""
        while await self._ping():
            await asyncio.sleep(QUIET_PING)
            while (quiet := time.monotonic() - self._heard) < QUIET_PING:  # (a clock stepped back waits no longer)
                await asyncio.sleep(QUIET_PING - quiet)
        return f"no answer to a ping within {PING_TIMEOUT:g} s"

    async def _ping(self) -> bool:
        """False when the helper did not answer in time."""
        began = time.monotonic()
        try:
            await self.request(Op.PING, timeout=PING_TIMEOUT)
        except NodeTimeout:
            return False
        except MelonError:
            return True  # a lost channel ends the serving by itself
        self.round_trip = time.monotonic() - began
        return True

    async def _read_frames(self, decoder: wire.Decoder) -> str:
        reader = self._channel.reader
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return "channel closed"
            self.last_heard, self._heard = time.time(), time.monotonic()
            try:
                messages = decoder.feed(data)
            except wire.FrameError as exc:
                log.error("garbage from node helper", extra={"node": self.name, "error": str(exc)})
                return f"protocol error: {exc}"
            for msg in messages:
                if "event" in msg:
                    self.on_event(self.name, msg)
                    continue
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    def _lost(self, reason: str) -> None:
        self._connected.clear()
        self._outbox.clear()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._fail_pending(reason)

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NodeUnavailable(f"node {self.name} went down: {reason}"))
        self._pending.clear()

    async def request(self, op: Op, timeout: float = REQUEST_TIMEOUT, **fields) -> dict:
        """Send one request and wait for its reply."""
        if not self.up or self._channel is None:
            raise NodeUnavailable(f"node {self.name} is not connected")
        if self.may_act is not None and not self.may_act():
            raise NotLeader(f"this melond no longer leads: nothing was sent to node {self.name}")
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._outbox.put({"id": rid, "op": op, **fields, **({"epoch": self.epoch} if self.epoch else {})})
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NodeTimeout(f"node {self.name} did not answer {op!r} within {timeout:g} s") from None
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            error = node_error(self.name, reply.get("error") or {})
            if isinstance(error, StaleEpoch) and self.on_stale is not None:
                self.on_stale(str(error))
            raise error
        return reply.get("result") or {}

    def _write(self, data: bytes) -> None:
        if self._channel is not None:
            self._channel.writer.write(data)

    async def stop(self) -> None:
        """Close the channel: the helper exits, the jobs do not."""
        self._stopping = True
        self._lost("melond stopping")
