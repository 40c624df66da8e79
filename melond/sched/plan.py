"""Placement decisions: FIFO by priority with conservative backfill that uses time limits.

:func:`plan` is a pure function of a :class:`Snapshot` and ``now``: no I/O, no clock, no
randomness, so the daemon can call it on every event and tests can replay any situation.

Pending jobs are walked in priority order (priority desc, submit time asc, id asc). Each node
keeps an availability profile, a step function of free CPUs and memory over time built from
running jobs' deadlines. A job starts now on the best-fitting node where it fits for its whole
time limit without touching capacity reserved for a job ahead of it. A job that cannot start gets
a reservation at its earliest possible start, so later jobs backfill only around it. Unlimited
jobs never end in the profile. Because every node belongs to one partition, partitions never
interact, and the lead job of each partition is never delayed by the jobs behind it.

Cost control: reservations only matter when a later job could start now, so they are computed
lazily (on the first later job in the same partition that passes a cheap free-now test) and
capped by ``max_reservations``; a job dominated by one that already failed (no smaller in CPUs,
memory and time) fails without a search. A full cluster therefore costs O(1) per pending job.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

from melond.spec.gres import Gres, Key, need, per_task_room, take_counts
from melond.spec.shape import Shape, deal

__all__ = [
    "NodeHold",
    "NodeView",
    "PendingView",
    "Plan",
    "Reason",
    "RunningView",
    "Share",
    "Snapshot",
    "Start",
    "plan",
    "priority_order",
]

INF = math.inf
_MAX_FAILED = 32  # failed requests remembered per placement group for the dominance shortcut
# Start times tried for a job spanning nodes (the earliest times capacity comes free on its nodes):
# one that finds none in them waits without a reservation, as past max_reservations (Slurm's
# backfill bounds its look-ahead the same way, bf_window).
WIDE_TIMES = 256
# Nodes looked at, over one plan, in search of reservations (a request's earliest start costs a
# look at each node it may use, a time tried for a spanning job one at each of its nodes): past
# it, a job waits without one, as past max_reservations. It bounds a plan on many nodes (Slurm
# bounds its backfill pass by time, bf_max_time): on 1,000 nodes, about sixteen searches.
RESERVE_LOOKS = 1 << 14
# Equal requests are one tuple, so that plan() compares them by identity (a tuple of frozensets
# and tuples compares slowly): at most this many are kept, a cache only.
_REQUESTS: dict[tuple, tuple] = {}
_MAX_REQUESTS = 1 << 16
# Partitions (as their nodes are) whose spanning requests' verdicts are kept (_Partition.ever_fits)
_EVER: dict[int, tuple[tuple, dict[tuple, bool]]] = {}
_MAX_PARTITIONS = 64


class Reason(StrEnum):
    """Pending reasons the scheduler itself assigns (others arrive in ``PendingView.blocked``)."""

    RESOURCES = "Resources"
    PRIORITY = "Priority"
    REQ_NODE_NOT_AVAIL = "ReqNodeNotAvail"
    ARRAY_TASK_LIMIT = "JobArrayTaskLimit"


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the scheduler sees it; ``available`` False (down, drained, draining) starts nothing."""

    name: str
    partition: str
    cpus: int  # what its partition's jobs may hold together: at most the partition's MaxCPUsPerNode
    memory: int  # MiB
    available: bool = True
    only_users: frozenset[str] | None = None  # only these users' jobs can run here (reached as their accounts)
    devices: tuple[Key, ...] = ()  # (name, type) of each device or countable resource it hands out, in order


@dataclass(frozen=True, slots=True)
class RunningView:
    """A running job's hold on a node; ``end`` is its deadline, None when unlimited."""

    job_id: int
    node: str
    cpus: int
    memory: int  # MiB, 0 = the whole node
    end: float | None
    array_job_id: int | None = None
    devices: tuple[int, ...] = ()  # the positions in the node's `devices` it holds


@dataclass(slots=True)
class NodeHold:
    """What running jobs hold of one node, summed: kept between passes (melond.sched.order), so
    that an event's pass, which needs only what is free now, walks no running job."""

    cpus: int = 0
    memory: int = 0  # MiB of the jobs that asked for an amount
    whole: int = 0  # jobs holding the whole node's memory (memory 0)
    devices: Counter[int] = field(default_factory=Counter)  # the positions in the node's `devices` held
    # counted(): the devices held counted by kind, and the node's kinds they were counted by
    _counted: tuple[tuple[int, ...], tuple[int, ...]] | None = field(default=None, repr=False, compare=False)

    def add(self, view: RunningView, sign: int = 1) -> None:
        """Count a running job's part here in (sign 1) or out (-1)."""
        self._counted = None
        self.cpus += sign * view.cpus
        if view.memory:
            self.memory += sign * view.memory
        else:
            self.whole += sign
        if view.devices:
            self.devices.update({p: sign for p in view.devices})
            if sign < 0:
                self.devices = +self.devices

    def counted(self, node: _Node) -> tuple[int, ...]:
        """The devices held, counted by the node's kinds (kept until the next change)."""
        if self._counted is None or self._counted[0] is not node.position:
            self._counted = node.position, node.counts(tuple(self.devices.elements()))
        return self._counted[1]


