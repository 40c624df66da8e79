"""A private PostgreSQL server for the tests: Debian's postgresql-15 binaries, a cluster made by
initdb in a folder of its own, run as an unprivileged user (the server refuses root), reached on
a Unix socket alone (no TCP port, nothing shared with the machine's own clusters).

fsync is off: the tests kill and restart the server, never the machine, and an operating system
that outlives the server keeps what it wrote; this saves seconds a test on a busy disk.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import psycopg

ROLE = "melon"
RUN_AS = "nobody"  # the server's processes: not root, which postgres refuses


def binaries() -> str | None:
    """The folder of the newest PostgreSQL installed (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


class PgServer:
    def __init__(self) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql-15)")
        self.root = Path(tempfile.mkdtemp(prefix="melon-pg-", dir="/tmp"))  # short: a socket path's bound
        self.data, self.socket, self.log = self.root / "data", self.root / "sock", self.root / "server.log"
        self.socket.mkdir()
        user = pwd.getpwnam(RUN_AS)
        self._uid, self._gid = user.pw_uid, user.pw_gid
        for path in (self.root, self.socket):
            os.chown(path, self._uid, self._gid)
        self._names = itertools.count(1)
        self._run(f"{self.bin}/initdb", "-D", str(self.data), "-A", "trust", "-U", ROLE, "--no-locale", "-E",
                  "UTF8", "--no-sync")
        self.start()

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        def drop() -> None:
            os.setgid(self._gid)
            os.setgroups([])
            os.setuid(self._uid)
        return subprocess.run(argv, preexec_fn=drop, capture_output=True, text=True, timeout=60, check=check,
                              cwd=self.root)

    def start(self) -> None:
        options = (f"-k {self.socket} -c listen_addresses='' -c fsync=off -c full_page_writes=off "
                   f"-c max_connections=200")
        self._run(f"{self.bin}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(f"{self.bin}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """The server killed outright (kill -9 of the postmaster and its backends): every session
        drops at once, and nothing is shut down cleanly (the next start recovers from its log)."""
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        doomed = [postmaster, *postmaster.children(recursive=True)]
        for proc in doomed:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(doomed, timeout=30)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database of its own (a test's): its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
