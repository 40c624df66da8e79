"""The job lifecycle: submit, schedule, start, end, cancel, extend, recover.

Every state change is one store transaction plus one job event, committed
before anyone is told. The in-memory `active` table mirrors the store's
PENDING and RUNNING rows so that scheduling never reads the database; it is
rebuilt from the store at start, which is what makes `kill -9` safe.
"""
from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import json
import logging
import operator
import time
from dataclasses import dataclass

from melond import nss
from melond.spec import jobrel
from melond.sched import launch
from melond.sched import policy
from melond.sched import plan as scheduler
from melond.config import Inventory
from melond.errors import (BadRequest, Conflict, Forbidden, MelonError, NodeRequestFailed, NodeTimeout, NodeUnavailable,
                           NotFound)
from melond.nodes.fleet import NodeSession
from melond.sched.policy import Caller
from melond.spec.states import FINISHED, SHORT, State, end_state
from melond.state.store import Store
from melond.spec.timespec import format_limit

log = logging.getLogger("melond.controller")

MIB = 1024 * 1024
END_AS = "_end_as"  # a state forced on a job's end (an operator downed its node)
VIEW_CACHE = "_pending_view"  # the job's scheduler view while nothing in it can change
# A pending entry is (order key, view); a changed job's old entry may sit beside its new one with
# the same key until it is skipped, so entries are ordered by their key alone.
ORDER_KEY = operator.itemgetter(0)
SLOW_TICK = 5.0
QUEUE_DEPTH = 100  # Slurm's default_queue_depth: an event's pass looks at this many pending jobs
FULL_PASS_INTERVAL = 1.0  # ...and every pending job is looked at least this often
PASS_GAP_FACTOR = 9.0  # after a pass of t seconds, submissions alone wait 9t for the next
FALLBACK_MEM_PER_CPU = 1024  # MiB, only while no node of the partition has been sized
FORGET_DELAY = 0.1
RETRY_CAP = 30.0  # seconds between repeated starts or kills a busy node did not answer
START_TIMEOUT = 90.0  # above the helper's own wait for its launcher (60 s): a slow start is not a failed one


@dataclass
class NodeState:
    """What melond knows of a node: its capacity and whether it can take work."""

    name: str
    partition: str
    cpus: int
    memory: int  # MiB
    up: bool = False
    cap_cpus: int | None = None  # the inventory's CPU count: replaces the probe's (may oversubscribe)
    cap_memory: int | None = None  # the inventory's cap on the probe's memory
    backend: str = "unknown"
    backend_reason: str = ""
    reason: str | None = None
    down_since: float | None = None  # monotonic time the node was lost, while it is down
    drain: str | None = None  # an operator's reason for starting nothing here (drain or down)

    @property
    def available(self) -> bool:
        return self.up and self.drain is None


