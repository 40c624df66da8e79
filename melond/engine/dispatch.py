"""Carrying decisions to nodes: starts, kills and limits, asked again while a node is busy.

A start is marked RUNNING in the store before the node is asked, so a crash between the two is
repaired by the node's reconcile re-sending it; a start and a kill are idempotent on the node (a
claimed spool record, a flag file), so one that got no answer in time is simply asked again.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from melond import nss
from melond.engine.jobs import JobTable
from melond.engine.tasks import Tasks
from melond.errors import MelonError, NodeRequestFailed, NodeTimeout, NodeUnavailable, NoSuchJob
from melond.figures import JobCounts
from melond.nodes.links import Sessions
from melond.nodes.state import NodeState
from melond.sched import launch
from melond.spec.states import State
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.protocol import Op, SignalTo

log = logging.getLogger("melond.engine")

RETRY_CAP = 30.0  # seconds between repeated starts or kills a busy node did not answer
START_TIMEOUT = 90.0  # above the helper's own wait for its launcher (60 s): a slow start is not a failed one

RecordEnd = Callable[..., Awaitable[None]]


class Dispatcher:
    def __init__(self, jobs: JobTable, store: Store, sessions: Sessions, tasks: Tasks, *,
                 kill_wait: float, tasks_max: int, counts: JobCounts, hosts: Mapping[str, str] | None = None,
                 nodes: Mapping[str, NodeState] | None = None) -> None:
        self.jobs, self.store, self.sessions, self.tasks = jobs, store, sessions, tasks
        self.nodes = nodes or {}  # their devices, and whether the node keeps jobs to their own
        self.hosts = hosts or {}  # node -> the name its jobs see for it (Inventory.job_host_names)
        self.kill_wait, self.tasks_max = kill_wait, tasks_max
        self.counts = counts
        self.record_end: RecordEnd | None = None  # the ends' recorder, for starts that fail

    async def dispatch(self, job: Job, node: str, now: float) -> None:
        """Mark RUNNING (durably) first, then ask the node."""
        try:
            done = await self.store.write(Store.op_transition, job.id, "started", {
                "state": "RUNNING", "node": node, "start_time": now, "reason": None, "cpus": job.cpus,
                "cpu_ids": job.cpu_ids, "gres_ids": job.gres_ids, "gres_total": job.gres_total, "parts": json.dumps(job.parts) if job.parts else None,
            }, "melond", {"node": node, "cpu_ids": job.cpu_ids, **({"gres_ids": job.gres_ids} if job.gres_ids else {}),
                          **({"parts": job.parts} if job.parts else {})}, now)
        except MelonError as exc:
            # Not recorded (a full disk): the job is still pending in the store, so in memory too;
            # a later pass starts it once the store can record that.
            self.jobs.unstarted(job)
            log.warning("start not recorded; the job stays pending", extra={"job": job.id, "error": str(exc)})
            return
        if not done:  # cancelled while the plan was made
            self.jobs.unstarted(job, drop=True)
            return
        self.counts.add("started", job.partition, job.user)
        if job.spans:  # every part at once: srun's first launch on a node waits for its holder (remote/relay.py)
            await asyncio.gather(*(self.start(job, node) for node in job.nodes))
        else:
            await self.start(job)

    async def start(self, job: Job, node: str | None = None) -> None:
        """Ask one of the job's nodes (its first by default) to start its part of the current run;
        from the first, record the node's own start time and pid."""
        node = node or job.node
        run = job.run
        account = self.sessions.login(node, job.user)  # a personal node: the user's own login there
        state = self.nodes.get(node)
        req = launch.start_request(job, node, kill_wait=self.kill_wait, tasks_max=self.tasks_max,
                                   home=None if account else nss.home(job.user), hosts=self.hosts,
                                   devices=state.devices if state else (),
                                   local_devices=bool(state and state.isolates_devices))
        if account:
            req["user"] = account
        for attempt in itertools.count():
            session = self.sessions.of(node, job.user)
            if session is None or not session.up:
                return  # the node's reconcile starts it when it is back
            if not self.jobs.current(job) or node not in job.nodes or job.run != run:
                return  # ended, requeued or cancelled meanwhile
            try:
                reply = await session.request(Op.START, job=req, timeout=START_TIMEOUT)
                break
            except NodeTimeout as exc:
                log.warning("start unanswered; asking again", extra={"job": job.id, "error": str(exc)})
                await asyncio.sleep(retry_delay(attempt))
            except NodeUnavailable:
                return
            except NodeRequestFailed as exc:
                await self.record_end(job.id, {"reason": "launch_failed", "error": str(exc), "exit_code": None,
                                               "signal": None, "end": time.time()})
                return
        if node != job.node:  # a further node's holder: its end matters only if the node lost it
            if reply.get("state") == "lost" or (not reply.get("already") and "error" in reply):
                await self.record_end(job.id, lost(reply.get("error")), node=node, run=run)
            return
        if not reply.get("already"):
            await self._launched(job, run, reply)
        elif reply.get("state") == "ended":
            await self.record_end(job.id, reply["result"], node=node, run=run)
        elif reply.get("state") == "lost":  # claimed by a supervisor that died
            await self.record_end(job.id, lost(reply.get("error")), node=node, run=run)

    async def _launched(self, job: Job, run: int, reply: dict) -> None:
        """The node's start time (its clock holds the deadline) replaces the planning time at once,
        so StartTime and the deadline users see are the node's, not melond's guess."""
        start = reply.get("start")
        if not start or not self.jobs.current(job) or job.run != run:
            return
        job.start_time = start
        await self.store.write(Store.op_transition, job.id, "launched", {"start_time": start}, "melond",
                               {"pid": reply.get("pid"), "start": start, "run": run}, time.time())

    async def kill(self, job: Job, attempt: int = 0) -> None:
        """End the job's run on every node it holds: its batch script's end is the job's."""
        if job.spans:
            await asyncio.gather(*(self._kill_part(job, node, attempt) for node in job.nodes[1:]))
        await self._kill_part(job, job.node, attempt)

    async def _kill_part(self, job: Job, node: str, attempt: int = 0, ended: bool = False) -> None:
        """`ended`: the job's end is committed already; what is left of it is killed once, no
        retry (a node that does not answer fences it at its reconcile)."""
        session = self.sessions.of(node, job.user)
        if session is None or not session.up or not (ended or self.jobs.current(job)):
            return  # re-sent by the node's reconcile, or ended meanwhile
        try:
            await session.request(Op.KILL, job_id=job.id, run=job.run, cause=str(self.jobs.kill_cause(job.id)))
        except NodeTimeout:
            # A busy node: a kill is idempotent (a flag in the run's spool), so ask again, in the background.
            if not ended:
                self.tasks.spawn(self._kill_later(job, node, attempt + 1))
        except NoSuchJob:
            if node == job.node and not ended:  # marked RUNNING but its start never reached the node: it never ran
                await self.record_end(job.id, {"reason": "cancelled", "exit_code": None, "signal": None})
        except MelonError as exc:
            if not ended:
                raise
            log.warning("a part of an ended job not killed yet", extra={"job": job.id, "node": node, "error": str(exc)})

    def end_parts(self, job: Job, done_on: str | None) -> None:
        """A spanning job has ended: whatever of it still runs on its other nodes is killed (its
        holders, and the tasks they started). A node away now fences it when it returns."""
        for node in job.nodes:
            if node != done_on:
                self.tasks.spawn(self._kill_part(job, node, ended=True))

    def kill_soon(self, job: Job, grace: float = 0, warning: str | None = None) -> None:
        """The kill, sent once the caller's answer is on its way; with `grace`, `warning` first,
        then the kill that many seconds later (a preempted job's GraceTime)."""
        self.tasks.spawn(self._warn_then_kill(job, grace, warning) if grace else self.kill(job))

    async def _warn_then_kill(self, job: Job, grace: float, warning: str | None) -> None:
        run = job.run
        if warning:
            try:
                await self.signal(job, warning, SignalTo.ALL)
            except MelonError as exc:
                log.warning("warning signal not sent", extra={"job": job.id, "error": str(exc)})
        await asyncio.sleep(grace)
        if self.jobs.current(job) and job.run == run:
            await self.kill(job)

    async def signal(self, job: Job, sig: str | int, to: str) -> None:
        """Have the job's node send `sig` to its processes that `to` names (SignalTo), once (not
        retried: a signal late is not the signal asked for)."""
        nodes = [job.node] if str(to) == SignalTo.BATCH else job.nodes
        for node in nodes:
            session = self.sessions.of(node, job.user)
            if session is None or not session.up:
                raise NodeUnavailable(f"node {node} is not reachable now; try again once `minfo` shows it up")
        for node in nodes:
            await self.sessions.of(node, job.user).request(Op.SIGNAL, job_id=job.id, run=job.run, signal=sig,
                                                           to=str(to))

    async def read_output(self, job: Job, path: str, offset: int, limit: int) -> dict:
        """Part of a job's output file, read by its node's helper (remote/output.py)."""
        session = self.sessions.of(job.node, job.user)
        if session is None or not session.up:
            raise NodeUnavailable(f"node {job.node} is not reachable now, so the output of job {job.id} cannot be "
                                  f"read; try again once `minfo` shows it up")
        return await session.request(Op.READ_OUTPUT, path=path, user=job.user, uid=job.uid, offset=offset,
                                     limit=limit)

    async def _kill_later(self, job: Job, node: str, attempt: int) -> None:
        await asyncio.sleep(retry_delay(attempt))
        await self._kill_part(job, node, attempt)

    async def set_limit(self, job: Job) -> None:
        """Tell each of a running job's nodes its new limit (each holds the deadline itself); should
        that fail, the node's reconcile re-sends it."""
        await asyncio.gather(*(self._set_limit(job, node) for node in job.nodes))

    async def _set_limit(self, job: Job, node: str) -> None:
        session = self.sessions.of(node, job.user)
        try:
            if session is None:
                raise NodeUnavailable(f"node {node} has no session")
            await session.request(Op.SET_LIMIT, job_id=job.id, run=job.run, limit=job.time_limit)
        except MelonError as exc:
            log.warning("extension stored, node not told yet", extra={"job": job.id, "node": node, "error": str(exc)})


def retry_delay(attempt: int) -> float:
    """Seconds before asking a busy node again: 1, 2, 4 ... up to RETRY_CAP."""
    return min(2 ** min(attempt, 8), RETRY_CAP)


def lost(error: str | None, end: float | None = None) -> dict:
    """The end of a run its node lost (unreachable, rebooted, its supervisor dead): NODE_FAIL."""
    return {"reason": "lost", "exit_code": None, "signal": None, "end": end or time.time(), "error": error}
