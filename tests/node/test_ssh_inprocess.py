"""melond's SSH path to a node, without Docker: a real asyncssh server on 127.0.0.1 in the test process.

The server (asyncssh's own tests/server.py does the same) accepts one public key the test
generates, presents a host key the client must find in a known_hosts file the test writes, and
runs whatever command the client asks for as a real local `/bin/sh -c` subprocess, pumping
stdin/stdout/stderr between the SSH channel and it. So `SshTransport` and `NodeSession` drive the
real first stage, helper, supervisor and jobs, over a real SSH connection.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import sys
import time
from pathlib import Path

import asyncssh
import psutil
import pytest

from melond.errors import NodeUnavailable
from melond.nodes.fleet import NodeSession, bootstrap
from melond.nodes.transports import SshTransport
from melon_remote.protocol import Op

USER = pwd.getpwuid(os.geteuid()).pw_name
MiB = 1024 * 1024
TEST_TIMEOUT = 20.0  # seconds for one test's whole event loop
STEP = 10.0  # seconds for any one thing the test waits on
CHUNK = 1 << 16


class Sshd:
    """A real SSH server on 127.0.0.1:0 whose sessions are local `/bin/sh -c COMMAND` processes."""

    def __init__(self, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey, *,
                 refuse_sessions: bool = False) -> None:
        self.host_key = host_key
        self.refuse_sessions = refuse_sessions  # a node whose sshd takes the login but no session
        self.hold: asyncio.Event | None = None  # when set: each session waits for it before its command runs
        self.authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        self.acceptor = None
        self.port = 0
        self.conns: list[asyncssh.SSHServerConnection] = []
        self.commands: list[str] = []  # every command a client ran
        self.users: list[str] = []  # the user each of those logged in as
        self.procs: list[asyncio.subprocess.Process] = []
        self.statuses: list[int] = []  # exit statuses reported back, in order
        self.sessions: set[asyncio.Task] = set()
        self.lost = asyncio.Event()  # a client connection went away

    async def start(self) -> Sshd:
        sshd = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                sshd.conns.append(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                sshd.lost.set()

            def session_requested(self) -> bool:
                return not sshd.refuse_sessions

        self.acceptor = await asyncssh.listen(
            "127.0.0.1", 0, server_factory=Server, server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized, encoding=None,
            # Without a process factory asyncssh asks session_requested(), which may refuse.
            process_factory=None if self.refuse_sessions else self._session,
            allow_scp=False, agent_forwarding=False, x11_forwarding=False)
        self.port = self.acceptor.get_port()
        return self

    async def __aenter__(self) -> Sshd:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        public = (key or self.host_key).export_public_key().decode().split()
        return f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n"

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        self.sessions.add(asyncio.current_task())
        self.commands.append(process.command)
        self.users.append(process.get_extra_info("username"))
        if self.hold is not None:
            await self.hold.wait()
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", process.command, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self.procs.append(proc)
        inbound = asyncio.ensure_future(self._pump_in(process, proc))
        try:
            await asyncio.gather(self._pump_out(proc.stdout, process.stdout),
                                 self._pump_out(proc.stderr, process.stderr))
            status = await proc.wait()
        finally:
            inbound.cancel()
            await asyncio.gather(inbound, return_exceptions=True)
            if proc.returncode is None:  # only when this task itself is cancelled
                proc.kill()
                await proc.wait()
        self.statuses.append(status)
        try:
            process.exit(status)
        except Exception:  # noqa: BLE001 - the client is gone: nobody to tell
            pass

    @staticmethod
    async def _pump_in(process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process) -> None:
        """Channel -> the command's stdin; its end (EOF, or the connection lost) closes that stdin."""
        try:
            while data := await process.stdin.read(CHUNK):
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (asyncssh.Error, OSError):
            pass  # connection lost, or the command stopped reading
        finally:
            proc.stdin.close()

    @staticmethod
    async def _pump_out(source: asyncio.StreamReader, channel: asyncssh.SSHWriter) -> None:
        """The command's stdout or stderr -> the channel, to the command's EOF (read to the end
        even once the channel is gone, so that the command never blocks on a full pipe)."""
        alive = True
        while data := await source.read(CHUNK):
            if alive:
                try:
                    channel.write(data)
                    await channel.drain()
                except (asyncssh.Error, OSError):
                    alive = False

    def abort_connections(self) -> None:
        """The network drops: every client connection cut, with no SSH goodbye."""
        for conn in self.conns:
            conn.abort()

    async def close(self) -> None:
        """Stop listening, close every connection, and wait for every command it ran."""
        self.acceptor.close()
        await self.acceptor.wait_closed()
        for conn in self.conns:
            conn.close()
        for conn in self.conns:
            await conn.wait_closed()
        if self.sessions:
            _, late = await asyncio.wait(self.sessions, timeout=STEP)
            for task in late:  # a command that would not leave on EOF: killed, reported below
                task.cancel()
            await asyncio.gather(*self.sessions, return_exceptions=True)
            assert not late, f"commands still running {STEP}s after their channel closed: {self.commands}"


