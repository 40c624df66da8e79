"""The node's job spool: one directory per job, every file written atomically.

Standard library only: streamed to compute nodes with the helper. The spool is
the node's memory across helper and melond restarts: a job directory exists
once its start was claimed, `started.json` once it runs, `result.json` once it
ended. The directory and its files are the helper's user's alone (a job's
script travels in spec.json), so a job cannot read another job's script nor
rewrite its own limit or result.
"""
from __future__ import annotations

import json
import os
import shutil


class JobDir:
    """Files of one job under <spool>/jobs/<id>."""

    def __init__(self, spool: str, job_id: int) -> None:
        self.id = job_id
        self.root = os.path.join(spool, "jobs", str(job_id))

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def claim(self) -> bool:
        """Create the directory; False if it exists already (the start was claimed before)."""
        try:
            os.mkdir(self.root, 0o700)
            return True
        except FileExistsError:
            return False

    def exists(self, name: str) -> bool:
        return os.path.exists(self.path(name))

    def write_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        """Write-rename, so a reader sees the old file or the whole new one.

        No fsync here: only a job's result is worth one (`sync`, once the helper has been woken);
        everything else describes processes that a power cut ends anyway (the boot id then marks
        the job lost).
        """
        final = self.path(name)
        tmp = f"{final}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def sync(self, name: str) -> None:
        """Make an already written file, and its name, durable."""
        for path, flags in ((self.path(name), os.O_RDONLY), (self.root, os.O_RDONLY | os.O_DIRECTORY)):
            try:
                fd = os.open(path, flags)
            except OSError:
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_json(self, name: str, value: object) -> None:
        self.write_bytes(name, json.dumps(value).encode())

    def read_json(self, name: str) -> dict | None:
        try:
            with open(self.path(name), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def read_int(self, name: str, default: int) -> int:
        try:
            with open(self.path(name), "rb") as f:
                return int(f.read() or default)
        except (OSError, ValueError):
            return default

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def job_ids(spool: str) -> list[int]:
    """Every job the spool holds, by id."""
    try:
        names = os.listdir(os.path.join(spool, "jobs"))
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def prepare(spool: str) -> None:
    """Create the spool, private to the helper's user: it holds scripts and environments."""
    os.makedirs(os.path.join(spool, "jobs"), 0o700, exist_ok=True)
    os.chmod(spool, 0o700)
    os.chmod(os.path.join(spool, "jobs"), 0o700)
