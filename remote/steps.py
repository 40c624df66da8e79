"""Which of a job's processes are its steps: what srun started inside it.

Standard library only: streamed to compute nodes with the helper. Slurm sends `scancel -s SIG`
and `sbatch --signal=SIG@T` to a job's steps and not to its batch shell, whose shell would
otherwise die of a signal meant for the program (PyTorch Lightning's SIGUSR1, submitit's
SIGUSR2). Melon's srun marks the environment of every task it starts with STEP_MARK, naming
the job; a task's children inherit it, so a step is every process whose environment carries
the mark for this job. A mark inherited by another job (sbatch run from a step) names the
other job's id, so it never makes that job's batch shell a step.
"""
from __future__ import annotations

import os

from .protocol import STEP_MARK


def session_members(session: int) -> list[int]:
    """The processes of a session: a job's processes where no cgroup holds them (the leader
    starts the session, and only a process that leaves it with setsid escapes)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(session).encode():
            found.append(int(name))
    return found


def is_step(pid: int, job_id: int | str, step: str | None = None) -> bool:
    """Does process `pid` run in one of job `job_id`'s steps (in step `step` only, if given)?"""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:  # gone, or not ours to read
        return False
    if step is not None:
        return f"{STEP_MARK}={job_id}.{step}".encode() in environ.split(b"\0")
    mark = f"{STEP_MARK}={job_id}.".encode()
    return any(entry.startswith(mark) for entry in environ.split(b"\0"))


def step_pids(pids: list[int], job_id: int | str, step: str | None = None) -> list[int]:
    return [pid for pid in pids if is_step(pid, job_id, step)]