class Recording(SshTransport):
    """The real SshTransport; it only keeps each connection it made, to wait for its close."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.conns: list[asyncssh.SSHClientConnection] = []

    async def connect(self):
        conn = await super().connect()
        self.conns.append(conn)
        return conn

    async def closed(self) -> None:
        for conn in self.conns:
            conn.close()
        for conn in self.conns:
            await asyncio.wait_for(conn.wait_closed(), STEP)


class Keys:
    """The test's client key (on disk, as an inventory names it) and the node's host key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = asyncssh.generate_private_key("ssh-ed25519")
        self.client = asyncssh.generate_private_key("ssh-ed25519")
        self.identity = root / "id_ed25519"
        self.client.write_private_key(str(self.identity))
        os.chmod(self.identity, 0o600)
        self.known_hosts = root / "known_hosts"

    def transport(self, sshd: Sshd, python: str = sys.executable, trusted: asyncssh.SSHKey | None = None) -> Recording:
        """A transport to the server, its known_hosts trusting `trusted` (default: the real host key)."""
        self.known_hosts.write_text(sshd.known_hosts_line(trusted))
        return Recording("127.0.0.1", sshd.port, USER, str(self.identity), str(self.known_hosts), python=python,
                         connect_timeout=STEP)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def run(main) -> None:
    """One test's event loop, bounded in time."""
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await main()
    asyncio.run(bounded())


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def all_gone(procs: list[psutil.Process], what: str) -> None:
    deadline = time.monotonic() + STEP
    while not all(gone(p) for p in procs):
        assert time.monotonic() < deadline, f"{what} still running: {[p for p in procs if not gone(p)]}"
        await asyncio.sleep(0.05)


def job(job_id: int, workdir: Path, script: str) -> dict:
    """A start request's job, shaped as melond/sched/launch.py:start_request builds it."""
    return {
        "id": job_id, "run": 0, "user": USER, "script": script, "args": [], "env": {"PATH": "/usr/bin:/bin"},
        "cwd": str(workdir), "output": str(workdir / f"job-{job_id}.out"), "error": None,
        "cpus": 1, "memory": 256 * MiB, "limit": 0, "kill_wait": 0.5, "tasks_max": 64, "signal": None,
    }


class Recorder:
    """A NodeSession's callbacks, as awaitable queues."""

    def __init__(self) -> None:
        self.ups: asyncio.Queue[dict] = asyncio.Queue()
        self.downs: asyncio.Queue[str] = asyncio.Queue()
        self.events: asyncio.Queue[dict] = asyncio.Queue()

    async def on_up(self, name: str, hello: dict) -> None:
        self.ups.put_nowait(hello)

    async def on_down(self, name: str, reason: str) -> None:
        self.downs.put_nowait(reason)

    def on_event(self, name: str, msg: dict) -> None:
        self.events.put_nowait(msg)

    def session(self, transport: SshTransport, spool: Path) -> NodeSession:
        return NodeSession("n1", transport, str(spool), on_up=self.on_up, on_down=self.on_down,
                           on_event=self.on_event, handshakes=asyncio.Semaphore(1), limits="none")