class Controller:
    """Owns the active jobs and drives them through their states."""

    def __init__(self, store: Store, inventory: Inventory, nodes: dict[str, NodeState], *,
                 kill_wait: float) -> None:
        self.store = store
        self.inv = inventory
        self.nodes = nodes
        self.sessions: dict[str, NodeSession] = {}
        self.kill_wait = kill_wait
        self.max_time = {name: inventory.partition(name).max_time for name in inventory.partition_names()}
        self.active: dict[int, dict] = {j["id"]: j for j in store.jobs(states=[State.PENDING, State.RUNNING])}
        self._kick = asyncio.Event()
        self._last_full = 0.0  # time.monotonic() of the last pass over every pending job
        self._deferred = False  # the last pass left pending jobs past the queue depth unplanned
        self._room_may_be_free = True  # False while the last plan left no CPU free on any node
        self._urgent = asyncio.Event()  # a kick other than new submissions is waiting
        self._next_pass = 0.0  # time.monotonic() before which submissions alone start no pass
        self._ended = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._to_forget: dict[str, list[int]] = {}
        self._ending: dict[int, dict] = {}  # ends being committed, already out of `active`
        self._extending = asyncio.Lock()
        # The pending order between full passes (see _snapshot): None until the first full pass.
        self._order: list[tuple[tuple, scheduler.PendingView]] | None = None
        self._touched: dict[int, None] = {}  # jobs new or changed since, in order
        self._volatile: set[int] = set()  # pending jobs whose views change with time
        self._running_ids: set[int] = set()
        self._states: dict[int, str] | None = None  # dependency states, read once per snapshot

    # ---- requests from users -------------------------------------------------------------

    def caller(self, user: str, uid: int) -> Caller:
        return Caller(user=user, uid=uid, operator=uid == 0 or user in self.inv.operators)

    async def submit(self, req: dict, caller: Caller, submit_as: tuple[str, int, int]) -> tuple[list[int], list[str]]:
        """Validate against partitions and nodes, store every task, return the ids."""
        user, uid, gid = submit_as
        warnings: list[str] = []
        partition = req.get("partition") or self.inv.default_partition()
        if partition not in self.inv.partition_names():
            raise BadRequest(f"unknown partition {partition!r}; partitions: {', '.join(self.inv.partition_names())}")
        part = self.inv.partition(partition)
        members = [n for n in self.nodes.values() if n.partition == partition]
        if not members:
            raise BadRequest(f"partition {partition!r} has no nodes")
        nodes = [n for n in members if n.cpus]  # sized: local, or probed at least once
        cpus = req["cpus"]
        if not nodes:
            warnings.append(f"no node of partition {partition} has been reached yet; sizes are checked when one is")
        biggest = max((n.cpus for n in nodes), default=cpus)
        if cpus > biggest:
            raise BadRequest(f"requested {cpus} CPUs but the largest node in partition {partition} has {biggest}; "
                             f"ask for at most -c {biggest}")
        memory = req.get("memory")
        if memory is None:
            per_cpu = part.default_mem_per_cpu or min((n.memory // n.cpus for n in nodes), default=FALLBACK_MEM_PER_CPU)
            memory = per_cpu * cpus * MIB
        biggest_mem = max((n.memory for n in nodes), default=memory // MIB)
        if memory > biggest_mem * MIB:
            raise BadRequest(f"requested {memory // MIB} MiB of memory but the largest node in partition "
                             f"{partition} has {biggest_mem} MiB; ask for at most --mem {biggest_mem}M")
        limit = req.get("time_limit")
        if limit is None:
            limit = part.default_time if part.default_time is not None else part.max_time
        elif limit == 0 and part.max_time:
            limit = part.max_time
            warnings.append(f"partition {partition} has a MaxTime of {format_limit(part.max_time)}: "
                            f"the job gets that instead of no limit")
        if part.max_time and limit > part.max_time:
            warnings.append(f"time limit {format_limit(limit)} is above partition {partition}'s MaxTime "
                            f"{format_limit(part.max_time)}: the job stays pending (PartitionTimeLimit)")
        if req.get("dependency"):
            try:
                jobrel.parse_dependency(req["dependency"])
            except jobrel.RelError as exc:
                raise BadRequest(str(exc)) from None
        for name in (req.get("nodelist") or []) + (req.get("exclude") or []):
            if name not in self.nodes:
                raise BadRequest(f"unknown node {name!r}; nodes: {', '.join(sorted(self.nodes))}")
        if req.get("signal"):
            launch.parse_signal(req["signal"])
        tasks: list[int | None] = [None]
        throttle = None
        if req.get("array"):
            try:
                tasks, throttle = jobrel.parse_array(req["array"])
            except jobrel.RelError as exc:
                raise BadRequest(str(exc)) from None
        now = time.time()
        base = {
            "user": user, "uid": uid, "gid": gid, "name": req["name"], "state": State.PENDING.value,
            "reason": None, "priority": 0, "partition": partition, "cpus": cpus, "memory": memory,
            "time_limit": limit, "script": req["script"], "script_path": req.get("script_path"),
            "script_args": req.get("script_args") or [], "environment": req.get("environment") or {},
            "chdir": req["chdir"], "output": req.get("output") or "melon-%j.out", "error": req.get("error"),
            "nodelist": req.get("nodelist") or [], "exclude": req.get("exclude") or [],
            "begin_time": req.get("begin"), "hold": int(bool(req.get("hold"))), "dependency": req.get("dependency"),
            "array_throttle": throttle, "requeue": int(bool(req.get("requeue"))), "signal": req.get("signal"),
            "submit_host": req.get("submit_host"), "submit_dir": req.get("submit_dir") or req["chdir"],
            "submit_time": now, "restarts": 0,
        }
        rows = [{**base, "array_task_id": t} for t in tasks]
        ids = await self.store.write(Store.op_insert_jobs, rows, caller.user, now)
        for jid, row in zip(ids, rows):
            job = {**row, "id": jid}
            if row["array_task_id"] is not None:
                job["array_job_id"] = ids[0]
            self.active[jid] = job
            self._touch(job)
        self.kick(new_jobs_only=True)
        return ids, warnings

    def visible_job(self, job_id: int, caller: Caller) -> dict:
        job = self.active.get(job_id) or self.store.job(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist; `mqueue --all` lists the jobs melond knows")
        return job

    async def cancel(self, job_id: int, caller: Caller) -> dict:
        job = self.visible_job(job_id, caller)
        policy.check_owner(job, caller, "cancel")
        state = State(job["state"])
        if state in FINISHED:
            raise Conflict(f"job {job_id} has already ended ({state.value}); nothing to cancel")
        now = time.time()
        if state == State.PENDING:
            done = await self.store.write(Store.op_transition, job_id, [State.PENDING], {
                "state": State.CANCELLED.value, "end_time": now, "reason": None,
            }, "cancelled", caller.user, {}, now)
            if done:
                self._finished(job_id)
                return {"job_id": job_id, "state": State.CANCELLED.value}
            return await self.cancel(job_id, caller)  # it started meanwhile
        await self.store.write(Store.op_transition, job_id, [State.RUNNING], {}, "cancel_requested",
                               caller.user, {}, now)
        job["cancel_requested"] = True
        await self._send_kill(job)
        return {"job_id": job_id, "state": State.RUNNING.value, "cancelling": True}

    async def extend(self, job_id: int, caller: Caller, *, add: int | None, to: int | None) -> dict:
        """Change the total limit; a running job's node learns the new one at once."""
        async with self._extending:  # one at a time, so two requests never both fit the last of a budget
            return await self._extend(job_id, caller, add=add, to=to)

    async def _extend(self, job_id: int, caller: Caller, *, add: int | None, to: int | None) -> dict:
        job = self.visible_job(job_id, caller)
        part = self.inv.partition(job["partition"])
        old = job["time_limit"]
        policy.check_owner(job, caller, "extend")
        limit = policy.new_limit(job, add=add, to=to)
        policy.check_extension(job, caller, limit, part.max_time, job["partition"])
        if not caller.operator and (part.max_extension is not None or part.max_extensions is not None):
            past = [e["data"].get("added") or 0 for e in self.store.events(job_id)
                    if e["kind"] == "extended" and e["actor"] == job["user"]]
            policy.check_extension_budget(job, caller, limit, past, max_extension=part.max_extension,
                                          max_extensions=part.max_extensions, partition=job["partition"])
        now = time.time()
        start = job.get("start_time")
        data = {
            "old_limit": old, "new_limit": limit, "added": (limit - old) if limit and old else None,
            "old_deadline": start + old if start and old else None,
            "new_deadline": start + limit if start and limit else None,
        }
        done = await self.store.write(Store.op_transition, job_id, [State.PENDING, State.RUNNING],
                                      {"time_limit": limit}, "extended", caller.user, data, now)
        if not done:
            raise Conflict(f"job {job_id} ended while it was being extended; a finished job cannot be extended")
        job["time_limit"] = limit
        self._touch(job)
        if job["state"] == State.RUNNING and job.get("node"):
            session = self.sessions.get(job["node"])
            try:
                if session is None:
                    raise NodeUnavailable(f"node {job['node']} has no session")
                await session.request("set_limit", job_id=job_id, run=_run(job), limit=limit)
            except MelonError as exc:
                log.warning("extension stored, node not told yet", extra={"job": job_id, "error": str(exc)})
        self.kick()
        return {"job_id": job_id, "state": job["state"], **data}

    async def set_hold(self, job_id: int, caller: Caller, hold: bool) -> dict:
        """Hold a pending job (it stays pending, JobHeldUser) or release it."""
        job = self.visible_job(job_id, caller)
        policy.check_owner(job, caller, "hold or release")
        if job["state"] != State.PENDING:
            raise Conflict(f"job {job_id} is {job['state']}; only pending jobs can be held or released")
        now = time.time()
        done = await self.store.write(Store.op_transition, job_id, [State.PENDING], {"hold": int(hold)},
                                      "held" if hold else "released", caller.user, {}, now)
        if not done:
            raise Conflict(f"job {job_id} started meanwhile; only pending jobs can be held or released")
        job["hold"] = int(hold)
        self._touch(job)
        self.kick()
        return {"job_id": job_id, "hold": hold}

    def listed_jobs(self) -> list[dict]:
        """Pending and running jobs as users see them: a job whose end is still being committed
        is listed as running until it is, so that a job gone from mqueue is ended in the store."""
        return [*self.active.values(), *self._ending.values()]

    async def wait_ended(self, job_id: int, timeout: float) -> dict | None:
        """Block until the job is finished or the timeout passes; return the job row."""
        deadline = time.monotonic() + timeout
        async with self._ended:
            while job_id in self.active or job_id in self._ending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._ended.wait(), left)
                except TimeoutError:
                    break
        return self.store.job(job_id)

    # ---- scheduling --------------------------------------------------------------------------

    def kick(self, new_jobs_only: bool = False) -> None:
        """Ask for a scheduling pass. `new_jobs_only`: nothing changed but that jobs were
        submitted, which cannot start while the last plan left no CPU free anywhere."""
        if not new_jobs_only:
            self._room_may_be_free = True
            self._urgent.set()
        self._kick.set()

    async def schedule_forever(self) -> None:
        """One plan per burst of events, plus a slow tick for begin times and dependencies."""
        while not self._stopping:
            wait = SLOW_TICK
            if self._deferred:  # jobs past the queue depth wait for the next full pass
                wait = max(0.0, self._last_full + FULL_PASS_INTERVAL - time.monotonic())
            try:
                await asyncio.wait_for(self._kick.wait(), wait)
            except TimeoutError:
                pass
            if not self._urgent.is_set() and (gap := self._next_pass - time.monotonic()) > 0:
                try:  # submissions alone: let a burst gather into one pass, unless a job ends meanwhile
                    await asyncio.wait_for(self._urgent.wait(), gap)
                except TimeoutError:
                    pass
            self._kick.clear()
            self._urgent.clear()
            if self._stopping:
                break
            began = time.monotonic()
            try:
                await self.schedule_once()
            except Exception:  # noqa: BLE001 - a bad plan must not stop scheduling
                log.exception("scheduling pass failed")
            # A burst of submissions over a deep queue would otherwise have the loop plan more
            # than it accepts them: passes they trigger take at most a tenth of its time.
            done = time.monotonic()
            self._next_pass = done + PASS_GAP_FACTOR * (done - began)

    def _snapshot(self, now: float, depth: int | None = None) -> scheduler.Snapshot:
        """What the scheduler sees; with ``depth``, only that many pending jobs, first in priority order.

        A full pass walks every active job and keeps the pending ones in priority order. An
        event's pass (``depth``) then reads the first ones off that order, with the jobs
        submitted or changed since (`_touch`) merged in, instead of walking every pending job:
        at hundreds of ends a second over a deep queue, that walk was most of melond's
        scheduling time. An entry of the order is current only while it is its job's cached
        view; every change drops that cache, so a stale entry is recognised and skipped.
        """
        self._states = None
        nodes = tuple(scheduler.NodeView(n.name, n.partition, n.cpus, n.memory, n.available)
                      for n in self.nodes.values())
        if depth is not None and self._order is not None:
            return self._event_snapshot(nodes, now, depth)
        running, pending = [], []  # pending: (priority order, view), so ordering compares tuples only
        order, volatile, running_ids = [], set(), set()
        running_state = State.RUNNING.value
        for job in self.active.values():
            if job["state"] == running_state:
                running.append(self._running_view(job))
                running_ids.add(job["id"])
                continue
            entry, cached = self._entry(job, now)
            pending.append(entry)
            if cached:
                order.append(entry)
            else:
                volatile.add(job["id"])
        order.sort(key=ORDER_KEY)
        self._order, self._volatile, self._running_ids = order, volatile, running_ids
        self._touched.clear()
        self._deferred = depth is not None and len(pending) > depth
        if self._deferred:
            pending = heapq.nsmallest(depth, pending)  # the order key ends with the job id: no ties
        return scheduler.Snapshot(nodes, tuple(running), tuple(view for _, view in pending))

    def _event_snapshot(self, nodes: tuple, now: float, depth: int) -> scheduler.Snapshot:
        running = []
        for jid in list(self._running_ids):
            job = self.active.get(jid)
            if job is None or job["state"] != State.RUNNING:
                self._running_ids.discard(jid)
            else:
                running.append(self._running_view(job))
        pending_state = State.PENDING.value
        for jid in self._touched:
            job = self.active.get(jid)
            if job is not None and job["state"] == pending_state:
                entry, cached = self._entry(job, now)
                if cached:
                    bisect.insort(self._order, entry, key=ORDER_KEY)
                else:
                    self._volatile.add(jid)
        self._touched.clear()
        taken: list = []
        stale_head = 0
        more = False
        for entry in self._order:
            job = self.active.get(entry[1].job_id)
            if job is None or job["state"] != pending_state or job.get(VIEW_CACHE) is not entry:
                if not taken:
                    stale_head += 1
                continue
            if len(taken) == depth:
                more = True
                break
            taken.append(entry)
        del self._order[:stale_head]  # started, ended or changed: gone from the order for good
        for jid in list(self._volatile):  # dependencies and begin times change with time: recomputed
            job = self.active.get(jid)
            if job is None or job["state"] != pending_state:
                self._volatile.discard(jid)
                continue
            entry, cached = self._entry(job, now)
            if cached:  # its begin time passed: ordered from now on
                self._volatile.discard(jid)
                bisect.insort(self._order, entry, key=ORDER_KEY)
            taken.append(entry)
        self._deferred = more or len(taken) > depth
        pending = heapq.nsmallest(depth, taken, key=ORDER_KEY)  # sorted, at most `depth`
        return scheduler.Snapshot(nodes, tuple(running), tuple(view for _, view in pending))

    def _running_view(self, job: dict) -> scheduler.RunningView:
        end = job["start_time"] + job["time_limit"] if job["time_limit"] else None
        return scheduler.RunningView(job["id"], job["node"], job["cpus"], job["memory"] // MIB, end,
                                     job.get("array_job_id"))

    def _entry(self, job: dict, now: float) -> tuple[tuple, bool]:
        """A pending job's (order key, view), and whether it is cached (nothing in it changes with
        time: no dependency, no begin time ahead; extend(), holds, requeues and starts drop it)."""
        entry = job.get(VIEW_CACHE)
        if entry is not None:
            return entry, True
        blocked = self._blocked(job, now, self._states)
        if blocked == "need_states":
            self._states = self._dependency_states()
            blocked = self._blocked(job, now, self._states)
        view = scheduler.PendingView(
            job["id"], job["priority"], job["submit_time"], job["cpus"], job["memory"] // MIB,
            job["time_limit"], job["partition"], frozenset(job.get("nodelist") or ()),
            frozenset(job.get("exclude") or ()), blocked, job.get("array_job_id"), job.get("array_throttle"))
        entry = (scheduler.priority_order(view), view)
        cached = not job.get("dependency") and not (job.get("begin_time") and job["begin_time"] > now)
        if cached:
            job[VIEW_CACHE] = entry
        return entry, cached

    def _touch(self, job: dict) -> None:
        """Something in a job's scheduler view changed (or it is new, or pending again)."""
        job.pop(VIEW_CACHE, None)
        self._touched[job["id"]] = None

    def _blocked(self, job: dict, now: float, states: dict[int, str] | None) -> str | None:
        """Reasons outside the scheduler's resource view, in Slurm's order of precedence."""
        if job["hold"]:
            return "JobHeldUser"
        if job.get("begin_time") and job["begin_time"] > now:
            return "BeginTime"
        if job.get("dependency"):
            if states is None:
                return "need_states"
            status = jobrel.dependency_status(jobrel.parse_dependency(job["dependency"]), states)
            if status != "ready":
                return "Dependency" if status == "wait" else "DependencyNeverSatisfied"
        max_time = self.max_time.get(job["partition"], 0)
        if max_time and (job["time_limit"] == 0 or job["time_limit"] > max_time):
            return "PartitionTimeLimit"
        return None

    def _dependency_states(self) -> dict[int, str]:
        ids: set[int] = set()
        for job in self.active.values():
            if job.get("dependency"):
                ids.update(_dep_ids(job["dependency"]))
        rows = self.store.jobs(ids=ids, columns="id, state") if ids else []
        return {r["id"]: SHORT[State(r["state"])] for r in rows}

    async def schedule_once(self) -> None:
        """Plan and start. Like Slurm's main scheduler, a pass made for an event looks only at the
        first QUEUE_DEPTH pending jobs, so that a deep queue does not make every job end cost a
        walk over all of it; the jobs behind them (and their pending reasons) are planned by the
        full pass, made at most FULL_PASS_INTERVAL apart."""
        now = time.time()
        full = time.monotonic() - self._last_full >= FULL_PASS_INTERVAL
        if not full and not self._room_may_be_free and self._deferred:
            # Only new submissions since a plan that filled every node, behind a queue deeper than
            # an event's pass looks: nothing can start, and their reasons come with the full pass.
            return
        self._room_may_be_free = False
        if full:
            self._last_full = time.monotonic()
        plan = scheduler.plan(self._snapshot(now, None if full else QUEUE_DEPTH), now)
        self._room_may_be_free = plan.free_cpus > 0
        for start in plan.starts:
            job = self.active[start.job_id]
            # RUNNING in memory before anything else runs, so the next plan counts its CPUs.
            job.update(state=State.RUNNING.value, node=start.node, start_time=now, reason=None)
            job.pop(VIEW_CACHE, None)
            self._running_ids.add(job["id"])
            self._spawn(self._dispatch(job, start.node, now))
        changed = {jid: r for jid, r in plan.reasons.items()
                   if jid in self.active and self.active[jid].get("reason") != r}
        if changed:
            for jid, r in changed.items():
                self.active[jid]["reason"] = r
            # Not awaited: the next pass need not wait for a commit of reasons (which only ever
            # touch rows still PENDING, so a late one cannot mislabel a job that has started).
            self._spawn(self.store.write(Store.op_set_reasons, changed))

    async def _dispatch(self, job: dict, node: str, now: float) -> None:
        """Mark RUNNING (durably) first, then ask the node; a start is idempotent on the node."""
        done = await self.store.write(Store.op_transition, job["id"], [State.PENDING], {
            "state": State.RUNNING.value, "node": node, "start_time": now, "reason": None,
        }, "started", "melond", {"node": node}, now)
        if not done:  # cancelled while the plan was made
            self.active.pop(job["id"], None)
            return
        await self._start_on_node(job)

    async def _start_on_node(self, job: dict) -> None:
        """Ask the job's node to start its current run. A start is idempotent on the node, so one
        that got no answer in time (a node busy with a burst of launches) is simply asked again."""
        node, run = job["node"], _run(job)
        home = nss.home(job["user"])
        req = launch.start_request(job, node, kill_wait=self.kill_wait, tasks_max=self.inv.tasks_max, home=home)
        for attempt in itertools.count():
            session = self.sessions.get(node)
            if session is None or not session.up:
                return  # the node's reconcile starts it when it is back
            if self.active.get(job["id"]) is not job or job.get("node") != node or _run(job) != run:
                return  # ended, requeued or cancelled meanwhile
            try:
                reply = await session.request("start", job=req, timeout=START_TIMEOUT)
                break
            except NodeTimeout as exc:
                log.warning("start unanswered; asking again", extra={"job": job["id"], "error": str(exc)})
                await asyncio.sleep(_retry_delay(attempt))
            except NodeUnavailable:
                return
            except NodeRequestFailed as exc:
                await self._record_end(job["id"], {"reason": "launch_failed", "error": str(exc), "exit_code": None,
                                                   "signal": None, "end": time.time()})
                return
        if reply.get("already") and reply.get("state") == "ended":
            await self._record_end(job["id"], reply["result"], node=node, run=run)
        elif reply.get("already") and reply.get("state") == "lost":  # claimed by a supervisor that died
            await self._record_end(job["id"], _lost(reply.get("error")), node=node, run=run)

    # ---- node events ---------------------------------------------------------------------------

    def on_event(self, node: str, msg: dict) -> None:
        if msg.get("event") == "exited":
            self._spawn(self._record_end(int(msg["job_id"]), msg["result"], node=node, run=int(msg.get("run", 0))))

    async def _record_end(self, job_id: int, result: dict, node: str | None = None, run: int | None = None) -> None:
        """Record how a job's run ended: its final state, or back to PENDING if it asked to be
        requeued and its node failed. The run's spool record is forgotten once this is durable."""
        now = time.time()
        job = self.active.get(job_id)
        if job is not None and run is not None and (run != _run(job) or (node and job.get("node") != node)):
            # An earlier run's end (a requeued job's old run, fenced on its node): nothing to record.
            if node in self.sessions:
                self._forget_later(node, job_id, run)
            return
        where = node or (job or {}).get("node")
        run = _run(job) if run is None and job is not None else (run or 0)
        if job is not None and self._wants_requeue(job, result):
            if _run(job) < self.inv.max_batch_requeue:
                await self._requeue(job, result)
                if where in self.sessions:
                    self._forget_later(where, job_id, run)
                return
            result = {**result, "error": f"{result.get('error') or 'node failure'}; not requeued: the job was "
                                        f"requeued {_run(job)} times already (max_batch_requeue)"}
        state = job[END_AS] if job is not None and job.get(END_AS) else end_state(result)
        changes = {
            "state": state.value, "end_time": result.get("end") or now, "exit_code": result.get("exit_code"),
            "exit_signal": result.get("signal"), "detail": result.get("error"),
        }
        if result.get("start") and job is not None:
            changes["start_time"] = result["start"]
        data = {k: result.get(k) for k in ("reason", "exit_code", "signal", "term_sent", "backend", "error")}
        if result.get("term_sent") and job is not None and job.get("time_limit") and result.get("start"):
            data["kill_late_by"] = round(result["term_sent"] - (result["start"] + job["time_limit"]), 4)
        # Free the job's CPUs for the next plan now, while the end is being committed: the write queue
        # is FIFO, so any start this frees is committed after this end. Should melond die first, the
        # node still holds the result (it is forgotten only after the commit) and reconcile replays it.
        if job is not None and self.active.pop(job_id, None) is not None:
            self._ending[job_id] = job
            self.kick()
        try:
            done = await self.store.write(Store.op_transition, job_id, [State.RUNNING], changes, "ended",
                                          "melond", data, now)
        finally:
            self._ending.pop(job_id, None)
        if done:
            self._finished(job_id)
            log.info("job ended", extra={"job": job_id, "state": state.value, "exit_code": result.get("exit_code")})
        if where in self.sessions:
            self._forget_later(where, job_id, run)

    def _wants_requeue(self, job: dict, result: dict) -> bool:
        """Does this end ask to send the job back to the queue? Only a --requeue job whose node
        failed (lost, or downed by an operator), not one its user cancelled."""
        node_failed = result.get("reason") == "lost" or job.get(END_AS) == State.NODE_FAIL
        return bool(job.get("requeue")) and node_failed and not job.get("cancel_requested")

    async def _requeue(self, job: dict, result: dict) -> None:
        """Back to PENDING as the job's next run (sbatch --requeue after a node failure). The old run
        has its own spool record, so whatever is left of it on the failed node is fenced when that
        node returns and can never be taken for the new run."""
        runs = _run(job) + 1
        now = time.time()
        data = {"node": job.get("node"), "restarts": runs, "why": result.get("error") or result.get("reason")}
        done = await self.store.write(Store.op_transition, job["id"], [State.RUNNING], {
            "state": State.PENDING.value, "node": None, "start_time": None, "restarts": runs, "reason": None,
        }, "requeued", "melond", data, now)
        if done:
            job.update(state=State.PENDING.value, node=None, start_time=None, restarts=runs, reason=None)
            for key in (END_AS, "cancel_requested"):
                job.pop(key, None)
            self._touch(job)
            log.warning("job requeued", extra={"job": job["id"], **data})
            self.kick()

    def _forget_later(self, node: str, job_id: int, run: int) -> None:
        """Batch spool clean-ups per node: one request for many ended runs."""
        batch = self._to_forget.setdefault(node, [])
        batch.append([job_id, run])
        if len(batch) == 1:
            self._spawn(self._forget(node))

    async def _forget(self, node: str) -> None:
        await asyncio.sleep(FORGET_DELAY)
        runs = self._to_forget.pop(node, [])
        try:
            await self.sessions[node].request("forget", runs=runs)
        except MelonError:
            pass  # forgotten at the next reconcile

    def _finished(self, job_id: int) -> None:
        self.active.pop(job_id, None)
        self.kick()
        self._spawn(self._notify_ended())

    async def _notify_ended(self) -> None:
        async with self._ended:
            self._ended.notify_all()

    async def _send_kill(self, job: dict, attempt: int = 0) -> None:
        session = self.sessions.get(job.get("node") or "")
        if session is None or not session.up or self.active.get(job["id"]) is not job:
            return  # re-sent by the node's reconcile, or ended meanwhile
        try:
            await session.request("kill", job_id=job["id"], run=_run(job))
        except NodeTimeout:
            # A busy node: a kill is idempotent (a flag in the run's spool), so ask again, in the background.
            self._spawn(self._kill_later(job, attempt + 1))
        except NodeRequestFailed as exc:
            if exc.node_code != "no_such_job":
                raise
            # Marked RUNNING but its start never reached the node: it never ran.
            await self._record_end(job["id"], {"reason": "cancelled", "exit_code": None, "signal": None})

    async def _kill_later(self, job: dict, attempt: int) -> None:
        await asyncio.sleep(_retry_delay(attempt))
        await self._send_kill(job, attempt)

    # ---- node (re)connection --------------------------------------------------------------------

    async def node_up(self, name: str, info: dict) -> None:
        """Reconcile the node's spool with the store: the store wins, nothing runs twice."""
        node = self.nodes[name]
        if info.get("cpus"):
            node.cpus = node.cap_cpus or info["cpus"]  # the inventory's count wins, as Slurm's CPUs=
            node.memory = min(info["memory"], node.cap_memory or info["memory"])
        node.backend = info.get("backend", "none")
        node.backend_reason = info.get("backend_reason", "")
        session = self.sessions[name]
        listing = (await session.request("list"))["jobs"]
        on_node = {(j["id"], j.get("run", 0)): j for j in listing}
        mine = [j for j in self.active.values() if j["state"] == State.RUNNING and j.get("node") == name]
        cancels = self._cancel_requested([j["id"] for j in mine])
        for job in mine:
            run = _run(job)
            seen = on_node.pop((job["id"], run), None)
            if seen is None:
                self._spawn(self._start_on_node(job))
            elif seen["state"] == "ended":
                await self._record_end(job["id"], seen["result"], node=name, run=run)
            elif seen["state"] == "lost":
                await self._record_end(job["id"], _lost("the node lost the job (rebooted?)"), node=name, run=run)
            elif seen["state"] == "claimed":  # no start behind it yet: the start settles it (running or lost)
                self._spawn(self._start_on_node(job))
            else:
                await session.request("set_limit", job_id=job["id"], run=run, limit=job["time_limit"])
                if job["id"] in cancels:
                    job["cancel_requested"] = True
                    await session.request("kill", job_id=job["id"], run=run)
        stale = []
        for (jid, run), seen in on_node.items():
            if seen["state"] in ("running", "claimed"):
                # Fencing: the store does not run this here (it ended NODE_FAIL or was requeued while
                # the node was away). Its end, when it comes, belongs to no current run.
                log.warning("fencing a job run the store does not run here", extra={"node": name, "job": jid,
                                                                                    "run": run})
                await session.request("kill", job_id=jid, run=run)
            else:
                stale.append([jid, run])
        if stale:
            await session.request("forget", runs=stale)
        node.up = True
        await self._save_node(node, "up", None, info)
        self.kick()

    async def node_down(self, name: str, reason: str) -> None:
        """Unreachable: nothing new starts there; after node_timeout its jobs are lost (below)."""
        node = self.nodes[name]
        was_up = node.up
        node.up = False
        node.reason = reason
        await self._save_node(node, "down", reason, None)
        if was_up:
            node.down_since = time.monotonic()
            self._spawn(self._fail_node_after_timeout(name, node.down_since))

    async def _fail_node_after_timeout(self, name: str, since: float) -> None:
        """Still unreachable after the timeout: its running jobs end NODE_FAIL, or go back to the
        queue if submitted with --requeue. Should the node return, its reconcile kills whatever
        still runs there first (fencing)."""
        await asyncio.sleep(self.inv.node_timeout)
        node = self.nodes[name]
        if node.up or node.down_since != since:
            return
        log.warning("node lost", extra={"node": name, "timeout": self.inv.node_timeout})
        now = time.time()
        for job in [j for j in self.active.values() if j["state"] == State.RUNNING and j.get("node") == name]:
            await self._record_end(job["id"], _lost(f"node {name} unreachable for {self.inv.node_timeout:g} s", now))
        if self.inv.return_to_service == 0 and node.drain is None:
            # Slurm's ReturnToService=0: a node that was lost waits for an operator once it is back.
            node.drain = (f"lost at {time.strftime('%Y-%m-%dT%H:%M:%S')} (unreachable for "
                          f"{self.inv.node_timeout:g} s); `mnode resume {name}` returns it")
            await self.store.write(Store.op_set_drain, name, node.drain)
        self.kick()

    # ---- operators' node actions ---------------------------------------------------------------

    def _operated_node(self, name: str, caller: Caller) -> NodeState:
        if not caller.operator:
            raise Forbidden("only operators (root and the inventory's operators) may drain, resume or down nodes")
        if name not in self.nodes:
            raise NotFound(f"no node {name!r}; nodes: {', '.join(sorted(self.nodes))}")
        return self.nodes[name]

    async def drain(self, name: str, caller: Caller, reason: str) -> dict:
        """Start nothing more on the node; its running jobs finish (DRAINING, then DRAINED)."""
        node = self._operated_node(name, caller)
        node.drain = reason
        await self.store.write(Store.op_set_drain, name, reason)
        log.info("node drained", extra={"node": name, "by": caller.user, "reason": reason})
        self.kick()
        return {"node": name, "drain": reason}

    async def resume(self, name: str, caller: Caller) -> dict:
        node = self._operated_node(name, caller)
        node.drain = None
        await self.store.write(Store.op_set_drain, name, None)
        log.info("node resumed", extra={"node": name, "by": caller.user})
        self.kick()
        return {"node": name, "drain": None}

    async def down(self, name: str, caller: Caller, reason: str) -> dict:
        """Drain the node and kill its running jobs now; they end NODE_FAIL."""
        await self.drain(name, caller, reason)
        killed = []
        for job in [j for j in self.active.values() if j["state"] == State.RUNNING and j.get("node") == name]:
            job[END_AS] = State.NODE_FAIL
            await self.store.write(Store.op_transition, job["id"], [State.RUNNING], {}, "node_down", caller.user,
                                   {"node": name, "reason": reason}, time.time())
            await self._send_kill(job)
            killed.append(job["id"])
        return {"node": name, "drain": reason, "killed": killed}

    def _cancel_requested(self, ids: list[int]) -> set[int]:
        out = set()
        for jid in ids:
            if any(e["kind"] == "cancel_requested" for e in self.store.events(jid)):
                out.add(jid)
        return out

    async def _save_node(self, node: NodeState, state: str, reason: str | None, info: dict | None) -> None:
        row = {"name": node.name, "state": state, "reason": reason, "cpus": node.cpus, "memory": node.memory,
               "backend": node.backend, "updated": time.time()}
        if info is not None:
            row["info"] = json.dumps(info)
        await self.store.write(Store.op_upsert_node, row)

    # ---- plumbing ------------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def stop(self) -> None:
        """Stop scheduling and let in-flight writes finish; running jobs are left alone."""
        self._stopping = True
        self._kick.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)


def _retry_delay(attempt: int) -> float:
    """Seconds before asking a busy node again: 1, 2, 4 ... up to RETRY_CAP."""
    return min(2 ** min(attempt, 8), RETRY_CAP)


def _lost(error: str | None, end: float | None = None) -> dict:
    """The end of a run its node lost (unreachable, rebooted, its supervisor dead): NODE_FAIL."""
    return {"reason": "lost", "exit_code": None, "signal": None, "end": end or time.time(), "error": error}


def _run(job: dict) -> int:
    """Which run of the job this is: 0, then one more per requeue."""
    return job.get("restarts") or 0


def _dep_ids(spec: str) -> set[int]:
    return set(jobrel.parse_dependency(spec).job_ids)



