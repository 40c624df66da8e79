"""The scheduling loop: when to plan, and carrying a plan's starts and reasons out.

Two kinds of pass, as Slurm has its main scheduler and its backfill:
- An event's pass (a submit, an end, an extension, a node up) looks at the first QUEUE_DEPTH
  pending jobs (Slurm's default_queue_depth) and plans them strictly: in priority order, each
  partition stopping at its first job that must wait for resources (`plan(strict=True)`). It
  makes no reservation, so it reads what running jobs hold as sums kept between passes, and
  costs the same whatever the queue's depth and however many jobs run.
- A full pass backfills: the first FULL_PASS_DEPTH pending jobs (Slurm's bf_max_job_test) in
  priority order, each later one started only where it delays no reservation of those ahead.
  Jobs past that depth are planned once they come within it, and keep their last reason until
  then. It comes at most FULL_PASS_INTERVAL apart when an event's pass left work for it (jobs
  past the depth, or jobs waiting for resources or their turn), or, where a full pass
  takes longer than a tenth of that, FULL_PASS_SHARE times its own length apart: planning never
  takes more than about a tenth of melond's time (Slurm's backfill runs every bf_interval, 30 s
  by default, for the same reason).
"""
from __future__ import annotations

import asyncio
import gc
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
FULL_PASS_DEPTH = 10_000  # Slurm's bf_max_job_test (500 by default): a full pass looks at this many
FULL_PASS_INTERVAL = 1.0  # ...and every pending job is looked at least this often
FULL_PASS_SHARE = 10.0  # ...unless the last full pass took more than a tenth of that: its length times this
PASS_GAP_FACTOR = 9.0  # after a pass of t seconds, submissions alone wait 9t for the next
_QUEUED = frozenset({str(planner.Reason.RESOURCES), str(planner.Reason.PRIORITY)})

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
        # The last event's pass left jobs waiting for resources or their turn: the next full pass,
        # which backfills and gives them reservations (their expected starts), is not left to the slow tick
        self._backfill_due = False
        self._next_pass = 0.0  # time.monotonic() before which submissions alone start no pass
        self._stopping = False
        # The last plans' expected start of each waiting job with a reservation (`mqueue --start`):
        # a full pass replaces them, a pass over the head of the queue updates those it planned.
        self.expected_starts: dict[int, float] = {}
        self.expected_nodes: dict[int, str] = {}  # where each reservation is: the UI's timeline
        self.passes = Timings()  # each pass that planned (`/metrics`, `minfo --stats`)
        self.last_queue_length = 0  # pending jobs the last pass looked at (sdiag's "Last queue length")
        self.after_pass: Callable[[Mapping[int, str]], None] | None = None  # told each pass' pending reasons
        self._node_views: dict[str, tuple[tuple, planner.NodeView]] = {}  # node_views()' own, and what made each

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
            if self.order.deferred or self._backfill_due:  # jobs the next full pass may start
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
        """Each node as the plan sees it; a node's view is kept while what it is made of is the
        same (a thousand nodes' views are not made again at every pass)."""
        busy = self._busy(_Taken(self.jobs, {})) if any(n.gpu_busy for n in self.nodes.values()) else {}
        views = []
        kept = self._node_views
        for n in self.nodes.values():
            taken = busy.get(n.name)
            key = (n.partition, n.usable_cpus, n.memory, n.available, n.runs_for, n.devices,
                   frozenset(taken) if taken else None)
            view = kept.get(n.name)
            if view is None or view[0] != key:
                view = kept[n.name] = key, planner.NodeView(
                    n.name, n.partition, n.usable_cpus, n.memory, n.available, n.runs_for,
                    tuple((gres.BUSY, None) if taken and i in taken else (d.name, d.type) for i, d in enumerate(n.devices)))
            views.append(view[1])
        return tuple(views)

    def _busy(self, held: _Taken) -> dict[str, set[int]]:
        """Devices busy with processes melond did not start (as their node last reported), less
        those running jobs hold: never handed out."""
        return {n.name: set(gres.foreign(n.gpu_busy, held.devices(n.name))) for n in self.nodes.values()
                if n.gpu_busy}

    def snapshot(self) -> tuple[planner.Snapshot, float]:
        """Everything the scheduler would look at now, every pending job included (the no-delay
        test of an extension plans with it)."""
        now = time.time()
        return self.order.snapshot(self.jobs.active, self.node_views(), now, self.store.states), now

    def _devices(self, job: Job, node: NodeState, tasks: int, taken: _Taken) -> str | None:
        """The devices the job gets on `node` (positions in its list, cpuset form): none another
        running job holds, the lowest first; a whole-node job gets every one."""
        if not node.devices:
            return None
        used = taken.devices(node.name)
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

    def _pin(self, cpus_wanted: int, job: Job, node: NodeState, taken: _Taken) -> str | None:
        """The CPUs the job gets on `node`: none another running job holds (`taken`, updated as
        the pass starts jobs). None where the node does not pin, or (never, as the plan counts
        CPUs) where too few are free."""
        if not node.cpu_order:
            return None
        used = taken.cpus(node.name)
        ids = cpus.pick(node.cpu_order, used, cpus_wanted, node.cpu_socket)
        if ids is None:
            log.warning("too few free CPUs to pin; the job runs unpinned", extra={"job": job.id, "node": node.name})
            return None
        used.update(ids)
        return cpuset_text(ids)

    def run_once(self, full: bool | None = None) -> bool:
        """Plan, mark the starts RUNNING in memory, and hand them to the dispatcher; False when
        there was nothing to plan. `full`: a full pass or an event's (by default, as the time
        since the last full pass says).

        No garbage collection runs during a pass: its thousands of short-lived objects (views,
        reasons), alive while it runs and freed as it ends, would be promoted to the oldest
        generation, and every few passes Python would scan every object in memory (300 ms at
        100,000 pending jobs) while nobody is answered."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._pass(full)
        finally:
            if collecting:
                gc.enable()

    def _pass(self, full: bool | None) -> bool:
        now = time.time()
        if full is None:
            full = time.monotonic() - self._last_full >= self._full_every
        if not full and not self._room_may_be_free and self.order.deferred:
            # Only new submissions since a plan that filled every node, behind a queue deeper than
            # an event's pass looks: nothing can start, and their reasons come with the full pass.
            return False
        self._room_may_be_free = False
        if full:
            self._last_full = time.monotonic()
        snapshot = self.order.snapshot(self.jobs.active, self.node_views(), now, self.store.states,
                                       FULL_PASS_DEPTH if full else QUEUE_DEPTH, strict=not full)
        plan = planner.plan(snapshot, now, strict=not full)
        self.last_queue_length = len(snapshot.pending)
        self._room_may_be_free = plan.free_cpus > 0
        self._backfill_due = not full and not _QUEUED.isdisjoint(plan.reasons.values())
        if full:
            self.expected_starts, self.expected_nodes = plan.expected, plan.expected_nodes
        else:
            self.expected_starts.update(plan.expected)
            self.expected_nodes.update(plan.expected_nodes)
        taken = _Taken(self.jobs, self.nodes)
        for start in plan.starts:
            job = self.jobs.active[start.job_id]
            node = self.nodes[start.node]
            if len(start.shares) > 1:
                # In host list order, as SLURM_JOB_NODELIST names them: its first node runs the batch script.
                order = {name: i for i, name in enumerate(expand_hostlist(ranged_hostlist([s.node for s in start.shares])))}
                shares = sorted(start.shares, key=lambda s: order[s.node])
                job.parts = [[s.node, s.cpus, s.tasks, s.memory, self._pin(s.cpus, job, self.nodes[s.node], taken),
                              self._devices(job, self.nodes[s.node], s.tasks, taken)] for s in shares]
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
                                             taken)
            # RUNNING in memory before anything else runs, so the next plan counts its CPUs.
            job.state, job.node, job.start_time, job.reason = State.RUNNING, node.name, now, None
            self.jobs.started(job)
            if job.gres_total or job.exclusive:  # what it holds, for accounting: a whole node's every device
                job.gres_total = gres.format_gres(gres.merge(*(
                    gres.held(self.nodes[p.node].devices, parse_cpuset(p.gres_ids)) for p in job.placed
                    if p.node in self.nodes))) or None
            self.order.started(job)
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


class _Taken:
    """The CPUs and the devices (positions) of each node a start may not have: those its running
    jobs hold, and devices busy with others' processes. Read a node at a time, when a pass first
    starts something there (an event's pass that starts one job reads one node's, not every
    running job's), then updated as the pass starts more."""

    def __init__(self, jobs: JobTable, nodes: Mapping[str, NodeState]) -> None:
        self._jobs, self._nodes = jobs, nodes
        self._cpus: dict[str, set[int]] = {}
        self._devices: dict[str, set[int]] = {}

    def cpus(self, node: str) -> set[int]:
        if node not in self._cpus:
            self._read(node)
        return self._cpus[node]

    def devices(self, node: str) -> set[int]:
        if node not in self._devices:
            self._read(node)
        return self._devices[node]

    def _read(self, node: str) -> None:
        cpus: set[int] = set()
        devices: set[int] = set()
        for job in self._jobs.running_on(node):
            for part in job.placed:
                if part.node == node:
                    if part.cpu_ids:
                        cpus.update(parse_cpuset(part.cpu_ids))
                    if part.gres_ids:
                        devices.update(parse_cpuset(part.gres_ids))
        state = self._nodes.get(node)
        if state is not None and state.gpu_busy:
            devices.update(gres.foreign(state.gpu_busy, devices))
        self._cpus[node], self._devices[node] = cpus, devices
