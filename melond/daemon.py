"""Wiring: state dir, store, nodes, the job engine, API listeners, signals, shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil
from aiohttp import web

from melond import heap, logs
from melond.api.guard import protocol_factory
from melond.api.monitor import MONITOR, Monitor
from melond.api.routes import make_app
from melond.api.standby import make_standby_app
from melond.config import Inventory
from melond.engine.engine import Engine
from melond.engine.leadership import Leadership
from melond.errors import MelonError
from melond.files import check_private
from melond.nodes.fleet import NodeSession
from melond.nodes.state import NodeState
from melond.nodes.transports import transport_for
from melond.paths import SOCKET_NAME
from melond.sdnotify import Notifier
from melond.state.store import Store
from melond.trust import check_input, check_own, open_own_file, open_state_dir

log = logging.getLogger("melond")

MIB = 1024 * 1024
LOOPBACKS = ("127.0.0.1", "::1")
MAX_HANDSHAKES = 16  # SSH handshakes in flight at once, so a fleet reconnecting does not stampede
BACKLOG = 128  # pending connections per API listener, aiohttp's own default
LOCK_NAME = "melond.lock"
STATE_FOLDERS = ("spool", "keys")  # the local node's spool (scripts, environments) and melond's SSH keys


@dataclass
class Options:
    state_dir: str
    inventory: Inventory
    port: int | None = None
    hosts: tuple[str, ...] = ()  # --host; () is both loopbacks, as the original Melon's `http://[::1]:8080`
    kill_wait: float | None = None
    tls_cert: str | None = None  # --tls-cert/--tls-key; else the inventory's [tls]
    tls_key: str | None = None
    inventory_file: str | None = None  # where `inventory` was read from (None: the embedded node)
    inventory_source: str = "embedded"  # and why that file: --inventory, MELON_CONFIG or default


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for the TCP listener; refuses a key other users may read."""
    for path, what in ((cert, "TLS certificate"), (key, "TLS key")):
        if not os.path.isfile(path):
            raise MelonError(f"TLS: no such file {path}; make a certificate with `melond --gen-cert DIR`")
        check_input(path, what)
    check_private(key, mask=0o007)  # group-readable stays allowed: Debian's ssl-cert group convention
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise MelonError(f"TLS: cannot use certificate {cert} with key {key}: {exc.reason or exc}") from None
    return ctx