@dataclass(frozen=True, slots=True)
class PendingView:
    """A pending job's request; ``blocked`` is a reason computed elsewhere that keeps it pending."""

    job_id: int
    priority: int
    submit_time: float
    cpus: int
    memory: int  # MiB, 0 = the whole node
    time_limit: int  # seconds, 0 = unlimited
    partition: str
    nodelist: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    blocked: str | None = None
    array_job_id: int | None = None
    array_throttle: int | None = None
    user: str | None = None  # its owner, for nodes that run only one account's jobs
    exclusive: bool = False  # a whole node: every CPU and all memory of an idle one (cpus, memory ignored)
    shape: Shape | None = None  # tasks that may span nodes (Shape.wide); None: `cpus` on one node
    mem_per_cpu: int = 0  # MiB for each CPU a spanning job gets on a node; 0: `memory` on each node
    gres: tuple[Gres, ...] = ()  # generic resources on each node (--gres, --gpus-per-node)
    gres_per_task: tuple[Gres, ...] = ()  # ...and for each task there (--gpus-per-task)
    # The limits' pools it counts against while it runs (Snapshot.limits), and what it counts
    # there: its TRES and 1 job (melond.sched.sharing)
    pools: tuple[str, ...] = ()
    tres: tuple[tuple[str, int], ...] = ()
    preemptor: bool = False  # it has preempted jobs for room: planned first, so the room is its

    # What decides where it can run, and so whether it can (identity and priority aside): within
    # one plan, a request that failed to start fails again for every later job asking the same
    request: tuple = field(init=False, repr=False, compare=False)
    request_hash: int = field(init=False, repr=False, compare=False)  # a tuple's hash is not kept: this is

    def __post_init__(self) -> None:
        request = (self.partition, self.cpus, self.memory, self.time_limit, self.nodelist, self.exclude, self.user,
                   self.exclusive, self.shape, self.mem_per_cpu, self.gres, self.gres_per_task)
        if len(_REQUESTS) >= _MAX_REQUESTS:
            _REQUESTS.clear()
        object.__setattr__(self, "request", _REQUESTS.setdefault(request, request))
        object.__setattr__(self, "request_hash", hash(request))

    def blocked_by(self, blocked: str | None) -> PendingView:
        """The same request, blocked by `blocked` instead (a hold, a release): made without
        dataclasses.replace, which costs three times as much (a 10,000-task hold makes 10,000)."""
        twin = object.__new__(PendingView)
        for name, value in zip(_VIEW_SLOTS, _VIEW_VALUES(self)):
            object.__setattr__(twin, name, value)
        object.__setattr__(twin, "blocked", blocked)
        return twin

    def want(self) -> tuple[Gres, ...]:
        """What a job on one node needs of its resources: per node, and per task times its tasks."""
        return need(self.gres, self.gres_per_task, self.shape.ntasks if self.shape else 1)


_VIEW_SLOTS: tuple[str, ...] = PendingView.__slots__  # type: ignore[attr-defined]
_VIEW_VALUES = attrgetter(*_VIEW_SLOTS)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything plan() may look at."""

    nodes: tuple[NodeView, ...]
    running: tuple[RunningView, ...] = ()
    pending: tuple[PendingView, ...] = ()
    # Each pool's caps by TRES (and "jobs") and the pending reason for each; what running jobs
    # hold in it now. A job that would pass a cap waits with its reason, holding no reservation.
    limits: Mapping[str, tuple[Mapping[str, int], Mapping[str, str]]] = field(default_factory=dict)
    used: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    ordered: bool = False  # `pending` is in priority_order already (melond.sched.order keeps it so)
    # In place of `running`, for a strict plan (which makes no reservation, so needs no end
    # times): what running jobs hold of each node, and how many tasks of each array run
    holds: Mapping[str, NodeHold] | None = None
    array_tasks: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Share:
    """What a job spanning nodes gets on one of them."""

    node: str
    cpus: int
    tasks: int
    memory: int  # MiB
    gres: tuple[int, ...] = field(default=(), compare=False)  # how many of each of the node's kinds it takes


@dataclass(frozen=True, slots=True)
class Start:
    """Start ``job_id`` on ``node`` now (a job spanning nodes: on each of ``shares``, ``node``
    being the first, where its batch script runs)."""

    job_id: int
    node: str
    shares: tuple[Share, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Starts in decision order, the pending reason of every pending job not started, and the
    CPUs still free on available nodes once those starts are counted (none free: a newly
    submitted job cannot start before something ends)."""

    starts: tuple[Start, ...]
    reasons: dict[int, str]
    free_cpus: int = field(default=0, compare=False)
    # When each job holding a reservation is expected to start (epoch seconds): `mqueue --start`.
    expected: dict[int, float] = field(default_factory=dict, compare=False)
    expected_nodes: dict[int, str] = field(default_factory=dict, compare=False)  # the node each is reserved on


