"""Ways to start the helper's first stage on a node and get its stdin/stdout.

Runs in melond (not shipped to nodes). The local pipe is the embedded default;
an SSH transport only has to provide the same two streams.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Protocol

from remote.bootstrap import FIRST_STAGE


class Channel(Protocol):
    """A running first stage: bytes in, bytes out, and a way to end it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter | asyncio.WriteTransport

    async def stderr_lines(self) -> list[str]: ...
    def close(self) -> None: ...


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
        if self.proc.returncode is None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a dead pipe is fine
                pass

    async def wait_closed(self) -> None:
        await self.proc.wait()


class LocalTransport:
    """Starts the first stage with this interpreter; a new session so terminal signals miss it."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    async def open(self, spool: str) -> LocalChannel:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-c", FIRST_STAGE, spool,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=1 << 20,
        )
        return LocalChannel(proc)

    def describe(self) -> str:
        return f"local pipe ({self.python})"