class Daemon:
    """One melond: owns the lock on its state dir for as long as it runs."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.state_dir = os.path.abspath(opts.state_dir)
        self.socket_path = os.path.join(self.state_dir, SOCKET_NAME)
        self._stop = asyncio.Event()
        self._lock_fd: int | None = None
        cert, key = opts.tls_cert, opts.tls_key
        if cert is None and opts.inventory.tls is not None:
            cert, key = opts.inventory.tls.cert, opts.inventory.tls.key
        if cert and opts.port is None:
            raise MelonError("a TLS certificate is set but there is no TCP listener; add --port")
        self.tls = tls_context(cert, key) if cert else None

    def _prepare_state_dir(self) -> None:
        """Open the state directory and take its lock, refusing anything another user could have
        planted or may change (melond.trust); the database's own files are checked by the store."""
        dir_fd = open_state_dir(self.state_dir)
        try:
            for name in STATE_FOLDERS:
                check_own(os.path.join(self.state_dir, name), "state folder")
            fd = open_own_file(dir_fd, self.state_dir, LOCK_NAME, "lock file")
        finally:
            os.close(dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MelonError(f"another melond already uses {self.state_dir}; stop it first "
                             f"(or pass a different --state-dir)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _nodes(self) -> dict[str, NodeState]:
        """Every node's capacity: the local node's from psutil, a remote node's from its probe
        once it connects; the inventory's `cpus` replaces the count, its `memory` caps it."""
        out = {}
        for name, node in self.opts.inventory.node_table().items():
            cpus = memory = 0
            if not node.remote:
                cpus = psutil.cpu_count() or 1
                memory = psutil.virtual_memory().total // MIB
            personal = self.opts.inventory.login_names() if node.personal else None
            out[name] = NodeState(name=name, partition=node.partition, cpus=node.cpus or cpus,
                                  memory=min(memory, node.memory or memory), cap_cpus=node.cpus,
                                  cap_memory=node.memory, personal=personal, devices=node.devices,
                                  max_cpus=self.opts.inventory.partition(node.partition).max_cpus_per_node)
        return out

    def _log_inventory(self) -> None:
        where = {"inventory": self.opts.inventory_file, "source": self.opts.inventory_source}
        if self.opts.inventory_file is None:
            log.info("no inventory file: one node, this machine", extra=where)
        else:
            log.info("inventory read", extra=where)

    async def run(self) -> None:
        notify = Notifier()  # first: the helpers started below must not inherit NOTIFY_SOCKET
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, _reopen_log)  # early: SIGHUP's default would stop melond
        self._prepare_state_dir()
        inv = self.opts.inventory
        kill_wait = self.opts.kill_wait if self.opts.kill_wait is not None else inv.kill_wait
        store = Store(inv.store.url or os.path.join(self.state_dir, "melon.db"), hold_limit=inv.store.lease)
        self._log_inventory()  # after the store: a database melond cannot open is its one line of stderr
        leadership = None
        if inv.store.url is not None:  # two melonds may share this database: lead only by the lease
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            own = [name for name, node in inv.node_table().items() if not node.remote and not node.simulate
                   and node.spool is None]
            if own:  # its spool is in this state directory: another login node's melond cannot see its jobs
                log.warning("a node local to this melond has no `spool` of its own: a melond on another machine "
                            "sharing this database cannot reach its jobs; give it a spool both reach, or keep to one "
                            "melond", extra={"nodes": own})
            leadership = Leadership(inv.store.url, inv.store.lease, self._address())
            store.read_only = True
            snapshot = lambda: Engine(store, inv, self._nodes(), kill_wait=kill_wait)  # noqa: E731 - its reads
            if not await self._stand_by(leadership, notify, snapshot):
                leadership.close()
                await store.close()
                self._release_lock()
                log.info("melond stopped (it was standing by)")
                return
            leadership.start_renewing()  # before the engine loads the queue, however long that takes
            store.epoch, store.read_only = leadership.epoch, False
            store.on_fenced = lambda exc: loop.call_soon_threadsafe(leadership.step_down, str(exc))
        nodes = self._nodes()
        for row in store.nodes():
            if row["name"] in nodes and row.get("drain"):
                nodes[row["name"]].drain = row["drain"]  # an operator's drain survives restarts
        engine = Engine(store, inv, nodes, kill_wait=kill_wait)
        handshakes = asyncio.Semaphore(MAX_HANDSHAKES)
        engine.sessions.personal, engine.sessions.logins = inv.personal_nodes(), inv.login_names()
        for link, (_, _, node) in inv.links().items():
            transport, spool = transport_for(node, self.state_dir, link)
            engine.sessions[link] = NodeSession(link, transport, spool, on_up=engine.nodes_life.up,
                                                on_down=engine.nodes_life.down, on_event=engine.on_event,
                                                handshakes=handshakes, limits=node.limits)
            if leadership is not None:  # every request carries the epoch; a node's refusal means another leads
                engine.sessions[link].epoch = leadership.epoch
                engine.sessions[link].on_stale = leadership.step_down
                engine.sessions[link].may_act = leadership.valid
        engine.leadership = leadership
        runner = web.AppRunner(make_app(engine), access_log=None, handle_signals=False)
        await runner.setup()
        serve = protocol_factory(runner.server, inv.limits)  # each connection counted and timed (api/guard.py)
        listeners = await self._serve(serve)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        tasks = [asyncio.ensure_future(s.run()) for s in engine.sessions.values()]
        tasks.append(asyncio.ensure_future(engine.loop.run_forever()))
        tasks.append(asyncio.ensure_future(engine.elastic.run_forever()))
        tasks.append(asyncio.ensure_future(engine.gpu_usage.run_forever()))
        tasks.append(asyncio.ensure_future(engine.priorities.run_forever()))
        tasks.append(asyncio.ensure_future(engine.notices.run_forever()))
        tasks.append(asyncio.ensure_future(engine.notifier.run_forever()))
        tasks.append(asyncio.ensure_future(notify.watchdog_forever(_healthy(runner.app[MONITOR]))))
        if leadership is not None:
            tasks.append(asyncio.ensure_future(leadership.watch()))
        collector = heap.Collector()  # the state loaded is frozen: full collections scan only what is new
        collector.install()
        log.info("melond ready", extra={"socket": self.socket_path, "port": self.opts.port,
                                        "tls": self.tls is not None, "nodes": list(engine.nodes),
                                        "kill_wait": kill_wait, "pid": os.getpid()})
        notify.send("READY=1", f"STATUS=serving {self.socket_path}, {len(engine.nodes)} node(s)")
        await self._stop.wait()
        collector.uninstall()
        notify.send("STOPPING=1")
        log.info("melond stopping: jobs keep running and are adopted at the next start")
        for listener in listeners:
            listener.close()  # no new connections; runner.cleanup closes the open ones
        await runner.cleanup()
        await engine.stop()
        for s in engine.sessions.values():
            await s.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
        if leadership is not None:  # every commit is in: a standby may lead at once
            await leadership.give_back()
            leadership.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._release_lock()
        log.info("melond stopped")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:  # the state dir is free for the next melond (one in this process too)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _address(self) -> str:
        """Where clients reach this melond, as the lease's row tells them: its TCP endpoint, else
        its socket on this host."""
        host = socket.getfqdn()
        if self.opts.port is None:
            return f"unix:{self.socket_path} on {host}"
        if self.opts.hosts and self.opts.hosts[0] not in ("0.0.0.0", "::"):
            host = self.opts.hosts[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.opts.port}"

    async def _stand_by(self, leadership: Leadership, notify: Notifier, snapshot: Callable[[], Engine]) -> bool:
        """Serve the API's standby answers (reads of the database, by engines `snapshot` loads) until
        this melond leads (True) or is stopped (False)."""
        runner = web.AppRunner(make_standby_app(leadership, snapshot), access_log=None, handle_signals=False)
        await runner.setup()
        serve = protocol_factory(runner.server, self.opts.inventory.limits)
        listeners = await self._serve(serve)
        notify.send("READY=1", "STATUS=standing by: another melond leads")
        watchdog = asyncio.ensure_future(notify.watchdog_forever(_standing))  # systemd's watchdog, meanwhile
        waiting = asyncio.ensure_future(leadership.stand_by())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
        for listener in listeners:
            listener.close()
        await runner.cleanup()
        stopped.cancel()
        watchdog.cancel()
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            return False
        if waiting.result() <= 0:  # (result() raises what stand_by raised: melond then exits, leading nothing)
            raise MelonError(f"melond could not claim the lease (epoch {waiting.result()})")
        return True

    async def _serve(self, serve: Callable[[], asyncio.Protocol]) -> list[asyncio.Server]:
        """The API's listeners: the Unix socket, and TCP with --port."""
        loop = asyncio.get_running_loop()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # stale: we hold the lock, so nobody else serves it
        listeners = [await loop.create_unix_server(serve, self.socket_path, backlog=BACKLOG)]
        os.chmod(self.socket_path, 0o666)  # every local user may connect; SO_PEERCRED says who they are
        if self.opts.port is not None:
            listeners += await self._listen(serve)
        return listeners

    async def _listen(self, serve: Callable[[], asyncio.Protocol]) -> list[asyncio.Server]:
        """TCP on each --host; by default on both loopbacks, where ::1 may be missing (IPv6 off).
        A TLS handshake gets the time a request's head gets (its connection is counted only once
        the handshake is done)."""
        loop = asyncio.get_running_loop()
        handshake = self.opts.inventory.limits.header_timeout if self.tls else None
        listeners = []
        for host in self.opts.hosts or LOOPBACKS:
            try:
                listeners.append(await loop.create_server(serve, host, self.opts.port, ssl=self.tls, backlog=BACKLOG,
                                                          ssl_handshake_timeout=handshake))
            except OSError as exc:
                if self.opts.hosts or host == LOOPBACKS[0]:
                    raise MelonError(f"cannot listen on {host} port {self.opts.port}: {exc.strerror}; "
                                     "free the port or choose another with --port") from None
                log.warning("not listening on ::1: %s (is IPv6 off?)", exc.strerror)
        return listeners


def _reopen_log() -> None:
    """SIGHUP: reopen the log file, as logrotate's postrotate asks; melond goes on either way."""
    try:
        if logs.reopen():
            log.info("log file reopened (SIGHUP)")
    except OSError as exc:
        log.warning("SIGHUP: cannot reopen the log file, still writing the old one: %s", exc)


async def _standing() -> bool:
    """A standby's answer to the watchdog: its event loop turns (what it waits on is the lease)."""
    return True


def _healthy(monitor: Monitor) -> Callable[[], Awaitable[bool]]:
    """The watchdog's question: does /health's check pass (a write reaches the database)?"""
    async def ask() -> bool:
        _, status = await monitor.health()
        return status == 200
    return ask
