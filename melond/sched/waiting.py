"""Why a job waits in the queue itself (Slurm's Priority and Resources), in words: the jobs
ahead of it and when the scheduler's plan starts it. Limits have their own sentences
(melond.sched.sharing.explain). Pure: the queue and the plan's figures come in as arguments."""
from __future__ import annotations

from dataclasses import dataclass

from melond.spec.timespec import format_clock


@dataclass(frozen=True, slots=True)
class Ahead:
    """The first of the jobs planned before the waiting one."""

    job_id: int
    user: str
    priority: int


def in_queue(reason: str, partition: str, asks: str, ahead: int, first: Ahead | None, priority: int,
             start: float | None, node: str | None) -> str:
    """The sentence for a job waiting with `reason` (Priority or Resources): `ahead` jobs planned
    before it in its partition (`first` the first of them), what it `asks` for, and the start
    the plan expects (None: past the jobs the plan reserves room for)."""
    if reason == "Resources":
        said = f"no node of partition {partition} has room for it now ({asks})"
    else:
        said = f"{ahead} job{'' if ahead == 1 else 's'} of higher priority wait{'s' if ahead == 1 else ''} ahead of " \
               f"it in partition {partition}"
        if first is not None:
            said += f" (the first: job {first.job_id} of {first.user}, priority {first.priority}; this one's " \
                    f"{priority})"
    if start is None:
        return f"{said}; it starts as running jobs end and those ahead of it start"
    return f"{said}; by the scheduler's plan it starts at {format_clock(start)}{f' on {node}' if node else ''}"
