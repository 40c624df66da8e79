"""The active jobs in memory: the store's PENDING and RUNNING rows, so that scheduling never
reads the database. Rebuilt from the store at start, which is what makes `kill -9` safe.

Beside the records, what melond knows of a job only while it is active: a cancel or a requeue
its user asked for, and an end state forced on it (an operator downed its node).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from melond.spec.states import State
from melond.state.job import Job
from melon_remote.protocol import KillCause


class JobTable:
    def __init__(self, jobs: Iterable[Job]) -> None:
        self.active: dict[int, Job] = {j.id: j for j in jobs}
        self.ending: dict[int, Job] = {}  # ends being committed, already out of `active`
        self.cancelling: set[int] = set()  # running jobs whose user asked to cancel them
        self.requeueing: set[int] = set()  # running jobs whose user asked to requeue them (scontrol requeue)
        self.end_as: dict[int, State] = {}  # a state forced on a job's end
        self._ended = asyncio.Event()  # set, and replaced, at every job's end
        # The jobs started on each node (a spanning job's further nodes too), those ended since
        # dropped as they are met: a node's reconnect looks at its own, not at every active job.
        self._on_node: dict[str, set[int]] = {}
        # Jobs that stopped running (ended, requeued, their start undone), for the scheduler's
        # pending order to free what they held (melond.sched.order.PendingOrder.stopped)
        self.stopped: list[int] = []
        for job in self.active.values():
            if job.state is State.RUNNING:
                self.started(job)

    def started(self, job: Job) -> None:
        """The job is RUNNING on its nodes now."""
        for node in job.nodes:
            self._on_node.setdefault(node, set()).add(job.id)

    def get(self, job_id: int) -> Job | None:
        return self.active.get(job_id)

    def current(self, job: Job) -> bool:
        """Is this record still the active one (not ended, not replaced)?"""
        return self.active.get(job.id) is job

    def listed(self) -> list[Job]:
        """Pending and running jobs as users see them: a job whose end is still being committed
        is listed as running until it is, so that a job gone from mqueue is ended in the store."""
        return [*self.active.values(), *self.ending.values()]

    def running_on(self, node: str) -> list[Job]:
        """The running jobs with a part on `node` (a spanning job's further nodes included), by id."""
        ids = self._on_node.get(node)
        found = []
        for jid in sorted(ids or ()):
            j = self.active.get(jid)
            if j is not None and j.state is State.RUNNING and (j.node == node or (j.parts and node in j.nodes)):
                found.append(j)
            else:
                ids.discard(jid)  # ended, or pending again (it is added again when it starts)
        return found

    def running(self) -> list[Job]:
        """Every running job, each once, by id: from the jobs started on each node, not a walk
        over a queue of 100,000 pending ones."""
        found = {j.id: j for node in list(self._on_node) for j in self.running_on(node)}
        return [found[jid] for jid in sorted(found)]

    def ending_begins(self, job: Job) -> bool:
        """Out of the active set while its end commits (its CPUs are free for the next plan)."""
        if self.active.pop(job.id, None) is None:
            return False
        self.ending[job.id] = job
        self.stopped.append(job.id)
        return True

    def unstarted(self, job: Job, drop: bool = False) -> None:
        """A start that did not happen: the job is pending again (or, `drop`, gone: it was cancelled
        while the plan was made)."""
        if not self.current(job) or job.state is not State.RUNNING:
            return
        if drop:
            del self.active[job.id]
        else:
            job.state, job.node, job.start_time, job.parts = State.PENDING, None, None, []
        self.stopped.append(job.id)

    def ending_done(self, job_id: int) -> None:
        self.ending.pop(job_id, None)

    def ended_now(self, jobs: list[Job], state: State, when: float) -> None:
        """These jobs' ends are committed, in `state`: their records say so at once (no pass can
        start one), before they are forgotten (`finished`), which may come a slice at a time."""
        for job in jobs:
            if job.state is State.RUNNING:  # started by a pass while its end was being committed
                self.stopped.append(job.id)
            job.state, job.end_time = state, when

    def finished(self, *ids: int) -> None:
        """These jobs' ends are committed: forget them, and wake whoever waits for an end."""
        for job_id in ids:
            job = self.active.pop(job_id, None)
            if job is not None and job.state is State.RUNNING:
                self.stopped.append(job_id)
            self.cancelling.discard(job_id)
            self.requeueing.discard(job_id)
            self.end_as.pop(job_id, None)
        self._ended.set()
        self._ended = asyncio.Event()

    def kill_cause(self, job_id: int) -> KillCause:
        """Why a kill of this running job is sent: the words its node writes in the job's error stream."""
        if job_id in self.requeueing:
            return KillCause.REQUEUE
        return {State.NODE_FAIL: KillCause.NODE_FAIL, State.PREEMPTED: KillCause.PREEMPT}.get(
            self.end_as.get(job_id), KillCause.CANCEL)

    def requeued(self, job: Job) -> None:
        """Back to the queue as its next run: nothing of the last run's fate carries over."""
        self.stopped.append(job.id)
        self.cancelling.discard(job.id)
        self.requeueing.discard(job.id)
        self.end_as.pop(job.id, None)

    async def wait_ended(self, job_id: int, timeout: float) -> None:
        """Return once the job is no longer active, or the timeout has passed."""
        deadline = time.monotonic() + timeout
        while job_id in self.active or job_id in self.ending:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._ended.wait(), left)
            except TimeoutError:
                return
