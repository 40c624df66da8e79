"""A real SSH server on 127.0.0.1 in the calling process, for melond's SSH path without Docker
(tests/node/test_ssh_inprocess.py, bench/bench_ssh.py).

The server (asyncssh's own tests/server.py does the same) accepts one public key the caller
generates, presents a host key the client must find in a known_hosts file the caller writes, and
runs whatever command the client asks for as a real local `/bin/sh -c` subprocess, pumping
stdin/stdout/stderr between the SSH channel and it. So `SshTransport` and `NodeSession` drive the
real first stage, helper, supervisor and jobs, over a real SSH connection.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import sys
from pathlib import Path

import asyncssh

from melond.nodes.transports import SshTransport

USER = pwd.getpwuid(os.geteuid()).pw_name
STEP = 10.0  # seconds for any one thing a caller waits on
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