class _Profile:
    """Free CPUs and memory of one node as a step function: segment i is [times[i], times[i+1]).
    A node with generic resources also has their free counts (one per kind, `keys`) in `gres`."""

    __slots__ = ("times", "cpus", "mem", "keys", "gres", "rises")

    def __init__(self, now: float, free_c: int, free_m: int, releases: list[tuple[float, int, int, tuple[int, ...]]],
                 keys: tuple[Key, ...] = (), free_g: tuple[int, ...] = ()):
        times, cpus, mem = [now], [free_c], [free_m]
        gres: list[tuple[int, ...]] | None = [free_g] if keys else None
        for t, c, m, g in sorted(releases):
            if t == times[-1]:
                cpus[-1] += c
                mem[-1] += m
                if gres is not None and g:
                    gres[-1] = _plus(gres[-1], g)
            else:
                times.append(t)
                cpus.append(cpus[-1] + c)
                mem.append(mem[-1] + m)
                if gres is not None:
                    gres.append(_plus(gres[-1], g) if g else gres[-1])
        self.times, self.cpus, self.mem, self.keys, self.gres = times, cpus, mem, keys, gres
        self.rises: list[float] | None = None  # releases(), kept until the next change

    def copy(self) -> _Profile:
        twin = _Profile.__new__(_Profile)
        twin.times, twin.cpus, twin.mem, twin.keys = self.times[:], self.cpus[:], self.mem[:], self.keys
        twin.gres = self.gres[:] if self.gres is not None else None
        twin.rises = None
        return twin

    def _has(self, i: int, want: tuple[Gres, ...]) -> bool:
        return not want or (self.gres is not None and take_counts(self.keys, self.gres[i], want) is not None)

    def fits(self, t0: float, t1: float, c: int, m: int, want: tuple[Gres, ...] = ()) -> bool:
        """Whether c CPUs, m MiB (and `want`) are free throughout [t0, t1)."""
        times, cpus, mem = self.times, self.cpus, self.mem
        i = bisect_right(times, t0) - 1
        n = len(times)
        while i < n and times[i] < t1:
            if cpus[i] < c or mem[i] < m or (want and not self._has(i, want)):
                return False
            i += 1
        return True

    def releases(self) -> list[float]:
        """The times CPUs, memory or resources come free (the start of the profile too): only
        those can be a request's earliest start."""
        if self.rises is None:
            times, cpus, mem, gres = self.times, self.cpus, self.mem, self.gres
            self.rises = [times[0], *(times[i] for i in range(1, len(times))
                                      if cpus[i] > cpus[i - 1] or mem[i] > mem[i - 1]
                                      or (gres is not None and any(a > b for a, b in zip(gres[i], gres[i - 1]))))]
        return self.rises

    def least(self, t0: float, t1: float) -> tuple[int, int, tuple[int, ...]]:
        """The fewest CPUs, MiB (and of each resource) free at any time in [t0, t1)."""
        times, cpus, mem, gres = self.times, self.cpus, self.mem, self.gres
        i = bisect_right(times, t0) - 1
        c, m = cpus[i], mem[i]
        g = gres[i] if gres is not None else ()
        i += 1
        while i < len(times) and times[i] < t1:
            c, m = min(c, cpus[i]), min(m, mem[i])
            if gres is not None:
                g = tuple(map(min, g, gres[i]))
            i += 1
        return c, m, g

    def earliest(self, d: float, c: int, m: int, bound: float, want: tuple[Gres, ...] = ()) -> float | None:
        """The earliest t < bound with c CPUs and m MiB (and `want`) free throughout [t, t + d), else None."""
        times, cpus, mem = self.times, self.cpus, self.mem
        n = len(times)
        start = None
        for i in range(n):
            if cpus[i] >= c and mem[i] >= m and (not want or self._has(i, want)):
                if start is None:
                    if times[i] >= bound:
                        return None
                    start = times[i]
                if start + d <= (times[i + 1] if i + 1 < n else INF):
                    return start
            else:
                start = None
        return None

    def first(self, c: int, m: int, want: tuple[Gres, ...] = ()) -> float | None:
        """earliest() for a profile that only rises (a node holding no reservation: what it holds
        only ends): the first time c CPUs and m MiB (and `want`) are free, which they stay."""
        cpus, n = self.cpus, len(self.times)
        i = max(bisect_left(cpus, c), bisect_left(self.mem, m))
        if want:
            while i < n and not self._has(i, want):
                i += 1
        return self.times[i] if i < n else None

    def _split(self, t: float) -> int:
        """Index of a breakpoint at t (t >= times[0]), inserting one if needed."""
        times = self.times
        i = bisect_left(times, t)
        if i == len(times) or times[i] != t:
            times.insert(i, t)
            self.cpus.insert(i, self.cpus[i - 1])
            self.mem.insert(i, self.mem[i - 1])
            if self.gres is not None:
                self.gres.insert(i, self.gres[i - 1])
        return i

    def take(self, t0: float, t1: float, c: int, m: int, g: tuple[int, ...] = ()) -> None:
        """Hold c CPUs, m MiB (and g of each resource) over [t0, t1)."""
        self.rises = None
        i = self._split(t0)
        j = self._split(t1) if t1 < INF else len(self.times)
        cpus, mem, gres = self.cpus, self.mem, self.gres
        for k in range(i, j):
            cpus[k] -= c
            mem[k] -= m
            if g and gres is not None:
                gres[k] = _minus(gres[k], g)


def _plus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b))


def _minus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x - y for x, y in zip(a, b))


