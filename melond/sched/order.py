"""The pending order between scheduling passes: what the scheduler sees, cheaply.

The first pass (and one after priorities change) walks every active job and keeps the pending
ones in priority order. Every later pass reads that order, with the jobs submitted or changed
since (`touch`) merged in, instead of walking and sorting every job: an event's pass (``depth``)
the first ones, a full pass all of them, in order, so that plan() need not sort them. An entry
of the order is current only while it is its job's cached view; every change drops that cache,
so a stale entry is recognised, skipped and, once a pass has passed it, dropped.

Pure: the jobs, the nodes, the time and a way to read dependencies' states come in as arguments.
"""
from __future__ import annotations

import bisect
import heapq
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from enum import IntEnum

from melond.sched.plan import NodeHold, NodeView, PendingView, RunningView, Snapshot, priority_order
from melond.sched.sharing import JOBS, Sharing, tres_of
from melond.spec import jobrel
from melond.spec.cpulist import parse_cpuset
from melond.spec.gres import parse_list, wanted
from melond.spec.states import SHORT, State
from melond.state.job import Job

# A pending entry is [order key, view]; a changed job's old entry may sit beside its new one with
# the same key until it is skipped, so entries are ordered by their key alone. A change that keeps
# the key (a hold, a release, an extension) puts the new view in the job's entry where it stands.
Entry = list  # [tuple, PendingView]
ORDER_KEY, VIEW = operator.itemgetter(0), operator.itemgetter(1)
MERGE_AT = 64  # jobs changed at once past which the order takes them in one sort (each insert moves the list)


class Kept(IntEnum):
    """What alone changed in a pending job whose place in the order stays (a touch's `kept`):
    the larger says more is to be made again."""

    HOLD = 1  # held or released: what blocks it
    LIMIT = 2  # extended: its time limit, and what blocks it


DependencyStates = Callable[[set[int]], Mapping[int, State]]


