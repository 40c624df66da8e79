"""Reconcile: what to do with each run a reconnected node reports, the store being the truth.

Pure: one table for the runs the store runs on the node, one for those it does not.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    START = "start"  # the start never arrived, or its claim has no start behind it: send it (idempotent)
    RECORD_END = "record_end"  # it ended while melond was away: record the node's result
    LOST = "lost"  # the node lost it (another boot, or its supervisor died): NODE_FAIL or requeue
    RESYNC = "resync"  # it runs: re-send the store's limit, and a cancel that was asked for
    FENCE = "fence"  # the store does not run it here (it ended or was requeued meanwhile): kill it
    FORGET = "forget"  # an end nobody needs any more: drop it from the spool


# The store runs this run on the node; the node says (None: nothing) ...
OURS: dict[str | None, Action] = {
    None: Action.START,
    "claimed": Action.START,  # the start settles it: running, or lost after the claim's grace
    "ended": Action.RECORD_END,
    "lost": Action.LOST,
    "running": Action.RESYNC,
}
# The store does not run this run on the node (another run of the job, or it is not RUNNING there).
STRAY: dict[str, Action] = {
    "running": Action.FENCE,
    "claimed": Action.FENCE,
    "ended": Action.FORGET,
    "lost": Action.FORGET,
}


@dataclass(frozen=True)
class Step:
    action: Action
    job_id: int
    run: int
    seen: dict | None  # the node's entry for the run, if it listed one


def reconcile(ours: Iterable[tuple[int, int]], listing: Iterable[dict]) -> list[Step]:
    """A step for every (job id, run) the store runs on the node and every run the node lists."""
    on_node = {(int(e["id"]), int(e.get("run", 0))): e for e in listing}
    steps = []
    for job_id, run in ours:
        seen = on_node.pop((job_id, run), None)
        steps.append(Step(OURS[seen["state"] if seen else None], job_id, run, seen))
    for (job_id, run), seen in on_node.items():
        steps.append(Step(STRAY.get(seen["state"], Action.FORGET), job_id, run, seen))
    return steps