class _Node:
    """Mutable per-plan state of an available node; the profile is built on first need."""

    __slots__ = ("name", "cpus", "memory", "free_c", "free_m", "releases", "profile", "reserved", "only_users",
                 "keys", "position", "total_g", "free_g", "version", "base")

    def __init__(self, view: NodeView):
        self.name, self.cpus, self.memory, self.only_users = view.name, view.cpus, view.memory, view.only_users
        self.free_c, self.free_m = view.cpus, view.memory
        self.releases: list[tuple[float, int, int, tuple[int, ...]]] = []
        self.profile: _Profile | None = None
        # Without a reservation, free capacity never shrinks over time, so free-now decides.
        self.reserved = False
        # Generic resources, counted by kind (name, type): `position` maps a device to its kind.
        self.keys, self.position, self.total_g = _kinds(view.devices)
        self.free_g = self.total_g
        self.version = 0  # one more at every change of what it holds from now on: a kept search is stale
        # Once it holds a reservation: its profile without any, which only rises over time (what
        # it holds only ends), a bound on its room at any time for a spanning job's search
        self.base: _Profile | None = None

    def timeline(self, now: float) -> _Profile:
        if self.profile is None:
            self.profile = _Profile(now, self.free_c, self.free_m, self.releases, self.keys, self.free_g)
            self.releases = []
        return self.profile

    def reserve(self, now: float, t: float, end: float, c: int, m: int, g: tuple[int, ...] = ()) -> None:
        """Hold c CPUs, m MiB (and g) over [t, end) for a job that starts then."""
        profile = self.timeline(now)
        if self.base is None:
            self.base = profile.copy()
        profile.take(t, end, c, m, g)
        self.reserved = True
        self.version += 1

    def counts(self, positions: tuple[int, ...]) -> tuple[int, ...]:
        """Devices (positions in the node's list) counted by kind."""
        out = [0] * len(self.keys)
        for p in positions:
            if p < len(self.position):
                out[self.position[p]] += 1
        return tuple(out)

    def has(self, want: tuple[Gres, ...], free: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        """What `want` takes of the node's free resources now (or of `free`), None if it does not fit."""
        return take_counts(self.keys, self.free_g if free is None else free, want)


_KINDS: dict[tuple[Key, ...], tuple[tuple[Key, ...], tuple[int, ...], tuple[int, ...]]] = {}


def _kinds(devices: tuple[Key, ...]) -> tuple[tuple[Key, ...], tuple[int, ...], tuple[int, ...]]:
    """A node's kinds of resource, each device's kind, and how many of each: nodes alike share one
    answer (a cache: a thousand nodes' are not worked out again at every pass)."""
    kinds = _KINDS.get(devices)
    if kinds is None:
        keys = tuple(dict.fromkeys(devices))
        kinds = keys, tuple(keys.index(k) for k in devices), tuple(devices.count(k) for k in keys)
        if len(_KINDS) < _MAX_REQUESTS:
            _KINDS[devices] = kinds
    return kinds


class _Group:
    """Jobs of one partition that share a placement request: same nodelist, exclude, whole-memory.

    They share the eligible nodes, the size verdicts and the dominance shortcut: a request that
    failed to start now makes every request no smaller in CPUs, memory and time fail too.
    """

    __slots__ = ("key", "nodes", "want", "sizes", "failed", "wide_failed")

    def __init__(self, key: tuple, nodes: list[_Node], want: tuple[Gres, ...] = ()):
        self.key = key  # what its jobs share (_Partition.group)
        self.nodes = nodes  # available, allowed nodes, by name
        self.want = want  # the generic resources each of its requests needs on one node
        self.sizes: dict[tuple[int, int], bool] = {}
        self.failed: list[tuple[int, int, float]] = []  # minimal (cpus, memory, duration) that failed
        # spanning requests that failed to start now, minimal, by what must match to compare them
        self.wide_failed: dict[tuple, list[tuple[int, int, float, int, float]]] = {}

    def wide_dominated(self, job: PendingView, d: float) -> bool:
        """A spanning request no smaller than one that failed now (more tasks, at least as many
        nodes, no more allowed, as much memory, as long) fails too: capacity only shrinks."""
        key, size = _wide_key(job, d)
        return any(all(f <= s for f, s in zip(failed, size)) for failed in self.wide_failed.get(key, ()))

    def wide_fail(self, job: PendingView, d: float) -> None:
        key, size = _wide_key(job, d)
        kept = [f for f in self.wide_failed.get(key, []) if not all(s <= x for s, x in zip(size, f))]
        if len(kept) < _MAX_FAILED:
            kept.append(size)
        self.wide_failed[key] = kept

    def fits_some_node(self, c: int, m: int) -> bool:
        ok = self.sizes.get((c, m))
        if ok is None:
            want = self.want
            ok = self.sizes[(c, m)] = any(n.cpus >= c and n.memory >= m
                                          and (not want or take_counts(n.keys, n.total_g, want) is not None)
                                          for n in self.nodes)
        return ok

    def dominated(self, c: int, m: int, d: float) -> bool:
        return any(fc <= c and fm <= m and fd <= d for fc, fm, fd in self.failed)

    def fail(self, c: int, m: int, d: float) -> None:
        """Remember a failed request, keeping only the minimal ones so the check stays short."""
        kept = [f for f in self.failed if not (c <= f[0] and m <= f[1] and d <= f[2])]
        if len(kept) < _MAX_FAILED:
            kept.append((c, m, d))
        self.failed = kept


class _Partition:
    """The available nodes of one partition, indexed for the free-now test and best fit."""

    __slots__ = ("nodes", "by_name", "by_free", "max_mem", "at_max", "idle_mem", "lead", "queue", "groups",
                 "restricted", "_ever")

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.by_name: list[_Node] = []
        self.by_free: list[tuple[int, str]] = []  # (free CPUs now, name): best fit is a bisect away
        self.max_mem = 0  # the largest free memory now, and how many nodes have it
        self.at_max = 0
        self.idle_mem = 0  # nodes with all their memory free now: only those can take memory 0
        self.lead = False  # a job here already waits for resources: those behind wait on Priority
        # reservations not yet made: (job, eligible nodes, cpus, MiB, duration, a spanning job's view, resources)
        self.queue: list[tuple[int, list[_Node], int, int, float, PendingView | None, tuple[Gres, ...]]] = []
        self.groups: dict[tuple, _Group] = {}
        self.restricted = False  # some node runs one account's jobs only: placement depends on the owner
        self._ever: dict[tuple, bool] | None = None  # ever_fits()' verdicts, kept from plan to plan

    def seal(self) -> None:
        self.by_name = sorted(self.nodes.values(), key=lambda n: n.name)
        self.restricted = any(n.only_users is not None for n in self.by_name)
        self.by_free = sorted((n.free_c, n.name) for n in self.by_name)
        self.idle_mem = sum(n.free_m == n.memory for n in self.by_name)
        self.recount_mem()

    def recount_mem(self) -> None:
        frees = [n.free_m for n in self.by_name]
        self.max_mem = max(frees, default=0)
        self.at_max = frees.count(self.max_mem)

    def group(self, job: PendingView) -> _Group:
        resources = _resources(job) if job.gres or job.gres_per_task else _NO_RESOURCES
        key = (job.nodelist, job.exclude, not job.memory, job.user if self.restricted else None, job.exclusive,
               resources)
        grp = self.groups.get(key)
        if grp is None:
            filtered = key[0] or key[1] or key[3] is not None
            nodes = [n for n in self.by_name if _allowed(n, job)] if filtered else self.by_name
            if resources is not _NO_RESOURCES:
                nodes = [n for n in nodes if n.keys]  # only a node with such resources can ever hold it
            grp = self.groups[key] = _Group(key, nodes, resources[0])
        return grp

    def ever_fits(self) -> dict[tuple, bool]:
        """Whether the nodes, empty, could hold a spanning request (by its group and size): kept
        across plans while the partition's nodes are the same, as a thousand nodes' answer costs
        a sort of them all."""
        if self._ever is None:
            nodes = tuple((n.name, n.cpus, n.memory, n.total_g, n.keys, n.only_users) for n in self.by_name)
            key = hash(nodes)
            kept = _EVER.get(key)
            if kept is None or kept[0] != nodes or len(kept[1]) > _MAX_REQUESTS:
                if len(_EVER) >= _MAX_PARTITIONS:
                    _EVER.clear()
                kept = _EVER[key] = (nodes, {})
            self._ever = kept[1]
        return self._ever

    def hopeless(self, c: int, m: int) -> bool:
        """Cheap upper bound: no node has that much free now (reservations never start now)."""
        if self.by_free[-1][0] < c:
            return True
        return self.max_mem < m if m else self.idle_mem == 0


# The scheduler's own reasons as plain strs: what the caller stores and prints
_RESOURCES, _PRIORITY = str(Reason.RESOURCES), str(Reason.PRIORITY)
_REQ_NODE_NOT_AVAIL, _ARRAY_TASK_LIMIT = str(Reason.REQ_NODE_NOT_AVAIL), str(Reason.ARRAY_TASK_LIMIT)
# A request's earliest start on a node: (start, node name, the node's version then, node, MiB, resources)
_Soonest = tuple[float, str, int, "_Node", int, tuple[Gres, ...]]
_NO_RESOURCES: tuple[tuple[Gres, ...], tuple[Gres, ...]] = ((), ())


def _resources(job: PendingView) -> tuple[tuple[Gres, ...], tuple[Gres, ...]]:
    """What a job asks of a node's generic resources, as its group knows it: on one node all of
    them; spanning nodes, per node and per task."""
    if job.shape is not None and job.shape.wide:
        return job.gres, job.gres_per_task
    return job.want(), ()


def priority_order(job: PendingView) -> tuple[bool, int, float, int]:
    """The order pending jobs are planned in: preemptors first (as Slurm's), then priority, then
    submit time, then id."""
    return (not job.preemptor, -job.priority, job.submit_time, job.job_id)


class _Planner:
    """One plan() call's working state."""

    def __init__(self, snapshot: Snapshot, now: float, max_reservations: int, strict: bool = False):
        self.now = now
        self.strict = strict  # nothing starts in a partition behind a job that waits for resources
        self.budget = 0 if strict else max_reservations
        self.parts: dict[str, _Partition] = {}
        self.tasks: Counter[int] = Counter()  # running + started tasks per array
        self.starts: list[Start] = []
        self.reasons: dict[int, str] = {}
        self.limits = snapshot.limits
        self.used: dict[str, Counter[str]] = {key: Counter(use) for key, use in snapshot.used.items()}
        self.expected: dict[int, float] = {}
        self.expected_nodes: dict[int, str] = {}
        # Requests whose outcome no later job asking the same can change (capacity, pools and
        # reservations only shrink within a plan): never fits, or failed once no reservation is
        # left to give. A deep queue of few distinct requests costs a lookup per job past them.
        self.settled: dict[int, tuple[tuple, str]] = {}  # by the request's hash: (request, reason)
        self.soonest: dict[tuple, list[_Soonest]] = {}  # reserve()'s searches, by request
        self.looks = RESERVE_LOOKS  # left to reservations' searches
        nodes: dict[str, _Node] = {}
        parts = self.parts
        for view in snapshot.nodes:
            if view.available:
                nodes[view.name] = node = _Node(view)
                part = parts.get(view.partition)
                if part is None:
                    part = parts[view.partition] = _Partition()
                part.nodes[view.name] = node
        if snapshot.holds is not None:
            self.held(nodes, snapshot.holds, snapshot.array_tasks)
        else:
            self.running(nodes, snapshot.running)
        for part in self.parts.values():
            part.seal()

    def held(self, nodes: dict[str, _Node], holds: Mapping[str, NodeHold], array_tasks: Mapping[int, int]) -> None:
        """Each node's free room now from what its running jobs hold, summed (no end times: no
        profile can be built, so the plan must make no reservation)."""
        assert self.budget == 0, "a plan from holds makes no reservation"
        self.tasks.update(array_tasks)
        for name, node in nodes.items():
            hold = holds.get(name)
            if hold is not None:
                node.free_c -= hold.cpus
                node.free_m -= hold.memory + hold.whole * node.memory
                if hold.devices and node.keys:
                    node.free_g = _minus(node.free_g, hold.counted(node))

    def running(self, nodes: dict[str, _Node], running: tuple[RunningView, ...]) -> None:
        """Each node's free room now, and when running jobs' ends free more."""
        now = self.now
        # A job past its deadline still holds its node until killed: free it just after now.
        soon = math.nextafter(now, INF)
        counted: set[int] = set()  # a job spanning nodes is one view per node, and one array task
        for run in running:
            if run.array_job_id is not None and run.job_id not in counted:
                counted.add(run.job_id)
                self.tasks[run.array_job_id] += 1
            node = nodes.get(run.node)
            if node is None:
                continue
            mem = run.memory or node.memory
            node.free_c -= run.cpus
            node.free_m -= mem
            g = node.counts(run.devices) if run.devices and node.keys else ()
            if g:
                node.free_g = _minus(node.free_g, g)
            if run.end is not None:
                node.releases.append((max(run.end, soon), run.cpus, mem, g))

    def run(self, pending: tuple[PendingView, ...], ordered: bool = False) -> Plan:
        reasons, place, settled = self.reasons, self.place, self.settled
        for job in pending if ordered else sorted(pending, key=priority_order):
            if job.blocked:
                reasons[job.job_id] = job.blocked
                continue
            if not (job.pools or job.array_throttle or job.preemptor):  # place()'s first look, inline
                hit = settled.get(job.request_hash)
                if hit is not None and (hit[0] is job.request or hit[0] == job.request):
                    reasons[job.job_id] = hit[1]
                    continue
            reason = place(job)
            if reason is not None:
                reasons[job.job_id] = reason
        free = sum(max(0, n.free_c) for part in self.parts.values() for n in part.by_name)
        for part in self.parts.values():  # the rest of the reservations, for their expected starts only
            if part.queue:
                self.reserve(part)
        return Plan(tuple(self.starts), self.reasons, free, self.expected, self.expected_nodes)

    def place(self, job: PendingView) -> str | None:
        """Start ``job`` or return why it waits (a plain str: the caller stores and prints it)."""
        if job.blocked:
            return job.blocked
        arr = job.array_job_id
        if arr is not None and job.array_throttle and self.tasks[arr] >= job.array_throttle:
            return _ARRAY_TASK_LIMIT
        for key in job.pools:
            caps, reasons = self.limits[key]
            use = self.used.get(key)
            for name, amount in job.tres:
                cap = caps.get(name)
                if cap is not None and (use[name] if use else 0) + amount > cap:
                    return reasons[name]
        hit = self.settled.get(job.request_hash) if not job.preemptor else None
        return hit[1] if hit is not None and (hit[0] is job.request or hit[0] == job.request) \
            else self.place_request(job)

    def place_request(self, job: PendingView) -> str | None:
        """Start ``job`` or return why its request waits (neither held nor past a limit)."""
        part = self.parts.get(job.partition)
        grp = part.group(job) if part is not None else None
        if grp is None or not grp.nodes:
            return self.settle(job, _REQ_NODE_NOT_AVAIL)
        if job.shape is not None and job.shape.wide:
            return self.place_wide(part, job, grp)
        c, m = (0, 0) if job.exclusive else (job.cpus, job.memory)  # a whole node: sized by the node it gets
        if not grp.fits_some_node(c, m):
            return self.settle(job, _RESOURCES)
        if self.strict and part.lead:  # a job ahead waits for resources: none behind it may start
            return _PRIORITY
        d = float(job.time_limit) if job.time_limit > 0 else INF
        want = grp.want
        # Failing is monotone within a plan (capacity only shrinks), hence the cheap refusals.
        if not part.hopeless(c, m) and not grp.dominated(c, m, d):
            if part.queue:
                self.reserve(part)
            node = self.best_fit(part, job, grp.nodes, c, m, d, want)
            if node is not None:
                self.start(part, job, node, c, m, d, want)
                return None
            grp.fail(c, m, d)
        if self.budget > 0:
            self.budget -= 1
            part.queue.append((job.job_id, grp.nodes, c, m, d, None, want))
            return self.wait(part)
        return self.wait(part, job)

    def wait(self, part: _Partition, settled: PendingView | None = None) -> str:
        """Why a job that cannot start now waits: the first in its partition for Resources, the
        others behind it. `settled`: it holds no reservation, and so will every later job asking
        the same (none is left to give), which waits behind it for Priority without a search."""
        if settled is not None:
            self.settle(settled, _PRIORITY)
        if part.lead:
            return _PRIORITY
        part.lead = True
        return _RESOURCES

    def settle(self, job: PendingView, reason: str) -> str:
        """`reason` is the answer for every later job asking what `job` asks in this plan."""
        if not job.preemptor:
            self.settled[job.request_hash] = (job.request, reason)
        return reason

    def best_fit(
        self, part: _Partition, job: PendingView, eligible: list[_Node], c: int, m: int, d: float,
        want: tuple[Gres, ...] = (),
    ) -> _Node | None:
        """The node left with the fewest free CPUs (then name) where the job fits from now on."""
        now, end = self.now, self.now + d
        if job.exclusive:  # an idle node that stays free for the job's time: the smallest, then by name
            idle = [n for n in eligible if n.free_c == n.cpus and n.free_m == n.memory and n.free_g == n.total_g
                    and n.name not in job.exclude and (not want or n.has(want) is not None)
                    and (not n.reserved or n.timeline(now).fits(now, end, n.cpus, n.memory, _whole(n)))]
            return min(idle, key=lambda n: (n.cpus, n.name), default=None)
        if want:  # nodes with such resources only
            names = sorted((n.free_c, n.name) for n in eligible if n.free_c >= c and n.has(want) is not None)
        elif job.nodelist or part.restricted:  # the group's own nodes: a nodelist, or nodes only for some accounts
            names = sorted((n.free_c, n.name) for n in eligible if n.free_c >= c)
        else:
            names = part.by_free[bisect_left(part.by_free, (c, "")) :]
        exclude = job.exclude
        for _, name in names:
            if name in exclude:
                continue
            node = part.nodes[name]
            need = m or node.memory
            if node.free_m < need:
                continue
            if node.reserved and not node.timeline(now).fits(now, end, c, need, want):
                continue
            return node
        return None

    def start(self, part: _Partition, job: PendingView, node: _Node, c: int, m: int, d: float,
              want: tuple[Gres, ...] = ()) -> None:
        g = node.has(want) if want else ()
        if job.exclusive:
            c, g = node.cpus, node.total_g
        self.hold(part, node, c, m or node.memory, self.now + d, g or ())
        self.count(job)
        self.starts.append(Start(job.job_id, node.name))

    def count(self, job: PendingView) -> None:
        """A start's share of its array's running tasks and of its limits' pools."""
        if job.array_job_id is not None:
            self.tasks[job.array_job_id] += 1
        for key in job.pools:
            self.used.setdefault(key, Counter()).update(dict(job.tres))

    def hold(self, part: _Partition, node: _Node, c: int, need: int, end: float, g: tuple[int, ...] = ()) -> None:
        """Take c CPUs, `need` MiB (and g of each resource) of `node` from now until `end`."""
        by_free = part.by_free
        del by_free[bisect_left(by_free, (node.free_c, node.name))]
        old_m = node.free_m
        node.free_c -= c
        node.free_m -= need
        insort(by_free, (node.free_c, node.name))
        if old_m == node.memory:
            part.idle_mem -= 1
        if old_m == part.max_mem:
            part.at_max -= 1
            if part.at_max == 0:
                part.recount_mem()
        if g:
            node.free_g = _minus(node.free_g, g)
        node.version += 1
        if node.profile is not None:
            node.profile.take(self.now, end, c, need, g)
            if node.base is not None:
                node.base.take(self.now, end, c, need, g)
        elif end < INF:
            node.releases.append((end, c, need, g))

    # ---------------------------------------------------------------- jobs that span nodes

    def place_wide(self, part: _Partition, job: PendingView, grp: _Group) -> str | None:
        """All of a spanning job's nodes at once, now, or a reservation across them."""
        eligible = grp.nodes
        d = float(job.time_limit) if job.time_limit > 0 else INF
        size_key = (grp.key, job.shape, job.memory, job.mem_per_cpu)
        verdicts = part.ever_fits()
        ever = verdicts.get(size_key)
        if ever is None:
            ever = verdicts[size_key] = self.choose(job, [(_room(job, n, n.cpus, n.memory, n.total_g), n)
                                                               for n in eligible]) is not None
        if not ever:
            return self.settle(job, _RESOURCES)  # no amount of waiting makes room for it
        if self.strict and part.lead:
            return _PRIORITY
        shares = None
        if not grp.wide_dominated(job, d):
            if part.queue:
                self.reserve(part)
            now, end = self.now, self.now + d
            c = job.shape.cpus_per_task if job.shape else 1
            if job.gres or job.gres_per_task:  # the shares take their resources from what is free
                free = {n.name: n.timeline(now).least(now, end) if n.reserved else (n.free_c, n.free_m, n.free_g)
                        for n in eligible if n.free_c >= c}
                shares = self.choose(job, [(_room(job, n, *free[n.name]), n) for n in eligible if n.name in free],
                                     {name: f[2] for name, f in free.items()})
            else:
                shares = self.choose(job, [(_room(job, n, *(n.timeline(now).least(now, end) if n.reserved
                                                             else (n.free_c, n.free_m, n.free_g))), n)
                                           for n in eligible if n.free_c >= c])
            if shares is None:
                grp.wide_fail(job, d)
        if shares is not None:
            for node, share in shares:
                self.hold(part, node, share.cpus, share.memory, end, share.gres)
            self.count(job)
            self.starts.append(Start(job.job_id, shares[0][1].node, tuple(share for _, share in shares)))
            return None
        if self.budget > 0:
            self.budget -= 1
            part.queue.append((job.job_id, eligible, 0, 0, d, job, ()))
            return self.wait(part)
        return self.wait(part, job)

    def choose(self, job: PendingView, rooms: list[tuple[int, _Node]],
               free_g: dict[str, tuple[int, ...]] | None = None) -> list[tuple[_Node, Share]] | None:
        """The nodes a spanning job gets, given how many of its tasks each can hold: the fewest
        that hold them (the roomiest first, then by name; at least -N's least), or, for a range
        of node counts (`-N 2-4`) or `--spread-job`, as many as are free now up to the most (and
        no more than the tasks), as Slurm's -N "as many nodes as possible within the range";
        `--use-min-nodes` keeps a range to the fewest. In name order, with the tasks dealt over
        them as Slurm's block layout counts them. `free_g`: each node's free resources, which
        the shares' resources are taken from."""
        shape = job.shape
        assert shape is not None
        if shape.exact:  # --ntasks-per-node without -n: that many on each node
            rooms = [(r, n) for r, n in rooms if r == shape.ntasks_per_node]
        rooms = sorted(((r, n) for r, n in rooms if r > 0), key=lambda rn: (-rn[0], rn[1].name))
        spread = shape.spread_job or (not shape.use_min_nodes and shape.nodes_max is not None
                                      and shape.nodes_max > shape.nodes_min)
        most = min(shape.nodes_max if shape.nodes_max is not None else shape.ntasks, shape.ntasks)
        chosen: list[tuple[int, _Node]] = []
        total = 0
        for r, n in rooms:
            if total >= shape.ntasks and len(chosen) >= shape.nodes_min and (not spread or len(chosen) >= most):
                break
            chosen.append((r, n))
            total += r
        if shape.nodes_max is not None and len(chosen) > shape.nodes_max:
            return None
        chosen.sort(key=lambda rn: rn[1].name)
        tasks = deal(shape.ntasks, [r for r, _ in chosen]) if len(chosen) >= shape.nodes_min else None
        if tasks is None:
            return None
        shares = []
        for (_, node), t in zip(chosen, tasks):
            cpus = node.cpus if shape.exclusive else t * shape.cpus_per_task
            memory = node.memory if shape.exclusive else job.mem_per_cpu * cpus if job.mem_per_cpu else \
                (job.memory or node.memory)  # a whole node's memory is the job's too
            g: tuple[int, ...] = ()
            if shape.exclusive:
                g = node.total_g
            elif (job.gres or job.gres_per_task) and free_g is not None:
                g = take_counts(node.keys, free_g[node.name], need(job.gres, job.gres_per_task, t)) or ()
            shares.append((node, Share(node.name, cpus, t, memory, g)))
        return shares

    def reserve_wide(self, job: PendingView, eligible: list[_Node], d: float) -> None:
        """The earliest time all of a spanning job's nodes are free for its whole time, held on each.
        Only a release can make room, so the times worth trying are now and each node's changes.

        Trying each time costs a look at every node; the first worth trying is found by halving
        instead. Left without its reservations, a node only gains room over time (what it holds
        only ends): with those rooms, which only grow and are never less than the real ones,
        whether the job fits goes from no to yes once, and before that it cannot fit for real."""
        now = self.now
        if self.looks < len(eligible):  # not even one time could be tried
            return
        times = sorted({t for n in eligible for t in n.timeline(now).releases()})[:WIDE_TIMES]
        lo, hi = 0, len(times)
        while lo < hi:
            if not self.look(eligible):
                return
            mid = (lo + hi) // 2
            if self._fits_wide_by(job, eligible, times[mid]):
                hi = mid
            else:
                lo = mid + 1
        if lo == len(times):
            return
        # From there on, each time: a node without reservations has what it has free then (it
        # changes only at its own releases); one with them, the least it has over the job's time.
        moving = [n for n in eligible if n.reserved]
        grows: dict[float, list[_Node]] = {}
        free: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        room: dict[str, int] = {}
        for n in eligible:
            if not n.reserved:
                profile = n.timeline(now)
                for r in profile.releases():
                    if r > times[lo]:
                        grows.setdefault(r, []).append(n)
                free[n.name] = f = profile.least(times[lo], math.nextafter(times[lo], INF))
                room[n.name] = _room(job, n, *f)
        with_gres = bool(job.gres or job.gres_per_task)
        for t in times[lo:]:
            if not self.look(eligible):
                return
            end = t + d
            for n in grows.get(t, ()):
                free[n.name] = f = n.timeline(now).least(t, math.nextafter(t, INF))
                room[n.name] = _room(job, n, *f)
            for n in moving:
                free[n.name] = f = n.timeline(now).least(t, end)
                room[n.name] = _room(job, n, *f)
            shares = self.choose(job, [(room[n.name], n) for n in eligible],
                                 {name: f[2] for name, f in free.items()} if with_gres else None)
            if shares is None:
                continue
            for node, share in shares:
                node.reserve(now, t, end, share.cpus, share.memory, share.gres)
            self.expected[job.job_id] = t
            self.expected_nodes[job.job_id] = shares[0][0].name
            return

    def look(self, eligible: list[_Node]) -> bool:
        """Spend a look at each of these nodes from what is left to reservations' searches."""
        if self.looks < len(eligible):
            self.looks = 0
            return False
        self.looks -= len(eligible)
        return True

    def _fits_wide_by(self, job: PendingView, eligible: list[_Node], t: float) -> bool:
        """Whether a spanning job could fit at `t` with each node's room at most what it can be
        then: what it has free at `t`, reservations left out."""
        now = self.now
        bound: list[tuple[int, _Node]] = []
        free_g: dict[str, tuple[int, ...]] = {}
        after = math.nextafter(t, INF)
        for n in eligible:
            c, m, g = (n.base or n.timeline(now)).least(t, after)
            free_g[n.name] = g
            bound.append((_room(job, n, c, m, g), n))
        return self.choose(job, bound, free_g if job.gres or job.gres_per_task else None) is not None

    def reserve(self, part: _Partition) -> None:
        """Make the queued reservations, in priority order, each at its earliest start (then name).

        Each request's earliest start on every node it may use is kept for the plan, in a heap by
        (start, name): a later request asking the same searches again only the nodes changed since
        (by a start or a reservation), not all of them."""
        for job_id, eligible, c, m, d, wide, want in part.queue:
            if wide is not None:
                self.reserve_wide(wide, eligible, d)
                continue
            key = (id(eligible), c, m, d, want)
            heap = self.soonest.get(key)
            if heap is None:
                if not self.look(eligible):
                    continue
                heap = [s for s in (self._soonest(node, c, m, d, want) for node in eligible) if s is not None]
                heapq.heapify(heap)
                self.soonest[key] = heap
            while heap and heap[0][2] != heap[0][3].version:  # stale: that node changed since
                fresh = self._soonest(heap[0][3], c, m, d, want)
                if fresh is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, fresh)
            if heap:
                t, _, _, node, need, wants = heap[0]
                profile = node.timeline(self.now)
                i = bisect_right(profile.times, t) - 1
                g = take_counts(node.keys, profile.gres[i], wants) if wants and profile.gres is not None else None
                node.reserve(self.now, t, t + d, c or node.cpus, need, g or ())
                self.expected[job_id] = t
                self.expected_nodes[job_id] = node.name
        part.queue.clear()

    def _soonest(self, node: _Node, c: int, m: int, d: float, want: tuple[Gres, ...]) -> _Soonest | None:
        """The earliest start of a request on `node` as it is now (c 0: the whole node), or None."""
        need = m or node.memory
        if node.cpus < c or node.memory < need:
            return None
        if want and take_counts(node.keys, node.total_g, want) is None:
            return None
        wants = want if c else _whole(node)
        profile = node.timeline(self.now)
        t = profile.earliest(d, c or node.cpus, need, INF, wants) if node.reserved else \
            profile.first(c or node.cpus, need, wants)
        return None if t is None else (t, node.name, node.version, node, need, wants)