class PendingOrder:
    """The scheduler's view of the queue, kept between passes."""

    def __init__(self, max_time: Mapping[str, int], sharing: Sharing | None = None,
                 stopped: list[int] | None = None) -> None:
        self.max_time = max_time  # each partition's MaxTime (0: none)
        # Jobs that stopped running since the last pass (ended, requeued, or their start undone),
        # appended to by whoever keeps the jobs (melond.engine.jobs.JobTable) and read here
        self.stopped: list[int] = stopped if stopped is not None else []
        self.sharing = sharing  # accounts' and QOS' limits, counted by the planner in pools
        self.limits: dict[str, tuple[Mapping[str, int], Mapping[str, str]]] = {}
        self.used: dict[str, Counter[str]] = {}  # what running jobs hold in each pool, kept as they start and stop
        self._held: dict[int, tuple[tuple[str, ...], tuple[tuple[str, int], ...]]] = {}  # running jobs' pools
        self.preemptors: set[int] = set()  # waiting for the room their preemption frees (engine/preemption.py)
        self.deferred = False  # the last pass left pending jobs past its depth unplanned
        self._views: dict[int, Entry] = {}  # pending jobs whose view nothing can change but a touch
        self._order: list[Entry] | None = None  # None until the first full pass
        # Jobs new or changed since, in order: the entry each had (None: none), and what changed
        # where that leaves its place in the order as it was (Kept): its view then is the old one,
        # made again when a pass first takes its entry
        self._touched: dict[int, tuple[Entry | None, Kept | None]] = {}
        self._reblock: dict[int, Kept] = {}  # jobs whose kept view is out of date, and in what
        self._volatile: set[int] = set()  # pending jobs whose views change with time (dependencies)
        # What each running job holds (its views as it started), and their sums by node and array,
        # kept as jobs start and stop: an event's pass reads the sums, a full pass checks each
        # running job against its record (_recount).
        self._running: dict[int, list[RunningView]] = {}
        self.holds: dict[str, NodeHold] = {}
        self.array_tasks: Counter[int] = Counter()
        # Jobs cached as waiting for their begin time, woken (touched) when it comes: a queue of
        # --begin jobs costs nothing per pass until then
        self._begins: list[tuple[float, int]] = []
        self._begin_at: dict[int, float] = {}

    def touch(self, job_id: int, kept: Kept | None = None) -> None:
        """Something in a job's scheduler view changed (or it is new, or pending again); `kept`:
        only that changed (its hold, its time limit), and its place in the order stays."""
        old = self._views.pop(job_id, None)
        stale = self._reblock.pop(job_id, None)  # its kept view was out of date already
        if stale is not None and kept is not None:
            kept = max(stale, kept)
        before = self._touched.get(job_id)
        if before is not None:
            old, kept = before[0], None if before[1] is None or kept is None else max(before[1], kept)
        self._touched[job_id] = (old, kept)

    def reorder(self) -> None:
        """Many pending jobs' priorities changed: the next pass walks and sorts them all again."""
        self._views.clear()
        self._reblock.clear()
        self._order = None

    def forget(self, ids: Iterable[int]) -> None:
        """These jobs ended: their entries are stale, found so by one lookup each (a bulk cancel's
        90,000 are walked past at the head of the order in the next pass)."""
        views, reblock = self._views, self._reblock
        for jid in ids:
            views.pop(jid, None)
            reblock.pop(jid, None)

    def started(self, job: Job) -> None:
        """It runs now, holding what its record says (its nodes, CPUs, memory and devices)."""
        self._views.pop(job.id, None)
        self._reblock.pop(job.id, None)
        self._unhold(job.id)
        self._hold(job)

    def _hold(self, job: Job) -> None:
        """Count a running job in: on its nodes, in its array, in its limits' pools."""
        self._running[job.id] = views = running_views(job)
        for view in views:
            hold = self.holds.get(view.node)
            if hold is None:
                hold = self.holds[view.node] = NodeHold()
            hold.add(view)
        if job.array_job_id is not None:
            self.array_tasks[job.array_job_id] += 1
        pools, tres = self._charge(job)
        if pools:
            self._held[job.id] = pools, tres
            for key in pools:
                use = self.used.get(key)
                if use is None:
                    use = self.used[key] = Counter()
                use.update(dict(tres))

    def _unhold(self, job_id: int) -> None:
        views = self._running.pop(job_id, None)
        if views:
            for view in views:
                self.holds[view.node].add(view, -1)
            if views[0].array_job_id is not None:
                self.array_tasks[views[0].array_job_id] -= 1
                if not self.array_tasks[views[0].array_job_id]:
                    del self.array_tasks[views[0].array_job_id]
        held = self._held.pop(job_id, None)
        if held is not None:
            for key in held[0]:
                self.used[key].subtract(dict(held[1]))

    def _unhold_stopped(self) -> None:
        stopped = self.stopped
        if stopped:
            for jid in stopped:
                self._unhold(jid)
            stopped.clear()

    def snapshot(self, jobs: Mapping[int, Job], nodes: tuple[NodeView, ...], now: float,
                 dependency_states: DependencyStates, depth: int | None = None, strict: bool = False) -> Snapshot:
        """What the scheduler sees; with ``depth``, only that many pending jobs, first in priority
        order. Every running job's views, made again; or, `strict` (for a strict plan), what
        running jobs hold as sums kept between passes."""
        states = _LazyStates(jobs, dependency_states)
        self._unhold_stopped()
        while self._begins and self._begins[0][0] <= now:
            at, jid = heapq.heappop(self._begins)
            if self._begin_at.get(jid) == at:
                del self._begin_at[jid]
                self.touch(jid)  # its begin time came: its view says so from now on
        if self._order is None:
            self._rebuild(jobs, now, states)
        order = self._order
        assert order is not None
        running = () if strict else self._recount(jobs)
        fresh = []
        for jid, (old, kept) in self._touched.items():
            job = jobs.get(jid)
            if job is None or job.state is not State.PENDING:
                continue
            if kept is not None and old is not None and not job.dependency:  # the same place in the order:
                self._views[jid] = old  # its view is made again once a pass takes its entry
                self._reblock[jid] = kept
                continue
            entry, cached = self._entry(job, now, states)
            if not cached:
                self._volatile.add(jid)
            elif old is not None and old[0] == entry[0]:  # where it stands in the order: no insert
                old[1] = entry[1]
                self._views[jid] = old
            else:
                fresh.append(entry)
        self._touched.clear()
        if len(fresh) > MERGE_AT:  # an array held or released: one sort of two sorted runs, not an insert each
            order.extend(fresh)
            order.sort(key=ORDER_KEY)
        else:
            for entry in fresh:
                bisect.insort(order, entry, key=ORDER_KEY)
        taken: list[Entry] = []
        more = False
        views, job_of, pending, reblock = self._views, jobs.get, State.PENDING, self._reblock
        if depth is None:  # every entry: the stale ones (started, ended or changed) gone for good
            for entry in order:
                jid = entry[1].job_id
                if views.get(jid) is not entry:
                    continue
                job = job_of(jid)
                if job is not None and job.state is pending:
                    if reblock and jid in reblock:
                        self._blocked_again(entry, job, now)
                    taken.append(entry)
                else:
                    del views[jid]  # ended while pending
            if len(taken) < len(order):
                self._order = taken[:]
        else:
            walked = 0
            for entry in order:
                jid = entry[1].job_id
                current = views.get(jid) is entry
                if not current or (job := job_of(jid)) is None or job.state is not pending:
                    walked += 1
                    if current:
                        del views[jid]  # ended while pending
                    continue
                if len(taken) == depth:
                    more = True
                    break
                if reblock and jid in reblock:
                    self._blocked_again(entry, job, now)
                taken.append(entry)
                walked += 1
            if walked > 2 * len(taken):  # as many stale entries passed as taken: gone for good
                order[:walked] = taken
        volatile = []
        for jid in list(self._volatile):  # dependencies and begin times change with time: recomputed
            job = jobs.get(jid)
            if job is None or job.state is not State.PENDING:
                self._volatile.discard(jid)
                continue
            entry, cached = self._entry(job, now, states)
            if cached:  # its dependency was removed: ordered from now on
                self._volatile.discard(jid)
                bisect.insort(self._order, entry, key=ORDER_KEY)
            volatile.append(entry)
        if volatile:
            volatile.sort(key=ORDER_KEY)
            taken = list(heapq.merge(taken, volatile, key=ORDER_KEY))
        self.deferred = more or (depth is not None and len(taken) > depth)
        return Snapshot(nodes, tuple(running), tuple(map(VIEW, taken[:depth])), self.limits, self.used, ordered=True,
                        holds=self.holds if strict else None, array_tasks=self.array_tasks)

    def _blocked_again(self, entry: Entry, job: Job, now: float) -> None:
        """A held, released or extended job's view, with what blocks it found again (and its new
        time limit): made when a pass first takes it, not for each of an array's 10,000 tasks at
        once."""
        kept = self._reblock.pop(job.id)
        blocked = self.blocked(job, now, None)
        view = entry[1]
        entry[1] = view.blocked_by(blocked) if kept is Kept.HOLD else replace(view, time_limit=job.time_limit,
                                                                              blocked=blocked)

    def _recount(self, jobs: Mapping[int, Job]) -> list[RunningView]:
        """Every running job's views, each checked against its record: a job that stopped unseen
        is let go (the sums mended), one whose end moved (an extension) gets its views again."""
        running: list[RunningView] = []
        for jid, views in list(self._running.items()):
            job = jobs.get(jid)
            if job is None or job.state is not State.RUNNING:
                self._unhold(jid)
                continue
            if views[0].end != job.deadline:
                views = self._running[jid] = [replace(v, end=job.deadline) for v in views]
            running.extend(views)
        return running

    def _charge(self, job: Job) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
        """The pools a job counts against, and what it counts there (its TRES and one job)."""
        if self.sharing is None:
            return (), ()
        pools = self.sharing.pools(job.user, job.account, job.qos, job.partition)
        if not pools:
            return (), ()
        for pool in pools:
            self.limits[pool.key] = (pool.caps, pool.reasons)
        return tuple(p.key for p in pools), tuple({**tres_of(job), JOBS: 1}.items())

    def _rebuild(self, jobs: Mapping[int, Job], now: float, states: _LazyStates) -> None:
        """Every active job walked: the pending ones in priority order, the running ones."""
        order, volatile, views = [], set(), {}
        self._running, self._held, self.holds, self.array_tasks, self.used = {}, {}, {}, Counter(), {}
        for job in jobs.values():
            if job.state is State.RUNNING:
                self._hold(job)
                continue
            if job.state is not State.PENDING:
                continue
            entry, cached = self._entry(job, now, states)
            if cached:
                order.append(entry)
                views[job.id] = entry
            else:
                volatile.add(job.id)
        order.sort(key=ORDER_KEY)
        self._order, self._volatile, self._views = order, volatile, views
        self._reblock.clear()
        self._touched.clear()

    def _entry(self, job: Job, now: float, states: _LazyStates) -> tuple[Entry, bool]:
        """A pending job's (order key, view), and whether it is cached (nothing in it changes but
        by a touch: no dependency; a begin time ahead touches it when it comes; extensions, holds,
        requeues and starts drop it)."""
        entry = self._views.get(job.id)
        if entry is not None:
            return entry, True
        shape = job.shape
        wide = shape.wide and job.cpus_per_task is not None  # a job kept before shapes: on one node, as it asked
        view = PendingView(
            job.id, job.priority, job.submit_time, job.cpus, job.memory_mib, job.time_limit, job.partition,
            frozenset(job.nodelist), frozenset(job.exclude),
            self.blocked(job, now, states() if job.dependency else None),
            job.array_job_id, job.array_throttle, job.user, job.exclusive, shape if wide else None,
            job.mem_per_cpu or 0 if wide else 0,
            # on one node: all its tasks' resources there; spanning: per node and per task
            parse_list(job.gres) if wide else wanted(job.gres, job.gpus_per_task, shape.ntasks),
            parse_list(job.gpus_per_task) if wide else (), *self._charge(job), job.id in self.preemptors)
        entry = [priority_order(view), view]
        cached = not job.dependency
        if cached:
            self._views[job.id] = entry
            if job.begin_time and job.begin_time > now and self._begin_at.get(job.id) != job.begin_time:
                self._begin_at[job.id] = job.begin_time
                heapq.heappush(self._begins, (job.begin_time, job.id))
        return entry, cached

    def view(self, job: Job, now: float) -> PendingView:
        """A pending job's request as plan() sees it, blocked by nothing and counted in no pool:
        what a what-if plan for it alone (preemption's) needs."""
        entry = self._views.get(job.id) or self._entry(job, now, _LazyStates({}, lambda ids: {}))
        return replace(entry[1], blocked=None, pools=(), tres=(), preemptor=True)

    def blocked(self, job: Job, now: float, states: Mapping[int, str] | None) -> str | None:
        """Reasons outside the scheduler's resource view, in Slurm's order of precedence.
        `states`: the short states of the jobs it depends on (needed only with a dependency)."""
        if job.hold:
            return "JobHeldUser"
        if job.begin_time and job.begin_time > now:
            return "BeginTime"
        if job.dependency:
            status = jobrel.dependency_status(jobrel.parse_dependency(job.dependency), states or {})
            if status != "ready":
                return "Dependency" if status == "wait" else "DependencyNeverSatisfied"
        max_time = self.max_time.get(job.partition, 0)
        if max_time and (job.time_limit == 0 or job.time_limit > max_time):
            return "PartitionTimeLimit"
        return None


class _LazyStates:
    """Short states of every job some pending job depends on, read at most once per snapshot."""

    def __init__(self, jobs: Mapping[int, Job], read: DependencyStates) -> None:
        self._jobs, self._read = jobs, read
        self._states: dict[int, str] | None = None

    def __call__(self) -> dict[int, str]:
        if self._states is None:
            ids: set[int] = set()
            for job in self._jobs.values():
                if job.dependency:
                    ids.update(jobrel.parse_dependency(job.dependency).job_ids)
            self._states = {jid: SHORT[state] for jid, state in self._read(ids).items()} if ids else {}
        return self._states


def running_views(job: Job) -> list[RunningView]:
    """A running job's hold on each of its nodes."""
    if not job.parts:
        return [RunningView(job.id, job.node, job.cpus, job.memory_mib, job.deadline, job.array_job_id,
                            _positions(job.gres_ids))]
    return [RunningView(job.id, p.node, p.cpus, p.memory, job.deadline, job.array_job_id, _positions(p.gres_ids))
            for p in job.placed]


def _positions(text: str | None) -> tuple[int, ...]:
    return tuple(parse_cpuset(text)) if text else ()
