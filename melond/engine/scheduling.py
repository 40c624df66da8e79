"""The scheduling loop: when to plan, and carrying a plan's starts and reasons out.

A pass (`sched.plan.plan`, pure) runs on every event (submit, end, extend, node up) and on a
slow tick (begin times, dependencies). As Slurm's main scheduler does, a pass made for an event
looks only at the first QUEUE_DEPTH pending jobs, so that a deep queue does not make every job
end cost a walk over all of it; the jobs behind them, and their pending reasons, are planned by
the full pass, made at most FULL_PASS_INTERVAL apart, or, where the queue is so deep that a full
pass takes longer than a tenth of that, FULL_PASS_SHARE times its own length apart: planning every
pending job never takes more than about a tenth of melond's time (Slurm's backfill pass runs every
bf_interval, 30 s by default, for the same reason).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from melond.engine.jobs import JobTable
from melond.figures import Timings
from melond.engine.tasks import Tasks
from melond.nodes.state import NodeState
from melond.sched import cpus
from melond.spec import gres
from melond.spec.cpulist import cpuset_text, parse_cpuset
from melond.spec.timespec import expand_hostlist, ranged_hostlist
from melond.sched import plan as planner
from melond.sched.order import PendingOrder
from melond.spec.states import State
from melond.state.job import Job
from melond.state.store import Store

log = logging.getLogger("melond.engine")

SLOW_TICK = 5.0
QUEUE_DEPTH = 100  # Slurm's default_queue_depth: an event's pass looks at this many pending jobs
FULL_PASS_INTERVAL = 1.0  # ...and every pending job is looked at least this often
FULL_PASS_SHARE = 10.0  # ...unless the last full pass took more than a tenth of that: its length times this
PASS_GAP_FACTOR = 9.0  # after a pass of t seconds, submissions alone wait 9t for the next

Dispatch = Callable[[Job, str, float], Awaitable[None]]


class SchedulingLoop:
    def __init__(self, jobs: JobTable, nodes: Mapping[str, NodeState], order: PendingOrder, store: Store,
                 dispatch: Dispatch, tasks: Tasks) -> None:
        self.jobs, self.nodes, self.order, self.store = jobs, nodes, order, store
        self.dispatch = dispatch
        self.tasks = tasks
        self._kick = asyncio.Event()
        self._urgent = asyncio.Event()  # a kick other than new submissions is waiting
        self._last_full = 0.0  # time.monotonic() of the last pass over every pending job
        self._full_every = FULL_PASS_INTERVAL  # seconds from one full pass to the next
        self._room_may_be_free = True  # False while the last plan left no CPU free on any node
        self._next_pass = 0.0  # time.monotonic() before which submissions alone start no pass
        self._stopping = False
        # The last plans' expected start of each waiting job with a reservation (`mqueue --start`):
        # a full pass replaces them, a pass over the head of the queue updates those it planned.
        self.expected_starts: dict[int, float] = {}
        self.expected_nodes: dict[int, str] = {}  # where each reservation is: the UI's timeline
        self.passes = Timings()  # each pass that planned (`/metrics`, `minfo --stats`)
        self.last_queue_length = 0  # pending jobs the last pass looked at (sdiag's "Last queue length")
        self.after_pass: Callable[[Mapping[int, str]], None] | None = None  # told each pass' pending reasons

    def kick(self, new_jobs_only: bool = False) -> None:
        """Ask for a pass. `new_jobs_only`: nothing changed but that jobs were submitted, which
        cannot start while the last plan left no CPU free anywhere."""
        if not new_jobs_only:
            self._room_may_be_free = True
            self._urgent.set()
        self._kick.set()

    def stop(self) -> None:
        self._stopping = True
        self._kick.set()

    async def run_forever(self) -> None:
        """One plan per burst of events, plus a slow tick for begin times and dependencies."""
        while not self._stopping:
            wait = SLOW_TICK
            if self.order.deferred:  # jobs past the queue depth wait for the next full pass
                wait = max(0.0, self._last_full + self._full_every - time.monotonic())
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
            planned = False
            try:
                planned = self.run_once()
            except Exception:  # noqa: BLE001 - a bad plan must not stop scheduling
                log.exception("scheduling pass failed")
            # A burst of submissions over a deep queue would otherwise have the loop plan more
            # than it accepts them: passes they trigger take at most a tenth of its time.
            done = time.monotonic()
            self._next_pass = done + PASS_GAP_FACTOR * (done - began)
            if planned:
                self.passes.observe(done - began)

    def node_views(self) -> tuple[planner.NodeView, ...]:
        busy = self._busy(self._holdings()[1]) if any(n.gpu_busy for n in self.nodes.values()) else {}
        return tuple(planner.NodeView(n.name, n.partition, n.usable_cpus, n.memory, n.available, n.runs_for,
                                      tuple((gres.BUSY, None) if i in busy.get(n.name, ()) else (d.name, d.type)
                                            for i, d in enumerate(n.devices))) for n in self.nodes.values())

    def _holdings(self) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
        """The CPUs and the devices (positions) each node's running jobs hold, in one walk."""
        cpus: dict[str, set[int]] = {}
        devices: dict[str, set[int]] = {}
        for j in self.jobs.running():
            for part in j.placed:
                if part.cpu_ids:
                    cpus.setdefault(part.node, set()).update(parse_cpuset(part.cpu_ids))
                if part.gres_ids:
                    devices.setdefault(part.node, set()).update(parse_cpuset(part.gres_ids))
        return cpus, devices

    def _busy(self, held: dict[str, set[int]]) -> dict[str, set[int]]:
        """Devices busy with processes melond did not start (as their node last reported), less
        those running jobs hold (`held`): never handed out."""
        return {n.name: set(gres.foreign(n.gpu_busy, held.get(n.name, set()))) for n in self.nodes.values()
                if n.gpu_busy}

    def snapshot(self) -> tuple[planner.Snapshot, float]:
        """Everything the scheduler would look at now, every pending job included (the no-delay
        test of an extension plans with it)."""
        now = time.time()
        return self.order.snapshot(self.jobs.active, self.node_views(), now, self.store.states), now

    def _taken(self) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
        """The CPUs and the devices of each node a start may not have: those running jobs hold
        (and devices busy with others' processes). Read once per pass that starts something."""
        cpus, devices = self._holdings()
        for name, busy in self._busy(devices).items():
            devices.setdefault(name, set()).update(busy)
        return cpus, devices

    def _devices(self, job: Job, node: NodeState, tasks: int, taken: dict[str, set[int]]) -> str | None:
        """The devices the job gets on `node` (positions in its list, cpuset form): none another
        running job holds, the lowest first; a whole-node job gets every one."""
        if not node.devices:
            return None
        used = taken.setdefault(node.name, set())
        if job.exclusive:  # every device no one else holds
            ids = [i for i in range(len(node.devices)) if i not in used] or None
            return self._took(ids, used)
        want = gres.wanted(job.gres, job.gpus_per_task, tasks)
        if not want:
            return None
        ids = gres.pick(node.devices, want, used)
        if ids is None:  # never, as the plan counts them: started without, and said
            log.warning("too few free devices; the job starts without them", extra={"job": job.id, "node": node.name})
        return self._took(ids, used)

    @staticmethod
    def _took(ids: list[int] | None, used: set[int]) -> str | None:
        if not ids:
            return None
        used.update(ids)
        return cpuset_text(sorted(ids))

    def _pin(self, cpus_wanted: int, job: Job, node: NodeState, taken: dict[str, set[int]]) -> str | None:
        """The CPUs the job gets on `node`: none another running job holds (`taken`, updated as
        the pass starts jobs). None where the node does not pin, or (never, as the plan counts
        CPUs) where too few are free."""
        if not node.cpu_order:
            return None
        used = taken.setdefault(node.name, set())
        ids = cpus.pick(node.cpu_order, used, cpus_wanted, node.cpu_socket)
        if ids is None:
            log.warning("too few free CPUs to pin; the job runs unpinned", extra={"job": job.id, "node": node.name})
            return None
        used.update(ids)
        return cpuset_text(ids)

    def run_once(self) -> bool:
        """Plan, mark the starts RUNNING in memory, and hand them to the dispatcher; False when
        there was nothing to plan."""
        now = time.time()
        full = time.monotonic() - self._last_full >= self._full_every
        if not full and not self._room_may_be_free and self.order.deferred:
            # Only new submissions since a plan that filled every node, behind a queue deeper than
            # an event's pass looks: nothing can start, and their reasons come with the full pass.
            return False
        self._room_may_be_free = False
        if full:
            self._last_full = time.monotonic()
        snapshot = self.order.snapshot(self.jobs.active, self.node_views(), now, self.store.states,
                                       None if full else QUEUE_DEPTH)
        plan = planner.plan(snapshot, now)
        self.last_queue_length = len(snapshot.pending)
        self._room_may_be_free = plan.free_cpus > 0
        if full:
            self.expected_starts, self.expected_nodes = plan.expected, plan.expected_nodes
        else:
            self.expected_starts.update(plan.expected)
            self.expected_nodes.update(plan.expected_nodes)
        taken, devices = self._taken() if plan.starts else ({}, {})
        for start in plan.starts:
            job = self.jobs.active[start.job_id]
            node = self.nodes[start.node]
            if len(start.shares) > 1:
                # In host list order, as SLURM_JOB_NODELIST names them: its first node runs the batch script.
                order = {name: i for i, name in enumerate(expand_hostlist(ranged_hostlist([s.node for s in start.shares])))}
                shares = sorted(start.shares, key=lambda s: order[s.node])
                job.parts = [[s.node, s.cpus, s.tasks, s.memory, self._pin(s.cpus, job, self.nodes[s.node], taken),
                              self._devices(job, self.nodes[s.node], s.tasks, devices)] for s in shares]
                node = self.nodes[job.parts[0][0]]
                job.cpus = sum(s.cpus for s in start.shares)
                job.cpu_ids, job.gres_ids = job.parts[0][4], job.parts[0][5]
            else:
                if start.shares:  # a job that could have spanned nodes, on one
                    job.cpus = start.shares[0].cpus
                elif job.exclusive:
                    job.cpus = node.usable_cpus  # the whole node it got (its partition's share of it)
                job.parts = []
                job.cpu_ids = self._pin(job.cpus, job, node, taken)
                job.gres_ids = self._devices(job, node, start.shares[0].tasks if start.shares else job.shape.ntasks,
                                             devices)
            # RUNNING in memory before anything else runs, so the next plan counts its CPUs.
            job.state, job.node, job.start_time, job.reason = State.RUNNING, node.name, now, None
            self.jobs.started(job)
            if job.gres_total or job.exclusive:  # what it holds, for accounting: a whole node's every device
                job.gres_total = gres.format_gres(gres.merge(*(
                    gres.held(self.nodes[p.node].devices, parse_cpuset(p.gres_ids)) for p in job.placed
                    if p.node in self.nodes))) or None
            self.order.started(job.id)
            self.expected_starts.pop(job.id, None)
            self.expected_nodes.pop(job.id, None)
            self.tasks.spawn(self.dispatch(job, node.name, now))
        if self.after_pass is not None:  # preemption, for a job no node has room for
            self.after_pass(plan.reasons)
        job_of = self.jobs.active.get
        changed = {jid: r for jid, r in plan.reasons.items() if (j := job_of(jid)) is not None and j.reason != r}
        if changed:
            for jid, r in changed.items():
                self.jobs.active[jid].reason = r
            # Not awaited: the next pass need not wait for a commit of reasons (which only ever
            # touch rows still PENDING, so a late one cannot mislabel a job that has started).
            self.tasks.spawn(self.store.write(Store.op_set_reasons, changed))
        if full:
            self._full_every = max(FULL_PASS_INTERVAL, FULL_PASS_SHARE * (time.monotonic() - self._last_full))
        return True