def _wide_key(job: PendingView, d: float) -> tuple[tuple, tuple[int, int, float, int, float]]:
    """What two spanning requests must share to be compared, and the request's size in the order
    larger = harder: tasks, least nodes, minus the most nodes, memory, duration."""
    shape = job.shape
    assert shape is not None
    key = (shape.cpus_per_task, shape.ntasks_per_node, shape.exact, shape.exclusive, job.mem_per_cpu)
    most = shape.nodes_max if shape.nodes_max is not None else INF
    return key, (shape.ntasks, shape.nodes_min, -most, job.memory, d)


def _room(job: PendingView, node: _Node, free_c: int, free_m: int, free_g: tuple[int, ...] = ()) -> int:
    """How many of a spanning job's tasks `node` holds with that much free."""
    shape = job.shape
    assert shape is not None
    c = shape.cpus_per_task
    if shape.exclusive:
        room = node.cpus // c if free_c == node.cpus and free_m == node.memory and free_g == node.total_g else 0
    elif job.mem_per_cpu:
        room = min(free_c // c, free_m // (job.mem_per_cpu * c))
    else:
        room = free_c // c if free_m >= (job.memory or node.memory) else 0
    if room and (job.gres or job.gres_per_task):
        if take_counts(node.keys, free_g, job.gres) is None:
            return 0
        if job.gres_per_task:  # a kind asked for both ways needs the larger count (gres.need)
            room = min(room, per_task_room(node.keys, free_g, job.gres_per_task))
    return min(room, shape.ntasks_per_node) if shape.ntasks_per_node else room


def _whole(node: _Node) -> tuple[Gres, ...]:
    """Every resource of a node, as a request: what a whole-node job takes."""
    return tuple(Gres(name, kind, n) for (name, kind), n in zip(node.keys, node.total_g))


def _allowed(node: _Node, job: PendingView) -> bool:
    return ((not job.nodelist or node.name in job.nodelist) and node.name not in job.exclude
            and (node.only_users is None or job.user in node.only_users))


def plan(snapshot: Snapshot, now: float, *, max_reservations: int = 100, strict: bool = False) -> Plan:
    """Decide which pending jobs start now and where, and why the others wait.

    At most ``max_reservations`` waiting jobs (the first in priority order) hold a reservation
    that later jobs may not delay; jobs past the cap wait without one.

    ``strict``: no backfill, as Slurm's main scheduler (its backfill is a pass of its own). Jobs
    start in priority order until one in their partition must wait for resources; every job
    behind it there waits for Priority. Nothing can then start ahead of a job it would delay, so
    no reservation is needed, nor any running job's end time: the snapshot may carry `holds`.
    """
    return _Planner(snapshot, now, max_reservations, strict).run(snapshot.pending, snapshot.ordered)
