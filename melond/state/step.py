"""A step: one `srun` inside a job, numbered as Slurm numbers them (`J.0`, `J.1`, ...).

The batch script is the job's `batch` step, whose figures are the job's own; the rows here are
the steps srun starts. A step is recorded when srun asks for its number and closed when srun
reports how its tasks ended, or with the job's end if srun never does (killed with the job).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

RUNNING, COMPLETED, FAILED, CANCELLED, OUT_OF_MEMORY = "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY"
COLUMNS = ("job_id", "run", "step_id", "name", "state", "node", "ntasks", "cpus", "start_time", "end_time",
           "exit_code", "exit_signal", "cpu_time", "max_rss", "cpu_ids", "gres_ids")


@dataclass(slots=True, kw_only=True)
class Step:
    job_id: int
    run: int  # the job's run it belongs to: a requeued job numbers its steps from 0 again
    step_id: int
    name: str
    state: str = RUNNING
    node: str | None = None
    ntasks: int = 1
    cpus: int = 0
    start_time: float = 0.0
    end_time: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    cpu_time: float | None = None
    max_rss: int | None = None
    cpu_ids: str | None = None  # the job's CPUs it holds, where the job is pinned ("0-1")
    gres_ids: str | None = None  # the job's GPUs it asked for and holds, by node ("n1:0-1"); None: it shares them all

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Step:
        return cls(**{k: row[k] for k in COLUMNS})

    def public(self) -> dict[str, Any]:
        return asdict(self)


def end_state(exit_code: int | None, signal: int | None, oom: bool = False) -> str:
    """A finished step's state as sacct shows it (as_mysql_job.c): OOM, a signal, an exit code."""
    if oom:
        return OUT_OF_MEMORY
    if signal:
        return CANCELLED
    return FAILED if exit_code else COMPLETED