async def take(queue: asyncio.Queue, what: str):
    try:
        return await asyncio.wait_for(queue.get(), STEP)
    except TimeoutError:
        pytest.fail(f"no {what} within {STEP}s")


async def stop_session(session: NodeSession, running: asyncio.Task, transport: Recording, sshd: Sshd) -> None:
    """As melond stops: stop, then cancel the run task. That alone must end every helper's SSH
    session on the node; only then does the test close (again) the connections it saw made."""
    await session.stop()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    try:
        if sshd.sessions:
            _, late = await asyncio.wait(sshd.sessions, timeout=STEP)
            assert not late, "a helper's SSH session outlived NodeSession.stop()"
    finally:
        await transport.closed()


def test_bootstrap_over_ssh_says_hello_and_the_helper_leaves_when_the_channel_closes(keys, tmp_path):
    spool = tmp_path / "spool"

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            try:
                channel, decoder, info = await asyncio.wait_for(bootstrap(transport, str(spool), "none"), STEP)
                assert info["hostname"] == os.uname().nodename
                assert isinstance(info["cpus"], int) and info["cpus"] >= 1
                assert info["user"] == USER and info["spool"] == str(spool)
                assert info["backend"] == "none"
                assert len(sshd.commands) == 1 and sshd.commands[0].startswith(sys.executable + " -c ")
                assert sshd.users == [USER]
                node_side = [psutil.Process(sshd.procs[0].pid), *descendants(sshd.procs[0].pid)]
                assert psutil.Process(info["pid"]) in node_side  # the helper runs in the SSH session
                channel.close()
                await asyncio.wait_for(sshd.lost.wait(), STEP)
                await all_gone(node_side, "the helper or its supervisor, after the channel closed,")
                await asyncio.wait_for(asyncio.gather(*sshd.sessions), STEP)
                assert sshd.statuses == [0], "the helper did not leave cleanly on EOF"
            finally:
                await transport.closed()

    run(main)


def test_a_node_session_over_ssh_runs_a_job_end_to_end(keys, tmp_path):
    spool, work = tmp_path / "spool", tmp_path / "work"
    work.mkdir()
    out = work / "written"
    node_side: list[psutil.Process] = []

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, spool)
            running = asyncio.ensure_future(session.run())
            try:
                hello = await take(calls.ups, "on_up")
                assert hello["backend"] == "none" and session.up
                assert (await session.request(Op.PING))["time"] > 0
                node_side.extend(psutil.Process(p.pid) for p in sshd.procs)
                node_side.extend(d for p in sshd.procs for d in descendants(p.pid))
                script = f"#!/bin/sh\nprintf 'job %s as %s\\n' \"$MELON_JOB_ID\" \"$(id -un)\" > {out}\necho done\n"
                spec = job(1, work, script)
                spec["env"]["MELON_JOB_ID"] = "1"
                started = await session.request(Op.START, job=spec)
                assert started["already"] is False and started["pid"] > 0
                event = await take(calls.events, "exited event")
                assert (event["event"], event["job_id"], event["run"]) == ("exited", 1, 0)
                assert event["result"]["exit_code"] == 0 and event["result"]["reason"] == "exited", event
                assert out.read_text() == f"job 1 as {USER}\n"
                assert (work / "job-1.out").read_text() == "done\n"
            finally:
                await stop_session(session, running, transport, sshd)
            assert calls.downs.empty(), "the node was reported down"
            await all_gone(node_side, "the helper or its supervisor, after the session stopped,")
        assert sshd.statuses == [0], "the helper did not leave cleanly when the session stopped"

    run(main)


