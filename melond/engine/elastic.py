"""Elastic jobs (`mbatch --time=1:00:00 --time-max=12:00:00 --extend-auto=30:00`): a job starts
with its short limit, so it backfills early, and melond extends it by its step shortly before
each deadline while, by the scheduler's plan, that delays no waiting job, up to its --time-max.
When a step would delay someone the job runs to its current limit (and gets its --signal
warning), unless room opens before the deadline. Each step is an `extended` event, by melond,
`via: auto`."""
from __future__ import annotations

import asyncio
import logging
import time

from melond.engine.jobs import JobTable
from melond.engine.operations import Operations
from melond.errors import MelonError
from melond.state.job import Job

log = logging.getLogger("melond.engine")

TICK = 1.0  # seconds between looks at the elastic jobs


def lead(limit: int) -> float:
    """How long before its deadline a job's next step is tried: a tenth of its limit, 2 s to 5 min."""
    return min(300.0, max(2.0, 0.1 * limit))


def next_limit(job: Job) -> int | None:
    """The limit the job's next step asks for, or None when it has grown all it may."""
    if not job.extend_step or not job.time_limit or job.time_max is None:
        return None
    if job.time_max and job.time_limit >= job.time_max:
        return None
    target = job.time_limit + job.extend_step
    return min(target, job.time_max) if job.time_max else target


class Elastic:
    def __init__(self, jobs: JobTable, ops: Operations) -> None:
        self.jobs, self.ops = jobs, ops
        self._refused: dict[int, float] = {}  # job -> the deadline a step was refused at (said once)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(TICK)
            try:
                await self.step(time.time())
            except Exception:  # noqa: BLE001 - a bad step must not stop the others for good
                log.exception("elastic step failed")

    async def step(self, now: float) -> None:
        for job in [j for j in self.jobs.running() if j.extend_step]:
            if job.start_time is None or (target := next_limit(job)) is None:
                continue
            deadline = job.start_time + job.time_limit
            if deadline - lead(job.time_limit) <= now < deadline:
                await self._grow(job, target, deadline)

    async def _grow(self, job: Job, target: int, deadline: float) -> None:
        try:
            await self.ops.extend(job.id, self.ops.caller(job.user, job.uid), to=target, auto=True)
        except MelonError as exc:
            if self._refused.get(job.id) != deadline:
                self._refused[job.id] = deadline
                log.info("elastic job not extended", extra={"job": job.id, "why": str(exc)})
            return
        self._refused.pop(job.id, None)
        log.info("elastic job extended", extra={"job": job.id, "new_limit": target})
