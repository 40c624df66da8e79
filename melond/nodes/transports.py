"""Ways to start the helper's first stage on a node and get its stdin/stdout.

Runs in melond (not shipped to nodes). The local pipe is the embedded default;
an SSH transport only has to provide the same two streams.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import sys
from typing import Protocol

from melond.config import Node
from melond.nodes.simulated import SIM_MEMORY_PER_CPU, SimTransport, machine
from melond.trust import check_input
from melon_remote.bootstrap import FIRST_STAGE


class Channel(Protocol):
    """A running first stage: bytes in, bytes out, and a way to end it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter | asyncio.WriteTransport

    async def stderr_lines(self) -> list[str]: ...
    def close(self) -> None: ...


CLOSE_GRACE = 5.0  # seconds a local helper has to leave once its stdin is closed


class LocalChannel:
    """The helper as a child process of melond on this machine."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdout and proc.stdin and proc.stderr
        self.reader = proc.stdout
        self.writer = proc.stdin
        self.stderr = proc.stderr

    async def stderr_lines(self) -> list[str]:
        data = await self.stderr.read()
        return data.decode("utf-8", "replace").splitlines()

    def close(self) -> None:
        """Closing stdin ends a helper; one that does not end (a broken or hostile program in its
        place) is killed after a grace period. Jobs are unaffected: their supervisor has a
        session of its own."""
        if self.proc.returncode is None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a dead pipe is fine
                pass
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self._kill_straggler)

    def _kill_straggler(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


class LocalTransport:
    """Starts the first stage with this interpreter; a new session so terminal signals miss it."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    async def open(self, spool: str, limits: str = "auto") -> LocalChannel:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-c", FIRST_STAGE, spool, limits,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=1 << 20,
        )
        return LocalChannel(proc)


class SshChannel:
    """The helper's first stage as a process on one persistent SSH connection."""

    def __init__(self, conn, proc) -> None:
        self.conn = conn
        self.proc = proc
        self.reader = proc.stdout
        self.writer = proc.stdin

    async def stderr_lines(self) -> list[str]:
        try:
            data = await asyncio.wait_for(self.proc.stderr.read(), 2)
        except Exception:  # noqa: BLE001 - best effort, for the error message only
            return []
        return data.decode("utf-8", "replace").splitlines()

    def close(self) -> None:
        self.conn.close()


# AES-GCM first: one AEAD call per packet, in hardware on any x86 of the last decade. asyncssh's
# default, chacha20-poly1305, builds a cipher and a MAC per packet in Python (about a tenth of
# melond's CPU with a node busy starting short jobs). Every OpenSSH since 6.2 offers GCM; the rest
# are fallbacks.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes256-ctr")


class SshTransport:
    """Reaches a node with asyncssh: host key verified, key authentication, keepalives."""

    def __init__(self, host: str, port: int, user: str | None, identity_file: str | None,
                 known_hosts: str | None, python: str = "python3", connect_timeout: float = 10.0,
                 keepalive: float = 5.0) -> None:
        self.host, self.port, self.user = host, port, user
        self.identity_file, self.known_hosts = identity_file, known_hosts
        self.python = python
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive

    async def open(self, spool: str, limits: str = "auto") -> SshChannel:
        import shlex
        conn = await self.connect()
        # Only our own constant first stage and the inventory's spool and limits reach the remote shell.
        command = shlex.join([self.python, "-c", FIRST_STAGE, spool, limits])
        try:
            proc = await conn.create_process(command, encoding=None)
        except BaseException:  # refused, or the boot's timeout cancelled us: the connection is ours to close
            conn.close()
            raise
        return SshChannel(conn, proc)

    async def connect(self):
        """The SSH connection alone (an asyncssh SSHClientConnection)."""
        import asyncssh
        options = {
            "port": self.port, "known_hosts": self.known_hosts or (),
            "connect_timeout": self.connect_timeout, "keepalive_interval": self.keepalive,
            "keepalive_count_max": 3, "encryption_algs": CIPHERS,
        }
        if self.known_hosts is None:
            options.pop("known_hosts")  # asyncssh's default: ~/.ssh/known_hosts
        if self.user:
            options["username"] = self.user
        if self.identity_file:
            options["client_keys"] = [self.identity_file]
        try:
            conn = await asyncssh.connect(self.host, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            where = self.known_hosts or "~/.ssh/known_hosts"
            raise ConnectionError(
                f"host key of {self.host}:{self.port} is unknown or changed ({exc}); check its fingerprint, then "
                f"trust it with: ssh-keyscan -p {self.port} {self.host} >> {where}") from None
        return conn


SYSTEM_SPOOL = "/var/lib/melon/spool"
USER_SPOOL = "~/.local/state/melon/spool"  # expanded by the helper, on the node


# What asyncssh reads from melond's user's ~/.ssh when the inventory names no file of its own.
DEFAULT_SSH_FILES = ("config", "known_hosts", "id_ed25519", "id_ecdsa", "id_rsa", "id_ed448", "id_dsa",
                     "id_ed25519_sk", "id_ecdsa_sk")


def check_default_ssh_files(node: Node) -> None:
    """The ~/.ssh files a node's login falls back to pass melond.trust, as the inventory's own do."""
    base = os.path.join(os.path.expanduser("~"), ".ssh")
    for name in DEFAULT_SSH_FILES:
        if (name == "known_hosts" and node.known_hosts) or (name.startswith("id_") and node.identity_file):
            continue
        check_input(os.path.join(base, name), "SSH file")


Transport = LocalTransport | SshTransport | SimTransport


def transport_for(node: Node, state_dir: str, name: str = "") -> tuple[Transport, str]:
    """How to reach a node (`name`: its machine, where it is simulated), and its spool path there."""
    if node.simulate:
        cpus = node.cpus or 1
        return SimTransport(machine(name, cpus, node.memory or SIM_MEMORY_PER_CPU * cpus)), "simulated"
    if not node.remote:
        return LocalTransport(node.python), node.spool or os.path.join(state_dir, "spool")
    check_default_ssh_files(node)
    login = node.user or pwd.getpwuid(os.geteuid()).pw_name
    spool = node.spool or (SYSTEM_SPOOL if login == "root" else USER_SPOOL)
    return SshTransport(node.host, node.port, node.user, node.identity_file, node.known_hosts,
                        node.python or "python3"), spool