def test_a_wrong_host_key_is_refused_and_no_helper_starts(keys, tmp_path):
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            impostor = asyncssh.generate_private_key("ssh-ed25519")  # known_hosts trusts another key
            transport = keys.transport(sshd, trusted=impostor)
            try:
                with pytest.raises(ConnectionError) as refused:
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                message = str(refused.value)
                assert f"host key of 127.0.0.1:{sshd.port} is unknown or changed" in message
                assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {keys.known_hosts}" in message
                assert transport.conns == []
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # the client hung up
            finally:
                await transport.closed()
        assert sshd.commands == [] and sshd.procs == [], "a command ran over an unverified connection"
        assert not (tmp_path / "spool").exists()

    run(main)


def test_the_first_stage_failing_over_ssh_reports_its_stderr(keys, tmp_path):
    """SshChannel.stderr_lines: what the node's shell said reaches the error, over the channel."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd, python="/nonexistent/python3")
            try:
                with pytest.raises(ConnectionError) as failed:
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                assert "helper bootstrap failed: got b''" in str(failed.value)
                assert "/nonexistent/python3" in str(failed.value) and "not found" in str(failed.value)
            finally:
                await transport.closed()
        assert sshd.statuses == [127]

    run(main)


def test_a_dropped_connection_is_noticed_and_the_session_reconnects(keys, tmp_path):
    spool = tmp_path / "spool"

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, spool)
            running = asyncio.ensure_future(session.run())
            try:
                first = await take(calls.ups, "on_up")
                sshd.abort_connections()
                reason = await take(calls.downs, "on_down after the connection dropped")
                assert reason == "channel closed" or reason.startswith(("ConnectionLost", "ConnectionResetError")), reason
                assert not session.up
                with pytest.raises(NodeUnavailable, match="not connected"):
                    await session.request(Op.PING)  # refused at once, while the session backs off
                second = await take(calls.ups, "on_up of the reconnection")
                assert second["pid"] != first["pid"] and second["boot_id"] == first["boot_id"]
                assert len(transport.conns) == 2 and len(sshd.commands) == 2
                assert (await session.request(Op.PING))["time"] > 0
            finally:
                await stop_session(session, running, transport, sshd)
            assert calls.downs.empty(), "more than one loss reported"
        # The dropped connection's helper saw its stdin end and left cleanly, as the second one did.
        assert sshd.statuses == [0, 0]

    run(main)


def test_a_refused_session_closes_its_connection(keys, tmp_path):
    """A node that takes the login but refuses the session: the connection is closed, not left
    open with its keepalives running (each retry would leak one more)."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client, refuse_sessions=True) as sshd:
            transport = keys.transport(sshd)
            try:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # the client hung up by itself
                assert sshd.commands == []
            finally:
                await transport.closed()

    run(main)


def test_stopping_a_session_while_it_connects_starts_nothing(keys, tmp_path):
    """melond stops while a node's handshake is under way: the node is not reconciled (no on_up)
    and its channel is closed, so its helper leaves."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            sshd.hold = asyncio.Event()
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, tmp_path / "spool")
            running = asyncio.ensure_future(session.run())
            try:
                deadline = time.monotonic() + STEP
                while not sshd.commands:  # the helper's command reached the node; its boot is held
                    assert time.monotonic() < deadline, "the session never reached the node"
                    await asyncio.sleep(0.02)
                await session.stop()
                sshd.hold.set()  # the handshake completes after the stop
                await asyncio.wait_for(asyncio.shield(running), STEP)  # run() returns by itself
                assert calls.ups.empty() and not session.up, "a stopped session was reconciled"
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # and its connection closed
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                await transport.closed()
        assert sshd.statuses == [0], "the helper did not leave once its channel closed"

    run(main)

