"""This melond's part in leading a PostgreSQL-backed cluster: standing by until the lease is
free, then keeping it, and stepping down the moment it may have lost it.

The lease is the database's (melond/state/lease.py). This melond also keeps its own bound: a
renewal sent at monotonic time t holds until t + lease at the latest, whatever the database
answers later. Past that bound, it acts on nothing (`valid()` is asked before every API
request and every node request), steps down and exits: a melond paused (SIGSTOP, a stalled VM)
wakes up to find it may no longer lead, whatever its event loop runs first. What it might still
try is refused twice over: its writes by the database (each group commit checks the epoch), its
requests by the nodes (each carries the epoch, and a node refuses one older than it has heard).
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from melond.state import lease
from melond.state.lease import Leader

log = logging.getLogger("melond.leadership")

LOOKS_PER_LEASE = 5  # a standby tries to claim every lease / 5 seconds
RENEWALS_PER_LEASE = 3  # the leader renews every lease / 3 seconds, on a thread of its own
STEP_DOWN_GRACE = 1.0  # seconds a melond stepping down answers `not_leader` before it exits
EXIT_STEPPED_DOWN = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts it again, as a standby


class Leadership:
    """Standing by (`stand_by`), leading (`start_renewing`, `watch`), stepping down."""

    def __init__(self, url: str, lease_seconds: float, address: str | None) -> None:
        self.url = url
        self.lease = lease_seconds
        self.address = address  # where clients reach this melond, as the row tells the others
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.epoch = 0  # this melond's, once it leads
        self.since: float | None = None  # when it began to lead (epoch seconds)
        self.leader: Leader | None = None  # the row as last read (a standby's view of who leads)
        self._valid_until = 0.0  # monotonic: the lease as this melond may count on it
        self.stepped_down = False
        self._renewer: threading.Thread | None = None
        self._closing = threading.Event()
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the session

    @property
    def leads(self) -> bool:
        return self.epoch > 0

    def valid(self) -> bool:
        """Whether this melond may act now: asked before each node request and each API request,
        so that one waking from a pause acts on nothing, whatever its event loop runs first."""
        return not self.stepped_down and time.monotonic() < self._valid_until

    def step_down(self, reason: str) -> None:
        """This melond may no longer lead: from now on it acts on nothing (`valid` is false: the API
        answers `not_leader`, no request leaves for a node, the database refuses its writes), and
        it exits once those answers are out. Its jobs run on (their supervisors are the nodes'),
        the melond that leads adopts them, and systemd starts this one again, to stand by."""
        if self.stepped_down:
            return
        self.stepped_down = True
        log.critical("melond steps down: %s", reason, extra={"reason": reason, "epoch": self.epoch})
        asyncio.get_running_loop().call_later(STEP_DOWN_GRACE, _exit)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One lease statement on this melond's own session (never behind a group commit)."""
        async with self._lock:
            return await asyncio.to_thread(self._run, fn, *args)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        from melond.state import postgres
        if self._conn is None or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            # A claim waits on the row's lock no longer than a look: a paused leader's transaction
            # holding it is ended by the server within the lease (Store's hold_limit).
            self._conn = postgres.Connection(self.url, {"lock_timeout": f"{int(self._look() * 1000)}ms"})
        return fn(self._conn, *args)

    async def stand_by(self) -> int:
        """Wait until this melond leads; its epoch."""
        told: tuple | None = None
        while True:
            sent = time.monotonic()
            try:
                epoch = await self._call(lease.claim, self.holder, self.address, self.lease)
                if epoch is None:
                    self.leader = await self._call(lease.read)
            except Exception as exc:  # noqa: BLE001 - any failure: look again later
                epoch = None
                if told != ("unreachable",):
                    log.warning("standing by: cannot reach the database (%s)", " ".join(str(exc).split())[:200])
                    told = ("unreachable",)
            if epoch is not None:
                self.epoch, self.since, self._valid_until = epoch, time.time(), sent + self.lease
                log.warning("melond leads", extra={"epoch": epoch, "holder": self.holder, "address": self.address})
                return epoch
            if self.leader is not None and told != (self.leader.holder, self.leader.epoch):
                told = (self.leader.holder, self.leader.epoch)
                log.info("standing by", extra={"leader": self.leader.holder, "address": self.leader.address,
                                               "epoch": self.leader.epoch})
            await asyncio.sleep(self._next_look())

    def _look(self) -> float:
        return self.lease / LOOKS_PER_LEASE

    def _next_look(self) -> float:
        """Seconds until the next try: a look every lease/5 (a lease given back is seen soon), and
        one just past the moment the lease as last read runs out (a dead leader's, taken over at
        once, not up to a look later)."""
        every = self._look()
        row = self.leader
        if row is None or not row.live:
            return every
        return min(every, max(0.01, row.expires - row.now + 0.01))

    def start_renewing(self) -> None:
        """Renew the lease from now on, on a thread of its own with its own session: renewals go
        on while the event loop is busy (a new leader loading 100,000 jobs, a large commit's
        aftermath), and stop only when the process does (a pause) or the database refuses."""
        loop = asyncio.get_running_loop()
        self._renewer = threading.Thread(target=self._renew_forever, args=(loop,), name="melon-lease", daemon=True)
        self._renewer.start()

    def _renew_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        from melond.state import postgres
        conn = None
        try:
            while not self._closing.wait(self.lease / RENEWALS_PER_LEASE) and not self.stepped_down:
                if not self.valid():
                    return  # the watcher on the loop steps down
                sent = time.monotonic()
                try:
                    if conn is None or conn.broken:
                        conn = postgres.Connection(self.url)
                    renewed = lease.renew(conn, self.holder, self.epoch, self.lease)
                except Exception as exc:  # noqa: BLE001 - unreachable for now: the bound decides
                    log.warning("cannot renew the lease (%s); leading until %.1f s from now unless renewed",
                                " ".join(str(exc).split())[:200], self._valid_until - time.monotonic())
                    continue
                if not renewed:
                    loop.call_soon_threadsafe(self.step_down, f"another melond has claimed the lease since epoch "
                                                              f"{self.epoch}")
                    return
                self._valid_until = sent + self.lease
        finally:
            if conn is not None:
                conn.close()

    async def watch(self) -> None:
        """Step down once the lease may have run out (no renewal got through in time, or this
        melond was paused): looked at every lease/10 on the event loop."""
        while not self.stepped_down:
            await asyncio.sleep(self.lease / 10)
            if not self.valid():
                self.step_down(f"its lease (epoch {self.epoch}) ran out before it was renewed: melond was paused, "
                               f"or the database did not answer for {self.lease:g} s")

    async def give_back(self) -> None:
        """A clean stop: end the lease now, so that a standby takes over at its next look."""
        self._closing.set()
        if self._renewer is not None:
            await asyncio.to_thread(self._renewer.join)
        if self.leads and not self.stepped_down:
            try:
                await self._call(lease.give_back, self.holder, self.epoch)
            except Exception as exc:  # noqa: BLE001 - the lease then runs out by itself
                log.warning("could not give the lease back (%s); a standby takes over once it runs out", exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _exit() -> None:
    logging.shutdown()
    os._exit(EXIT_STEPPED_DOWN)
