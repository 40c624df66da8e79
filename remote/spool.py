"""The node's job spool: one directory per job, every file written atomically.

Standard library only: streamed to compute nodes with the helper. The spool is
the node's memory across helper and melond restarts: a run's directory exists
once its start was claimed, `started.json` once it runs, `result.json` once it
ended. A directory is named for one run of a job (`17`, then `17.1` once it was
requeued), so a requeued job's new run never meets the old run's records, even
on the same node. The directory and its files are the helper's user's alone (a
script too large for the supervisor's request datagram travels in spec.json), so
a job cannot read another job's script nor rewrite its own limit or result.
"""
from __future__ import annotations

import json
import os
import shutil


RUN_FILES = ("result.json", "started.json", "spec.json", "limit", "cancel", "signals", "signals.taken")  # all a run's folder may hold


def run_key(job_id: int, run: int = 0) -> str:
    """The spool name of a job's run: its id, plus `.N` for its Nth requeue."""
    return f"{int(job_id)}.{int(run)}" if run else str(int(job_id))


def parse_key(name: str) -> tuple[int, int] | None:
    """(job id, run) from a spool name; None for anything else in the folder."""
    job, _, run = name.partition(".")
    if not job.isdigit() or (run and not run.isdigit()):
        return None
    return int(job), int(run or 0)


class JobDir:
    """Files of one run of a job under <spool>/jobs/<key>."""

    def __init__(self, spool: str, key: str) -> None:
        if parse_key(key) is None:
            raise ValueError(f"not a job run key: {key!r}")
        self.key = key
        self.root = os.path.join(spool, "jobs", key)

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

    def write_json(self, name: str, value: object) -> None:
        self.write_bytes(name, json.dumps(value).encode())

    def read_json(self, name: str) -> dict | None:
        try:
            with open(self.path(name), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def read_text(self, name: str) -> str:
        """The file's text, stripped; empty if it is missing."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def read_int(self, name: str, default: int) -> int:
        try:
            with open(self.path(name), "rb") as f:
                return int(f.read() or default)
        except (OSError, ValueError):
            return default

    def append_line(self, name: str, text: str) -> None:
        """One line added whole (O_APPEND): requests that queue up, such as signals to send."""
        fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)

    def take_lines(self, name: str) -> list[str]:
        """The lines queued in `name`, removing them: renamed first, so a line appended meanwhile
        lands in a new file for the next take rather than being lost."""
        taken = self.path(name + ".taken")
        try:
            os.replace(self.path(name), taken)
        except FileNotFoundError:
            return []
        try:
            with open(taken, "rb") as f:
                return f.read().decode(errors="replace").splitlines()
        finally:
            os.unlink(taken)

    def remove(self) -> None:
        """The files the spool writes, then the folder; anything else there (a temporary file
        a crash left) through the general walk."""
        for name in RUN_FILES:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.root)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(self.root, ignore_errors=True)


def run_keys(spool: str) -> list[str]:
    """Every job run the spool holds."""
    try:
        names = os.listdir(os.path.join(spool, "jobs"))
    except FileNotFoundError:
        return []
    return sorted((n for n in names if parse_key(n) is not None), key=parse_key)


def prepare(spool: str) -> None:
    """Create the spool, private to the helper's user: it holds scripts and environments."""
    os.makedirs(os.path.join(spool, "jobs"), 0o700, exist_ok=True)
    os.chmod(spool, 0o700)
    os.chmod(os.path.join(spool, "jobs"), 0o700)
