"""Whether extending a running job delays anyone: the plan with the job's current deadline against
the plan with the new one (OAR's check of `oarwalltime` requests against other jobs' reservations).

Pure, as `plan` is: the same snapshot and clock give the same answer. A pending job is delayed when
its expected start (its reservation, or now if it would start now) comes later, or it loses its
reservation, once the running job holds its node longer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from melond.sched.plan import Plan, Snapshot, plan

EPSILON = 1e-6  # seconds: a start later by less is the same start


@dataclass(frozen=True, slots=True)
class Delay:
    """A pending job the extension would push back: expected start before and after (None: no
    reservation any more, so no start in sight)."""

    job_id: int
    before: float
    after: float | None

    @property
    def by(self) -> float:
        return math.inf if self.after is None else self.after - self.before


def _starts(p: Plan, now: float) -> dict[int, float]:
    return {**p.expected, **{s.job_id: now for s in p.starts}}


def _with_end(snapshot: Snapshot, job_id: int, end: float | None) -> Snapshot:
    running = tuple(replace(r, end=end) if r.job_id == job_id else r for r in snapshot.running)
    return replace(snapshot, running=running)


def delays(snapshot: Snapshot, now: float, job_id: int, new_end: float | None, spare: str | None = None) -> list[Delay]:
    """The pending jobs that extending running job `job_id` to end at `new_end` (None: never)
    would start later, most delayed first; `spare`'s own jobs not counted."""
    before = _starts(plan(snapshot, now), now)
    after = _starts(plan(_with_end(snapshot, job_id, new_end), now), now)
    mine = {p.job_id for p in snapshot.pending if spare is not None and p.user == spare}
    found = [Delay(jid, t, after.get(jid)) for jid, t in before.items()
             if jid not in mine and (jid not in after or after[jid] > t + EPSILON)]
    return sorted(found, key=lambda d: (-d.by, d.job_id))


def largest_harmless_end(snapshot: Snapshot, now: float, job_id: int, current_end: float, wanted_end: float,
                         spare: str | None = None) -> float:
    """The latest end in [current_end, wanted_end], to the second, that delays no one: a binary
    search (a later end only ever takes more, so once someone is delayed, later ends delay too)."""
    if not delays(snapshot, now, job_id, wanted_end, spare):
        return wanted_end
    low, high = 0, int(wanted_end - current_end)  # seconds added: `low` is harmless, `high` is not
    while high - low > 1:
        mid = (low + high) // 2
        if delays(snapshot, now, job_id, current_end + mid, spare):
            high = mid
        else:
            low = mid
    return current_end + low
