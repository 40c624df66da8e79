"""Job ends: a run's final state, or back to the queue (--requeue after a node failure), and the
spool clean-up once the end is durable."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from melond.engine.jobs import JobTable
from melond.engine.tasks import Tasks
from melond.errors import MelonError
from melond.figures import JobCounts
from melond.nodes.links import Sessions, split
from melond.sched.order import PendingOrder
from melond.spec.states import State, end_state
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.protocol import Event, Op

log = logging.getLogger("melond.engine")

FORGET_DELAY = 0.1  # ends gather this long into one `forget` per node


class Ends:
    def __init__(self, jobs: JobTable, store: Store, sessions: Sessions, order: PendingOrder,
                 tasks: Tasks, kick: Callable[[], None], *, max_batch_requeue: int, counts: JobCounts) -> None:
        self.jobs, self.store, self.sessions, self.order, self.tasks = jobs, store, sessions, order, tasks
        self.kick = kick
        self.max_batch_requeue = max_batch_requeue
        self.counts = counts
        self._to_forget: dict[str, list[list[int]]] = {}
        self.on_finished: Callable[[int], None] | None = None  # a job's end is committed (its notices)
        self.on_requeued: Callable[[Job], None] | None = None
        self.end_parts: Callable[[Job, str | None], None] | None = None  # kill a spanning job's other parts
        self.gpu_use: Callable[[int, int], dict] | None = None  # a run's GPU figures (engine/gpu_usage.py)

    def on_event(self, link: str, msg: dict) -> None:
        """A node's unasked message, from one of its connections: today, a run's end."""
        if msg.get("event") == Event.EXITED:
            node, _ = split(link)
            self.tasks.spawn(self.record(int(msg["job_id"]), msg["result"], node=node, run=int(msg.get("run", 0)),
                                         link=link))

    async def record(self, job_id: int, result: dict, node: str | None = None, run: int | None = None,
                     link: str | None = None) -> None:
        """Record how a job's run ended: its final state, or back to PENDING if it asked to be
        requeued and its node failed. The run's spool record is forgotten once this is durable,
        through the connection that holds it (`link`, else the job's on its node)."""
        now = time.time()
        job = self.jobs.get(job_id)
        if job is not None and run == job.run and node and node != job.node and node in job.nodes:
            # A further node's part: the job ends with its batch script, unless that node lost it.
            if result.get("reason") != "lost":
                self.forget_later(self._link(node, job, link), job_id, run)
                return
            result = {**result, "error": f"node {node} lost its part of the job: {result.get('error') or 'lost'}"}
        elif job is not None and run is not None and (run != job.run or (node and job.node != node)):
            # An earlier run's end (a requeued job's old run, fenced on its node): nothing to record.
            self.forget_later(self._link(node, job, link), job_id, run)
            return
        where = node or (job.node if job is not None else None)
        link = self._link(where, job, link)
        run = job.run if run is None and job is not None else (run or 0)
        if job is not None and self._wants_requeue(job, result):
            if job.run < self.max_batch_requeue or job.id in self.jobs.requeueing:
                if self.gpu_use is not None:
                    self.gpu_use(job_id, run)  # that run's samples: its next run starts its own
                await self._requeue(job, result)
                self.forget_later(link, job_id, run)
                return
            result = {**result, "error": f"{result.get('error') or 'node failure'}; not requeued: the job was "
                                        f"requeued {job.run} times already (max_batch_requeue)"}
        state = self.jobs.end_as.get(job_id) or end_state(result)
        changes = {
            "state": state.value, "end_time": result.get("end") or now, "exit_code": result.get("exit_code"),
            "exit_signal": result.get("signal"), "detail": result.get("error"),
            "cpu_time": _number(result.get("cpu_time")), "max_rss": _number(result.get("max_rss")),
        }
        if result.get("start") and job is not None:
            changes["start_time"] = result["start"]
        if self.gpu_use is not None:
            changes.update(self.gpu_use(job_id, run))
        data = {k: result.get(k) for k in ("reason", "exit_code", "signal", "term_sent", "backend", "error")}
        if result.get("term_sent") and job is not None and job.time_limit and result.get("start"):
            data["kill_late_by"] = round(result["term_sent"] - (result["start"] + job.time_limit), 4)
        # Free the job's CPUs for the next plan now, while the end is being committed: the write queue
        # is FIFO, so any start this frees is committed after this end. Should melond die first, the
        # node still holds the result (it is forgotten only after the commit) and reconcile replays it.
        if job is not None and self.jobs.ending_begins(job):
            self.kick()
        try:
            done = await self.store.write(Store.op_end_run, job_id, run, changes, "melond", data,
                                          _open_steps_end(state), now)
        finally:
            self.jobs.ending_done(job_id)
        if done:
            if job is not None:
                self.counts.add("ended", job.partition, job.user, state.value)
                if job.spans and self.end_parts is not None:
                    self.end_parts(job, node)
            self.finished(job_id)
            log.info("job ended", extra={"job": job_id, "state": state.value, "exit_code": result.get("exit_code")})
        self.forget_later(link, job_id, run)

    def _link(self, node: str | None, job: Job | None, link: str | None) -> str | None:
        """The connection that holds a run's spool record on `node`."""
        return link if link is not None else self.sessions.link(node, job.user if job is not None else None)

    def finished(self, job_id: int) -> None:
        self.finished_many([job_id])

    def finished_many(self, ids: list[int]) -> None:
        """Their ends are committed (a bulk cancel's): forgotten, and the scheduler woken once."""
        if not ids:
            return
        self.jobs.finished(*ids)
        self.order.forget(ids)
        if self.on_finished is not None:
            for job_id in ids:
                self.on_finished(job_id)
        self.kick()

    def _wants_requeue(self, job: Job, result: dict) -> bool:
        """Does this end ask to send the job back to the queue? A job its user asked to requeue,
        and a --requeue job whose node failed (lost, or downed by an operator); never one its user
        cancelled."""
        if job.id in self.jobs.cancelling:
            return False
        node_failed = result.get("reason") == "lost" or self.jobs.end_as.get(job.id) == State.NODE_FAIL
        return job.id in self.jobs.requeueing or (job.requeue and node_failed)

    async def _requeue(self, job: Job, result: dict) -> None:
        """Back to PENDING as the job's next run (sbatch --requeue after a node failure, or
        scontrol requeue). The old run
        has its own spool record, so whatever is left of it on the failed node is fenced when that
        node returns and can never be taken for the new run."""
        runs = job.run + 1
        asked = job.id in self.jobs.requeueing
        why = "its user asked (scontrol requeue)" if asked else result.get("error") or result.get("reason")
        data = {"node": job.node, "restarts": runs, "why": why}
        done = await self.store.write(Store.op_transition, job.id, "requeued", {
            "state": State.PENDING.value, "node": None, "start_time": None, "restarts": runs, "reason": None,
            "parts": None,
        }, "melond", data, time.time())
        if done:
            if job.spans and self.end_parts is not None:
                self.end_parts(dataclasses.replace(job), None)  # the old run's parts, as they were
            job.state, job.node, job.start_time, job.restarts, job.reason = State.PENDING, None, None, runs, None
            job.parts = []
            self.counts.add("requeued", job.partition, job.user)
            self.jobs.requeued(job)
            self.order.touch(job.id)
            log.warning("job requeued", extra={"job": job.id, **data})
            self.kick()
            if self.on_requeued is not None:
                self.on_requeued(job)

    def forget_later(self, link: str | None, job_id: int, run: int) -> None:
        """Batch spool clean-ups per connection: one request for many ended runs."""
        if link not in self.sessions:
            return
        batch = self._to_forget.setdefault(link, [])
        batch.append([job_id, run])
        if len(batch) == 1:
            self.tasks.spawn(self._forget(link))

    async def _forget(self, link: str) -> None:
        await asyncio.sleep(FORGET_DELAY)
        runs = self._to_forget.pop(link, [])
        try:
            await self.sessions[link].request(Op.FORGET, runs=runs)
        except MelonError:
            pass  # forgotten at the next reconcile


def _number(value: object) -> float | int | None:
    """A usage figure from a node's result, or None: the node's word is not trusted to be a number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")
    return value if ok else None


def _open_steps_end(state: State) -> str:
    """The state of steps still running when their job ends: ended with it (sacct's words)."""
    return {State.TIMEOUT: "TIMEOUT", State.NODE_FAIL: "NODE_FAIL", State.OUT_OF_MEMORY: "OUT_OF_MEMORY"}.get(
        state, "CANCELLED")
