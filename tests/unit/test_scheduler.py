"""plan(): a table of scenarios, then hypothesis properties checked against a brute-force model."""

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melond.sched.plan import NodeHold, NodeView, PendingView, Plan, RunningView, Share, Snapshot, Start, plan
from melond.spec.gres import Gres, gpu_count
from melond.spec.shape import make_shape

NOW = 1000.0
SOON = math.nextafter(NOW, math.inf)
GiB = 1024


def node(name, cpus=4, memory=4 * GiB, partition="main", available=True):
    return NodeView(name, partition, cpus, memory, available)


def run(job_id, on, cpus, memory=GiB, ends_in=None, array=None):
    """A running job; ``ends_in`` seconds from NOW (None = unlimited)."""
    return RunningView(job_id, on, cpus, memory, None if ends_in is None else NOW + ends_in, array)


def job(job_id, cpus=1, memory=GiB, limit=3600, priority=0, submit=None, partition="main", **kw):
    submit = float(job_id) if submit is None else submit
    kw = {k: frozenset(v) if k in ("nodelist", "exclude") else v for k, v in kw.items()}
    return PendingView(job_id, priority, submit, cpus, memory, limit, partition, **kw)


def starts(*pairs):
    return tuple(Start(j, n) for j, n in pairs)


# name: (nodes, running, pending, expected starts in decision order, expected reasons)
SCENARIOS = {
    "fifo fills the node then waits": (
        [node("a")],
        [],
        [job(1, 2), job(2, 2), job(3, 2)],
        starts((1, "a"), (2, "a")),
        {3: "Resources"},
    ),
    "higher priority goes first": (
        [node("a")],
        [],
        [job(1, 4, priority=1), job(2, 4, priority=10)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "equal priority: earlier submit first": (
        [node("a")],
        [],
        [job(3, 4, submit=5.0), job(5, 4, submit=1.0)],
        starts((5, "a")),
        {3: "Resources"},
    ),
    "equal priority and submit: lower id first": (
        [node("a")],
        [],
        [job(9, 4, submit=1.0), job(8, 4, submit=1.0)],
        starts((8, "a")),
        {9: "Resources"},
    ),
    "jobs behind a waiting job wait on Priority": (
        [node("a")],
        [run(50, "a", 4)],
        [job(1, 1), job(2, 1), job(3, 1)],
        (),
        {1: "Resources", 2: "Priority", 3: "Priority"},
    ),
    "best fit: fewest free CPUs left": (
        [node("a", 8), node("b", 8)],
        [run(50, "b", 6)],
        [job(1, 2)],
        starts((1, "b")),
        {},
    ),
    "best fit ties broken by name": (
        [node("b"), node("a"), node("c")],
        [],
        [job(1, 1)],
        starts((1, "a")),
        {},
    ),
    "best fit skips a node without the memory": (
        [node("a", 8, 8 * GiB), node("b", 8, 8 * GiB)],
        [run(50, "b", 6, 7 * GiB)],
        [job(1, 2, 2 * GiB)],
        starts((1, "a")),
        {},
    ),
    "starts in one plan consume capacity": (
        [node("a", 4), node("b", 2)],
        [],
        [job(1, 2), job(2, 2), job(3, 2), job(4, 1)],
        starts((1, "b"), (2, "a"), (3, "a")),
        {4: "Resources"},
    ),
    "nodelist picks its node": (
        [node("a", 8), node("b", 8)],
        [run(50, "a", 6)],
        [job(1, 2, nodelist={"b"})],
        starts((1, "b")),
        {},
    ),
    "nodelist of an unavailable node": (
        [node("a"), node("b", available=False)],
        [],
        [job(1, nodelist={"b"}), job(2)],
        starts((2, "a")),
        {1: "ReqNodeNotAvail"},
    ),
    "nodelist naming another partition's node": (
        [node("a"), node("g", partition="gpu")],
        [],
        [job(1, nodelist={"g"})],
        (),
        {1: "ReqNodeNotAvail"},
    ),
    "exclude steers away": (
        [node("a", 8), node("b", 8)],
        [run(50, "a", 6)],
        [job(1, 2, exclude={"a"})],
        starts((1, "b")),
        {},
    ),
    "exclude everything": (
        [node("a"), node("b")],
        [],
        [job(1, exclude={"a", "b"})],
        (),
        {1: "ReqNodeNotAvail"},
    ),
    "a down node starts nothing": (
        [node("a", available=False), node("b")],
        [],
        [job(1, 4), job(2, 4)],
        starts((1, "b")),
        {2: "Resources"},
    ),
    "every node of the partition down": (
        [node("a", available=False)],
        [],
        [job(1)],
        (),
        {1: "ReqNodeNotAvail"},
    ),
    "unknown partition": (
        [node("a")],
        [],
        [job(1, partition="nope")],
        (),
        {1: "ReqNodeNotAvail"},
    ),
    "partitions do not block each other": (
        [node("a"), node("g", partition="gpu")],
        [run(50, "a", 4)],
        [job(1, 4), job(2, 4, partition="gpu"), job(3, 4), job(4, 4, partition="gpu")],
        starts((2, "g")),
        {1: "Resources", 3: "Priority", 4: "Resources"},
    ),
    "memory 0 takes the whole node": (
        [node("a"), node("b")],
        [run(50, "a", 1, 100)],
        [job(1, 1, memory=0), job(2, 1, memory=1)],
        starts((1, "b"), (2, "a")),
        {},
    ),
    "memory 0 waits for an idle node's memory": (
        [node("a")],
        [run(50, "a", 1, 100, ends_in=100)],
        [job(1, 1, memory=0), job(2, 1, memory=1, limit=10)],
        starts((2, "a")),  # backfilled: ends before the whole-memory reservation
        {1: "Resources"},
    ),
    "a waiting memory-0 job does not stop an explicit-memory one": (
        [node("a", 2), node("b", 8)],
        [run(50, "b", 1, GiB)],
        [job(1, 4, memory=0, limit=0), job(2, 4, memory=GiB, limit=0)],
        starts((2, "b")),
        {1: "Resources"},
    ),
    "a running memory-0 job holds all memory": (
        [node("a")],
        [run(50, "a", 1, 0)],
        [job(1, 1, memory=1)],
        (),
        {1: "Resources"},
    ),
    "too big for any node: Resources, not first in line": (
        [node("a")],
        [run(50, "a", 4)],
        [job(1, 64), job(2, 1, memory=64 * GiB), job(3, 1)],
        (),
        {1: "Resources", 2: "Resources", 3: "Resources"},
    ),
    "backfill that ends before the reservation": (
        [node("a")],
        [run(50, "a", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=60)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "backfill refused: it would delay the reservation": (
        [node("a")],
        [run(50, "a", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=200)],
        (),
        {1: "Resources", 2: "Priority"},
    ),
    "backfill refused: unlimited": (
        [node("a")],
        [run(50, "a", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=0)],
        (),
        {1: "Resources", 2: "Priority"},
    ),
    "backfill alongside the reservation": (
        [node("a", 8)],
        [run(50, "a", 4, ends_in=100)],
        [job(1, 6, limit=100), job(2, 2, limit=0)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "backfill by memory the reservation leaves": (
        [node("a", 8, 8 * GiB)],
        [run(50, "a", 4, 4 * GiB, ends_in=100)],
        [job(1, 4, 7 * GiB, limit=100), job(2, 1, GiB, limit=0), job(3, 1, 2 * GiB, limit=0)],
        starts((2, "a")),
        {1: "Resources", 3: "Priority"},
    ),
    "reservation on the node that frees first": (
        [node("a"), node("b")],
        [run(50, "a", 4, ends_in=500), run(51, "b", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=1000)],
        (),
        {1: "Resources", 2: "Priority"},
    ),
    "backfill on a node the reservation does not use": (
        [node("a"), node("b")],
        [run(50, "a", 2, ends_in=500), run(51, "b", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=1000)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "unlimited running job: no reservation possible, others proceed": (
        [node("a")],
        [run(50, "a", 2)],
        [job(1, 4, limit=10), job(2, 2, limit=0)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "a job past its deadline still holds its node": (
        [node("a")],
        [run(50, "a", 4, ends_in=-30)],
        [job(1, 1, limit=1)],
        (),
        {1: "Resources"},
    ),
    "a job past its deadline frees its node next: reserve there": (
        [node("a")],
        [run(50, "a", 2, ends_in=-30)],
        [job(1, 4, limit=100), job(2, 2, limit=60)],
        (),
        {1: "Resources", 2: "Priority"},
    ),
    "a job past its deadline frees its node next: backfill around it": (
        [node("a")],
        [run(50, "a", 2, ends_in=-50), run(51, "a", 1, ends_in=60)],
        [job(1, 3, limit=100), job(2, 1, limit=80)],
        (),
        {1: "Resources", 2: "Priority"},
    ),
    "a job that cannot fit anywhere does not stop a smaller one": (
        [node("a"), node("b")],
        [run(50, "a", 1, 3 * GiB), run(51, "b", 3, GiB)],
        [job(1, 2, 2 * GiB, limit=0), job(2, 1, 512, limit=0)],
        starts((2, "b")),
        {1: "Resources"},
    ),
    "a reservation fits a gap of exactly its length": (
        [node("a", 6)],
        [run(50, "a", 2, ends_in=100), run(51, "a", 2, ends_in=300)],
        [job(1, 6, limit=100), job(2, 4, limit=200), job(3, 2, limit=150)],
        (),  # job 2 is reserved for [100, 300), which job 3 would overlap
        {1: "Resources", 2: "Priority", 3: "Priority"},
    ),
    "a backfill that ends exactly when the reservation begins": (
        [node("a")],
        [run(50, "a", 2, ends_in=100)],
        [job(1, 4, limit=100), job(2, 2, limit=100)],
        starts((2, "a")),
        {1: "Resources"},
    ),
    "array throttle": (
        [node("a", 8)],
        [run(50, "a", 1, array=7)],
        [
            job(10, array_job_id=7, array_throttle=2),
            job(11, array_job_id=7, array_throttle=2),
            job(12, array_job_id=7, array_throttle=2),
            job(13),
        ],
        starts((10, "a"), (13, "a")),
        {11: "JobArrayTaskLimit", 12: "JobArrayTaskLimit"},
    ),
    "array without throttle": (
        [node("a", 8)],
        [],
        [job(10, array_job_id=7), job(11, array_job_id=7)],
        starts((10, "a"), (11, "a")),
        {},
    ),
    "blocked reasons are kept and never start": (
        [node("a", 8)],
        [],
        [
            job(1, priority=9, blocked="JobHeldUser"),
            job(2, priority=9, blocked="Dependency"),
            job(3, priority=9, blocked="BeginTime"),
            job(4, priority=9, blocked="PartitionTimeLimit"),
            job(5, 8),
        ],
        starts((5, "a")),
        {1: "JobHeldUser", 2: "Dependency", 3: "BeginTime", 4: "PartitionTimeLimit"},
    ),
    "a blocked job is not first in line": (
        [node("a")],
        [run(50, "a", 4)],
        [job(1, blocked="Dependency"), job(2)],
        (),
        {1: "Dependency", 2: "Resources"},
    ),
    "many small jobs fill many nodes": (
        [node(n, 2) for n in "abc"],
        [],
        [job(i) for i in range(1, 9)],
        starts((1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")),
        {7: "Resources", 8: "Priority"},
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    nodes, running, pending, want_starts, want_reasons = SCENARIOS[name]
    got = plan(Snapshot(tuple(nodes), tuple(running), tuple(pending)), NOW)
    assert got == Plan(want_starts, want_reasons)


# An extension moves a running job's deadline, and with it what may backfill before the
# waiting job's reservation: job 2 (200 s) fits only if job 50 ends at least 200 s from now.
@pytest.mark.parametrize(
    "ends_in, started",
    [(100, False), (199, False), (200, True), (300, True), (None, True)],
)
def test_extension_changes_backfill(ends_in, started):
    snap = Snapshot(
        (node("a"),),
        (run(50, "a", 2, ends_in=ends_in),),
        (job(1, 4, limit=100), job(2, 2, limit=200)),
    )
    got = plan(snap, NOW)
    assert (got.starts == starts((2, "a"))) is started
    assert got.reasons == ({1: "Resources"} if started else {1: "Resources", 2: "Priority"})


def test_reservation_cap():
    """Past the cap a waiting job holds no reservation, so a later job may pass it."""
    snap = Snapshot(
        (node("a"),),
        (run(50, "a", 2, ends_in=100),),
        (job(1, 4, limit=100), job(2, 2, limit=200)),
    )
    assert plan(snap, NOW, max_reservations=0).starts == starts((2, "a"))
    assert plan(snap, NOW, max_reservations=1).starts == ()


def test_reservations_stack_in_priority_order():
    """The second waiting job is reserved after the first, and a backfill must clear both."""
    snap = Snapshot(
        (node("a"),),
        (run(50, "a", 2, ends_in=100),),
        (job(1, 4, limit=100), job(2, 4, limit=100), job(3, 2, limit=250), job(4, 2, limit=300)),
    )
    got = plan(snap, NOW)
    assert got.starts == ()
    snap2 = Snapshot(snap.nodes, snap.running, snap.pending[:2] + (job(3, 2, limit=100),))
    assert plan(snap2, NOW).starts == starts((3, "a"))


def test_many_pending_on_a_full_node():
    pending = tuple(job(i, 1, priority=i % 7) for i in range(1, 1001))
    got = plan(Snapshot((node("a", 2),), (run(5000, "a", 2),), pending), NOW)
    assert got.starts == ()
    assert sorted(got.reasons.values()).count("Resources") == 1
    assert len(got.reasons) == 1000


# ---------------------------------------------------------------------------------- properties

NAMES = ["n0", "n1", "n2", "n3"]
PARTS = ["main", "gpu"]


@st.composite
def snapshots(draw, with_arrays=True, with_blocked=True, wide=4):
    """Random situations; one pending job in `wide` may span nodes (wide=1: all, in one partition)."""
    nodes = []
    parts = PARTS[:1] if wide == 1 else PARTS
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4 if wide > 1 else 6, unique=True)):
        nodes.append(
            NodeView(
                name,
                draw(st.sampled_from(parts)),
                draw(st.integers(1, 8)),
                draw(st.sampled_from([1024, 2048, 4096])),
                draw(st.booleans() | st.just(True)),
                devices=(("gpu", "a"),) * draw(st.sampled_from([0, 0, 1, 2, 4])),
            )
        )
    running, ids = [], iter(range(100, 1000))
    for n in nodes:
        free_c, free_m, free_g = n.cpus, n.memory, list(range(len(n.devices)))
        for _ in range(draw(st.integers(0, 3))):
            c = draw(st.integers(1, n.cpus))
            m = draw(st.sampled_from([0, 256, 1024, 2048]))
            g = draw(st.integers(0, len(free_g)))
            need = m or n.memory
            if c > free_c or need > free_m:
                continue
            free_c, free_m = free_c - c, free_m - need
            held, free_g = tuple(free_g[:g]), free_g[g:]
            end = draw(st.none() | st.integers(-100, 2000).map(lambda s: NOW + s))  # some overdue
            arr = draw(st.sampled_from([None, 7])) if with_arrays else None
            running.append(RunningView(next(ids), n.name, c, m, end, arr, devices=held))
    pending = []
    for job_id in draw(st.lists(st.integers(1, 99), max_size=12, unique=True)):
        arr = draw(st.sampled_from([None, 7, 8])) if with_arrays else None
        pending.append(
            PendingView(
                job_id,
                draw(st.integers(0, 3)),
                float(draw(st.integers(0, 5))),
                draw(st.integers(1, 8)),
                draw(st.sampled_from([0, 256, 1024, 2048, 8192])),
                draw(st.sampled_from([0, 60, 300, 1000, 3000])),
                draw(st.sampled_from(parts)),
                frozenset(draw(st.lists(st.sampled_from(NAMES), max_size=2))) if draw(st.booleans()) else frozenset(),
                frozenset(draw(st.lists(st.sampled_from(NAMES), max_size=1))),
                draw(st.sampled_from([None, None, None, "Dependency", "JobHeldUser"])) if with_blocked else None,
                arr,
                draw(st.sampled_from([None, 1, 2])) if arr else None,
                exclusive=draw(st.sampled_from([False, False, False, True])),
                gres=draw(st.sampled_from([(), (), (), (Gres("gpu", None, 1),), (Gres("gpu", "a", 2),)])),
            )
        )
        if draw(st.integers(1, wide)) == 1:  # a job that may span nodes
            per_node = draw(st.none() | st.integers(1, 3))
            ntasks = draw(st.none() | st.integers(1, 6)) if per_node else draw(st.integers(1, 6))
            nodes_given = draw(st.none() | st.integers(1, 3))
            shape = make_shape(nodes=None if nodes_given is None else (nodes_given, nodes_given + draw(st.integers(0, 1))),
                               ntasks=ntasks, ntasks_per_node=per_node, cpus_per_task=draw(st.integers(1, 2)),
                               exclusive=pending[-1].exclusive, spread_job=draw(st.integers(0, 4)) == 0,
                               use_min_nodes=draw(st.integers(0, 4)) == 0)
            if shape.wide:
                pending[-1] = replace(pending[-1], shape=shape, mem_per_cpu=draw(st.sampled_from([0, 0, 128, 512])),
                                      memory=draw(st.sampled_from([0, 128, 256, 1024])),
                                      gres_per_task=draw(st.sampled_from([(), (), (Gres("gpu", None, 1),)])))
                if pending[-1].gres_per_task and pending[-1].gres:  # one kind both ways: the larger count
                    pending[-1] = replace(pending[-1], gres=(Gres("gpu", None, draw(st.integers(1, 2))),))
    return Snapshot(tuple(nodes), tuple(running), tuple(pending))


def _order(j):
    return (-j.priority, j.submit_time, j.job_id)


def _holds(snapshot, result):
    """Every job on each node after the plan: running ones, then the started ones."""
    pending = {j.job_id: j for j in snapshot.pending}
    # An overdue job holds its node until it is killed, which is after now.
    held = [(r.node, r.cpus, r.memory, r.end and max(r.end, SOON), len(r.devices)) for r in snapshot.running]
    nodes = {n.name: n for n in snapshot.nodes}
    for s in result.starts:
        j = pending[s.job_id]
        end = NOW + j.time_limit if j.time_limit else None
        if s.shares:
            held.extend((share.node, share.cpus, share.memory, end, sum(share.gres)) for share in s.shares)
            continue
        n = nodes[s.node]
        cpus, memory, g = (n.cpus, 0, len(n.devices)) if j.exclusive else (j.cpus, j.memory, gpu_count(j.want()))
        held.append((s.node, cpus, memory, end, g))
    return held


@settings(max_examples=300)
@given(snapshots())
def test_no_node_over_committed(snapshot):
    result = plan(snapshot, NOW)
    nodes = {n.name: n for n in snapshot.nodes}
    pending = {j.job_id: j for j in snapshot.pending}
    for s in result.starts:
        j = pending[s.job_id]
        if j.shape is not None and j.shape.wide:
            assert s.shares and s.node == s.shares[0].node and sum(x.tasks for x in s.shares) == j.shape.ntasks
            assert j.shape.nodes_min <= len(s.shares) <= (j.shape.nodes_max or len(s.shares))
            assert [x.node for x in s.shares] == sorted({x.node for x in s.shares})
        for name in [x.node for x in s.shares] or [s.node]:
            n = nodes[name]
            assert n.available and n.partition == j.partition
            assert not j.nodelist or n.name in j.nodelist
            assert n.name not in j.exclude
    for name, n in nodes.items():
        held = [(c, m or n.memory, g) for on, c, m, _, g in _holds(snapshot, result) if on == name]
        assert sum(c for c, _, _ in held) <= n.cpus
        assert sum(m for _, m, _ in held) <= n.memory
        assert sum(g for _, _, g in held) <= len(n.devices)


@settings(max_examples=300)
@given(snapshots())
def test_every_pending_job_started_or_explained(snapshot):
    result = plan(snapshot, NOW)
    started = [s.job_id for s in result.starts]
    assert len(started) == len(set(started))
    assert not set(started) & set(result.reasons)
    assert set(started) | set(result.reasons) == {j.job_id for j in snapshot.pending}
    assert all(isinstance(r, str) and r for r in result.reasons.values())


@settings(max_examples=300)
@given(snapshots())
def test_blocked_jobs_never_start_and_keep_their_reason(snapshot):
    result = plan(snapshot, NOW)
    started = {s.job_id for s in result.starts}
    for j in snapshot.pending:
        if j.blocked:
            assert j.job_id not in started
            assert result.reasons[j.job_id] == j.blocked


@settings(max_examples=300)
@given(snapshots())
def test_array_throttle_respected(snapshot):
    result = plan(snapshot, NOW)
    pending = {j.job_id: j for j in snapshot.pending}
    for arr in (7, 8):
        running = sum(r.array_job_id == arr for r in snapshot.running)
        new = [pending[s.job_id] for s in result.starts if pending[s.job_id].array_job_id == arr]
        for k, j in enumerate(new):
            assert not j.array_throttle or running + k < j.array_throttle


@settings(max_examples=200)
@given(snapshots(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_and_ignores_input_order(snapshot, rnd):
    first = plan(snapshot, NOW)
    assert plan(snapshot, NOW) == first
    parts = (snapshot.nodes, snapshot.running, snapshot.pending)
    shuffled = Snapshot(*(tuple(rnd.sample(part, len(part))) for part in parts))
    assert plan(shuffled, NOW) == first


def _ref_fits(n, mine, t0, t1, c, m, g=0):
    """Whether c CPUs, m MiB and g GPUs are free on node n throughout [t0, t1), given (start, end,
    cpus, MiB, GPUs) holds."""
    points = [t0, *(p for h in mine for p in h[:2] if t0 < p < t1)]
    return all(sum(h[2] for h in mine if h[0] <= s < h[1]) + c <= n.cpus
               and sum(h[3] for h in mine if h[0] <= s < h[1]) + m <= n.memory
               and sum(h[4] for h in mine if h[0] <= s < h[1]) + g <= len(n.devices) for s in points)


def _ref_gpus(j, tasks):
    """GPUs a spanning job's `tasks` tasks on one node take: per node or per task, the more."""
    return max(gpu_count(j.gres), tasks * gpu_count(j.gres_per_task))


def _ref_room(j, n, mine, t0, t1):
    """The most of a spanning job's tasks node n holds throughout [t0, t1), tried one count at a time."""
    sh = j.shape
    most = n.cpus // sh.cpus_per_task
    if sh.ntasks_per_node:
        most = min(most, sh.ntasks_per_node)
    if sh.exclusive:
        if not _ref_fits(n, mine, t0, t1, n.cpus, n.memory, len(n.devices)):
            return 0
        while most and _ref_gpus(j, most) > len(n.devices):
            most -= 1
        return most
    for r in range(most, 0, -1):
        cpus = r * sh.cpus_per_task
        if _ref_fits(n, mine, t0, t1, cpus, j.mem_per_cpu * cpus if j.mem_per_cpu else (j.memory or n.memory),
                     _ref_gpus(j, r)):
            return r
    return 0


def _ref_usable(n, j):
    """Only a node with GPUs can hold a job asking for them, even whole."""
    return bool(n.devices) or not (j.gres or j.gres_per_task)


def _ref_choose(j, rooms):
    """[(node, cpus, tasks, MiB)]: the fewest roomiest nodes (then by name), or for a range of
    node counts without --use-min-nodes, or --spread-job, the roomiest up to the most (at most
    one per task), in name order, the tasks dealt one per node per round; None when they cannot
    hold the job."""
    sh = j.shape
    if sh.ntasks_per_node and not sh.ntasks_given:
        rooms = [(r, n) for r, n in rooms if r == sh.ntasks_per_node]
    widest = sh.spread_job or (sh.nodes_max is not None and sh.nodes_max > sh.nodes_min and not sh.use_min_nodes)
    chosen, total = [], 0
    for r, n in sorted([(r, n) for r, n in rooms if r], key=lambda x: (-x[0], x[1].name)):
        enough = total >= sh.ntasks and len(chosen) >= sh.nodes_min
        if enough and (not widest or len(chosen) >= min(sh.ntasks, sh.nodes_max or sh.ntasks)):
            break
        chosen.append((r, n))
        total += r
    if total < sh.ntasks or len(chosen) < sh.nodes_min or len(chosen) > sh.ntasks or \
            (sh.nodes_max is not None and len(chosen) > sh.nodes_max):
        return None
    chosen.sort(key=lambda x: x[1].name)
    tasks, left = [0] * len(chosen), sh.ntasks
    while left:
        for i, (r, _) in enumerate(chosen):
            if left and tasks[i] < r:
                tasks[i], left = tasks[i] + 1, left - 1
    out = []
    for (_, n), t in zip(chosen, tasks):
        cpus = n.cpus if sh.exclusive else t * sh.cpus_per_task
        out.append((n, cpus, t, n.memory if sh.exclusive else j.mem_per_cpu * cpus if j.mem_per_cpu else
                    (j.memory or n.memory), len(n.devices) if sh.exclusive else _ref_gpus(j, t)))
    return out


def _ref_release_times(nodes, holds):
    """Now, then each time CPUs or memory come free on one of `nodes` (used going down there),
    the first WIDE_TIMES of them: the start times plan() tries for a job spanning nodes."""
    from melond.sched.plan import WIDE_TIMES
    found = set()
    for n in nodes:
        mine = holds[n.name]
        for t in {h[1] for h in mine if h[1] < math.inf and h[1] > NOW}:
            before = [h for h in mine if h[0] < t <= h[1]]  # held just before t
            after = [h for h in mine if h[0] <= t < h[1]]
            if any(sum(h[k] for h in after) < sum(h[k] for h in before) for k in (2, 3, 4)):
                found.add(t)
    return [NOW, *sorted(found)][:WIDE_TIMES]


def _ref_earliest_wide(nodes, held, j):
    d = j.time_limit or float("inf")
    ok = [n for n in nodes if n.available and n.partition == j.partition and n.name not in j.exclude
          and (not j.nodelist or n.name in j.nodelist) and _ref_usable(n, j)]
    mine = {n.name: [(NOW, e if e is not None else math.inf, c, m or n.memory, g) for on, c, m, e, g in held
                     if on == n.name] for n in ok}
    ends = sorted({h[1] for hs in mine.values() for h in hs if h[1] < math.inf})
    for t in [NOW, *ends]:
        if _ref_choose(j, [(_ref_room(j, n, mine[n.name], t, t + d), n) for n in ok]):
            return t
    return None


def _ref_earliest(nodes, held, j):
    """Brute force: the earliest start of ``j`` on any node, given the jobs held there."""
    if j.shape is not None and j.shape.wide:
        return _ref_earliest_wide(nodes, held, j)
    d = j.time_limit or float("inf")
    best = None
    for n in nodes:
        if not n.available or n.partition != j.partition or n.name in j.exclude:
            continue
        if j.nodelist and n.name not in j.nodelist:
            continue
        if gpu_count(j.want()) > len(n.devices):
            continue
        need = (0 if j.exclusive else j.memory) or n.memory
        cpus = n.cpus if j.exclusive else j.cpus
        gpus = len(n.devices) if j.exclusive else gpu_count(j.want())
        mine = [(c, m or n.memory, end, g) for on, c, m, end, g in held if on == n.name]
        ends = sorted({e for _, _, e, _ in mine if e is not None})
        for t in [NOW, *ends]:
            checks = [t, *(e for e in ends if t < e < t + d)]
            if all(
                sum(c for c, _, e, _ in mine if e is None or e > s) + cpus <= n.cpus
                and sum(m for _, m, e, _ in mine if e is None or e > s) + need <= n.memory
                and sum(g for _, _, e, g in mine if e is None or e > s) + gpus <= len(n.devices)
                for s in checks
            ):
                best = t if best is None else min(best, t)
                break
    return best


@settings(max_examples=500)
@given(snapshots(with_arrays=False))
def test_backfill_never_delays_the_lead_job(snapshot):
    """Each partition's lead job starts as early as if the jobs behind it did not exist."""
    result = plan(snapshot, NOW)
    started = {s.job_id for s in result.starts}
    for part in PARTS:
        lead = next(
            (
                j
                for j in sorted(snapshot.pending, key=_order)
                if j.partition == part and not j.blocked and result.reasons.get(j.job_id) != "ReqNodeNotAvail"
            ),
            None,
        )
        if lead is None:
            continue
        alone = _ref_earliest(snapshot.nodes, _holds(snapshot, Plan((), {})), lead)
        others = Plan(tuple(s for s in result.starts if s.job_id != lead.job_id), {})
        with_backfill = _ref_earliest(snapshot.nodes, _holds(snapshot, others), lead)
        assert with_backfill == alone
        assert (lead.job_id in started) == (alone == NOW)


@settings(max_examples=300)
@given(snapshots(with_arrays=False, with_blocked=False))
def test_reason_resources_only_for_the_first_waiting_job(snapshot):
    result = plan(snapshot, NOW)
    for part in PARTS:
        waiting = [
            result.reasons[j.job_id]
            for j in sorted(snapshot.pending, key=_order)
            if j.partition == part and result.reasons.get(j.job_id) in ("Resources", "Priority")
        ]
        if "Priority" in waiting:
            assert "Resources" in waiting[: waiting.index("Priority")]


def test_random_large_plans_hold_invariants():
    """A few bigger seeded snapshots than hypothesis draws, for the lazy and cached paths."""
    rnd = random.Random(4)
    for _ in range(30):
        nodes = tuple(NodeView(f"n{i:02}", rnd.choice(PARTS), rnd.choice([4, 8, 16]), 16 * GiB) for i in range(12))
        running, pending = [], []
        for n in nodes:
            free = n.cpus
            while free > 1 and rnd.random() < 0.7:
                c = rnd.randint(1, free)
                free -= c
                running.append(RunningView(len(running) + 1000, n.name, c, GiB, NOW + rnd.randint(1, 5000), None))
        for i in range(1, 300):
            limit, partition = rnd.choice([60, 600, 3600, 0]), rnd.choice(PARTS)
            pending.append(
                job(i, rnd.choice([1, 2, 4, 8]), limit=limit, partition=partition, priority=rnd.randint(0, 3))
            )
        snap = Snapshot(nodes, tuple(running), tuple(pending))
        result = plan(snap, NOW)
        for name in {n.name for n in nodes}:
            used = sum(c for on, c, _, _, _ in _holds(snap, result) if on == name)
            assert used <= next(n.cpus for n in nodes if n.name == name)
        assert len(result.starts) + len(result.reasons) == len(pending)
        for part in PARTS:
            lead = next((j for j in sorted(pending, key=_order) if j.partition == part), None)
            if lead:
                others = Plan(tuple(s for s in result.starts if s.job_id != lead.job_id), {})
                alone = _ref_earliest(nodes, _holds(snap, Plan((), {})), lead)
                assert _ref_earliest(nodes, _holds(snap, others), lead) == alone


# ------------------------------------------------------------- reference: eager, brute force


def _ref_plan(snapshot, max_reservations=100, strict=False):
    """Conservative backfill written the slow, obvious way: every hold is an interval, every
    reservation is made at once, every node is tried. plan() must agree with it exactly.
    `strict`: no backfill, no reservation; a job waiting for resources stops its partition."""
    if strict:
        max_reservations = 0
    nodes = {n.name: n for n in snapshot.nodes if n.available}
    holds = {name: [] for name in nodes}  # (start, end, cpus, memory, GPUs)
    tasks = {}
    for r in snapshot.running:
        tasks[r.array_job_id] = tasks.get(r.array_job_id, 0) + 1
        if r.node in nodes:
            end = max(r.end, SOON) if r.end else math.inf  # overdue: held until just after now
            holds[r.node].append((NOW, end, r.cpus, r.memory or nodes[r.node].memory, len(r.devices)))

    def fits(name, t0, t1, c, m, g):
        return _ref_fits(nodes[name], holds[name], t0, t1, c, m, g)

    starts, reasons, lead, budget = [], {}, set(), max_reservations
    for j in sorted(snapshot.pending, key=_order):
        if j.blocked:
            reasons[j.job_id] = j.blocked
            continue
        if j.array_job_id is not None and j.array_throttle and tasks.get(j.array_job_id, 0) >= j.array_throttle:
            reasons[j.job_id] = "JobArrayTaskLimit"
            continue
        eligible = sorted(
            name
            for name, n in nodes.items()
            if n.partition == j.partition and name not in j.exclude and (not j.nodelist or name in j.nodelist)
            and _ref_usable(n, j)
        )
        if not eligible:
            reasons[j.job_id] = "ReqNodeNotAvail"
            continue
        if j.shape is not None and j.shape.wide:
            d = j.time_limit or math.inf
            ok = [nodes[name] for name in eligible]
            if _ref_choose(j, [(_ref_room(j, n, [], NOW, NOW + d), n) for n in ok]) is None:
                reasons[j.job_id] = "Resources"
                continue
            if strict and j.partition in lead:
                reasons[j.job_id] = "Priority"
                continue
            got = _ref_choose(j, [(_ref_room(j, n, holds[n.name], NOW, NOW + d), n) for n in ok])
            if got:
                for n, c, _, m, g in got:
                    holds[n.name].append((NOW, NOW + d, c, m, g))
                tasks[j.array_job_id] = tasks.get(j.array_job_id, 0) + 1
                starts.append(Start(j.job_id, got[0][0].name, tuple(Share(n.name, c, t, m) for n, c, t, m, _ in got)))
                continue
            if budget > 0:
                budget -= 1
                for t in _ref_release_times(ok, holds):
                    got = _ref_choose(j, [(_ref_room(j, n, holds[n.name], t, t + d), n) for n in ok])
                    if got:
                        for n, c, _, m, g in got:
                            holds[n.name].append((t, t + d, c, m, g))
                        break
            reasons[j.job_id] = "Priority" if j.partition in lead else "Resources"
            lead.add(j.partition)
            continue
        if not j.exclusive:
            eligible = [name for name in eligible if nodes[name].cpus >= j.cpus and nodes[name].memory >= j.memory]
        eligible = [name for name in eligible if len(nodes[name].devices) >= gpu_count(j.want())]
        if not eligible:
            reasons[j.job_id] = "Resources"
            continue
        if strict and j.partition in lead:
            reasons[j.job_id] = "Priority"
            continue
        d = j.time_limit or math.inf
        # an exclusive job takes every CPU, all memory and every GPU of the node it gets
        cpus = {name: nodes[name].cpus if j.exclusive else j.cpus for name in eligible}
        need = {name: (0 if j.exclusive else j.memory) or nodes[name].memory for name in eligible}
        gpus = {name: len(nodes[name].devices) if j.exclusive else gpu_count(j.want()) for name in eligible}
        now_fit = [name for name in eligible if fits(name, NOW, NOW + d, cpus[name], need[name], gpus[name])]
        if now_fit:
            free = {name: nodes[name].cpus - sum(h[2] for h in holds[name] if h[0] <= NOW < h[1]) for name in now_fit}
            name = min(now_fit, key=lambda x: (free[x], x))
            holds[name].append((NOW, NOW + d, cpus[name], need[name], gpus[name]))
            tasks[j.array_job_id] = tasks.get(j.array_job_id, 0) + 1
            starts.append(Start(j.job_id, name))
            continue
        if budget > 0:
            budget -= 1
            options = []
            for name in eligible:
                ends = sorted({h[1] for h in holds[name] if h[1] < math.inf})
                t = next((t for t in [NOW, *ends] if fits(name, t, t + d, cpus[name], need[name], gpus[name])), None)
                if t is not None:
                    options.append((t, name))
            if options:
                t, name = min(options)
                holds[name].append((t, t + d, cpus[name], need[name], gpus[name]))
        reasons[j.job_id] = "Priority" if j.partition in lead else "Resources"
        lead.add(j.partition)
    return Plan(tuple(starts), reasons)


@settings(max_examples=500)
@given(snapshots(), st.sampled_from([100, 2, 1, 0]))
def test_plan_matches_the_brute_force_reference(snapshot, max_reservations):
    assert plan(snapshot, NOW, max_reservations=max_reservations) == _ref_plan(snapshot, max_reservations)


def _from_holds(snapshot):
    """The same situation with what running jobs hold as sums by node, as an event's pass sees it."""
    holds, tasks, seen = {}, {}, set()
    for r in snapshot.running:
        holds.setdefault(r.node, NodeHold()).add(r)
        if r.array_job_id is not None and r.job_id not in seen:
            seen.add(r.job_id)
            tasks[r.array_job_id] = tasks.get(r.array_job_id, 0) + 1
    return replace(snapshot, running=(), holds=holds, array_tasks=tasks)


@settings(max_examples=500)
@given(snapshots())
def test_a_strict_plan_matches_the_reference_and_needs_only_the_sums(snapshot):
    """An event's pass (Slurm's main scheduler): no backfill and no reservation; nothing starts
    behind a job that waits for resources in its partition, so it needs no end times, only
    what running jobs hold now, summed by node."""
    expected = _ref_plan(snapshot, strict=True)
    got = plan(snapshot, NOW, strict=True)
    assert got == expected and got.expected == {}
    assert plan(_from_holds(snapshot), NOW, strict=True) == expected


def test_a_strict_plan_starts_nothing_behind_a_waiting_job_where_a_full_one_backfills():
    snap = Snapshot((node("n1", cpus=4),), (run(1, "n1", 2, ends_in=100),),
                    (job(2, cpus=4, limit=50, priority=2), job(3, cpus=1, limit=50, priority=1)))
    assert plan(snap, NOW).starts == (Start(3, "n1"),)  # it ends before job 2 can start
    strict = plan(snap, NOW, strict=True)
    assert strict.starts == () and strict.reasons == {2: "Resources", 3: "Priority"}
    other = replace(snap, pending=(*snap.pending, job(4, cpus=1, partition="gpu")),
                    nodes=(*snap.nodes, node("g1", partition="gpu")))
    assert plan(other, NOW, strict=True).starts == (Start(4, "g1"),)  # partitions do not wait for each other


@settings(max_examples=400)
@given(snapshots(with_arrays=False, wide=1), st.sampled_from([100, 1]))
def test_plans_of_jobs_spanning_nodes_match_the_reference(snapshot, max_reservations):
    """Every pending job may span nodes: placed whole or not at all, reserved across nodes."""
    result = plan(snapshot, NOW, max_reservations=max_reservations)
    assert result == _ref_plan(snapshot, max_reservations)
    nodes = {n.name: n for n in snapshot.nodes}
    for name, n in nodes.items():
        held = [(c, m or n.memory, g) for on, c, m, _, g in _holds(snapshot, result) if on == name]
        assert sum(c for c, _, _ in held) <= n.cpus and sum(m for _, m, _ in held) <= n.memory
        assert sum(g for _, _, g in held) <= len(n.devices)


def test_seeded_plans_with_many_jobs_spanning_nodes_match_the_reference():
    """Bigger seeded situations than hypothesis draws, half of the jobs spanning nodes; they must
    really span some (the count is checked) and agree with the reference in every decision."""
    rnd = random.Random(27)
    spanning = reserved = 0
    for _ in range(25):
        nodes = tuple(NodeView(f"n{i}", "main", rnd.choice([2, 4, 8]), rnd.choice([2, 4]) * GiB) for i in range(6))
        running = []
        for n in nodes:
            free = n.cpus
            while free > 1 and rnd.random() < 0.5:
                c = rnd.randint(1, free)
                free -= c
                running.append(RunningView(900 + len(running), n.name, c, 512, NOW + rnd.randint(1, 3000)))
        pending = []
        for i in range(1, 40):
            j = job(i, rnd.choice([1, 2]), memory=rnd.choice([0, 256, 512]), limit=rnd.choice([60, 600, 3600, 0]),
                    priority=rnd.randint(0, 2), exclusive=rnd.random() < 0.1)
            if rnd.random() < 0.5:
                per_node = rnd.choice([None, None, 1, 2, 4])
                shape = make_shape(nodes=rnd.choice([None, None, (2, 2), (1, 3), (3, 3)]),
                                   ntasks=rnd.randint(1, 12) if per_node is None or rnd.random() < 0.5 else None,
                                   ntasks_per_node=per_node, cpus_per_task=rnd.choice([1, 1, 2]), exclusive=j.exclusive,
                                   spread_job=rnd.random() < 0.2, use_min_nodes=rnd.random() < 0.2)
                if shape.wide:
                    j = replace(j, shape=shape, mem_per_cpu=rnd.choice([0, 0, 64]))
            pending.append(j)
        snap = Snapshot(nodes, tuple(running), tuple(pending))
        for cap in (100, 3):
            result = plan(snap, NOW, max_reservations=cap)
            assert result == _ref_plan(snap, cap)
            spanning += sum(len(st.shares) > 1 for st in result.starts)
            reserved += sum(1 for j in pending if j.shape is not None and j.job_id in result.expected)
    assert spanning >= 20 and reserved >= 100, (spanning, reserved)


def test_a_wide_job_waits_whole_and_narrow_jobs_backfill_only_if_they_end_before_it():
    """Two nodes; one is busy for 100 s. A 2-node job cannot start partly: it reserves both from
    100 s on; a short job backfills on the free node, a long one must wait."""
    wide = replace(job(2, limit=1000), shape=make_shape(nodes=(2, 2), cpus_per_task=4), memory=256)
    short, long_ = job(3, limit=50, memory=256), job(4, limit=500, memory=256)
    snap = Snapshot((node("a"), node("b")), (run(1, "a", 4, ends_in=100),), (wide, short, long_))
    result = plan(snap, NOW)
    assert result.starts == (Start(3, "b"),)
    assert result.reasons == {2: "Resources", 4: "Priority"}
    assert result.expected[2] == NOW + 100
    free = plan(Snapshot((node("a"), node("b")), (), (wide,)), NOW)
    assert free.starts == (Start(2, "a", (Share("a", 4, 1, 256), Share("b", 4, 1, 256))),)


def test_tasks_are_dealt_as_slurms_block_layout_on_the_fewest_nodes():
    """-n 8 -c 2 on 4-CPU nodes: 4 nodes of 2 tasks; -n 5 --ntasks-per-node=2: 2, 2, 1."""
    nodes = tuple(node(f"n{i}") for i in range(1, 6))
    result = plan(Snapshot(nodes, (), (replace(job(1), shape=make_shape(ntasks=8, cpus_per_task=2)),)), NOW)
    assert [(x.node, x.cpus, x.tasks) for x in result.starts[0].shares] == [(f"n{i}", 4, 2) for i in range(1, 5)]
    result = plan(Snapshot(nodes, (), (replace(job(1), shape=make_shape(ntasks=5, ntasks_per_node=2)),)), NOW)
    assert [x.tasks for x in result.starts[0].shares] == [2, 2, 1]
    result = plan(Snapshot(nodes, (run(9, "n1", 3),), (replace(job(1), shape=make_shape(nodes=(2, 2), ntasks=3)),)),
                  NOW)
    assert [(x.node, x.tasks) for x in result.starts[0].shares] == [("n2", 2), ("n3", 1)]  # n1 has room for 1


def test_a_range_of_nodes_takes_as_many_as_are_free_unless_use_min_nodes():
    """sbatch.1 -N: a range gets "as many nodes as possible within the range specified and
    without delaying the initiation of the job"; --use-min-nodes prefers the smaller count;
    --spread-job spreads -n's tasks over as many nodes as it can, evenly."""
    nodes = tuple(node(f"n{i}") for i in range(1, 5))

    def shares(**shape) -> list[tuple[str, int]]:
        result = plan(Snapshot(nodes, (run(9, "n4", 4),), (replace(job(1), shape=make_shape(**shape)),)), NOW)
        return [(x.node, x.tasks) for x in result.starts[0].shares]
    assert shares(nodes=(2, 4), ntasks=4) == [("n1", 2), ("n2", 1), ("n3", 1)]  # n4 is busy: 3, not 4
    assert shares(nodes=(2, 4), ntasks=4, use_min_nodes=True) == [("n1", 2), ("n2", 2)]
    assert shares(nodes=(1, 2), ntasks=4) == [("n1", 2), ("n2", 2)]  # the range's most
    assert shares(ntasks=4) == [("n1", 4)]  # no -N: the fewest
    assert shares(ntasks=3, spread_job=True) == [("n1", 1), ("n2", 1), ("n3", 1)]
    assert shares(ntasks=2, spread_job=True) == [("n1", 1), ("n2", 1)]  # never a node without a task


def test_seeded_large_plans_match_the_reference():
    rnd = random.Random(11)
    for _ in range(15):
        nodes = tuple(
            NodeView(f"n{i}", rnd.choice(PARTS), rnd.choice([2, 4, 8]), rnd.choice([2, 4]) * GiB, rnd.random() > 0.1)
            for i in range(6)
        )
        running = []
        for n in nodes:
            free_c, free_m = n.cpus, n.memory
            while rnd.random() < 0.7:
                c, m = rnd.randint(1, n.cpus), rnd.choice([0, 512, GiB])
                if c > free_c or (m or n.memory) > free_m:
                    break
                free_c, free_m = free_c - c, free_m - (m or n.memory)
                end = None if rnd.random() < 0.2 else NOW + rnd.randint(-50, 3000)
                running.append(RunningView(900 + len(running), n.name, c, m, end, rnd.choice([None, 7])))
        pending = tuple(
            job(
                i,
                rnd.choice([1, 1, 2, 4, 8]),
                memory=rnd.choice([0, 256, 512, GiB, 3 * GiB]),
                limit=rnd.choice([0, 60, 120, 600, 1800, 3600]),
                priority=rnd.randint(0, 2),
                partition=rnd.choice(PARTS),
                exclude={rnd.choice(["n0", "n1", "zz"])},
                array_job_id=rnd.choice([None, None, 7]),
                array_throttle=rnd.choice([None, 2, 3]),
            )
            for i in range(1, 120)
        )
        snap = Snapshot(nodes, tuple(running), pending)
        for cap in (100, 5):
            assert plan(snap, NOW, max_reservations=cap) == _ref_plan(snap, cap)



def test_deep_queues_of_few_requests_match_the_reference():
    """Most of a deep queue asks what a job ahead of it asked: plan() answers those from the
    first one's outcome (and searches reservations again only on the nodes changed since), and
    must still agree with the reference on every job, in any order it is given."""
    rnd = random.Random(5)
    for _ in range(12):
        nodes = tuple(NodeView(f"n{i}", rnd.choice(PARTS), rnd.choice([4, 8]), 4 * GiB, rnd.random() > 0.1)
                      for i in range(5))
        running = [RunningView(900 + i, n.name, rnd.randint(1, 3), 512, rnd.choice([None, NOW + rnd.randint(-5, 900)]))
                   for i, n in enumerate(nodes)]
        asks = [dict(cpus=rnd.choice([1, 2, 4, 8, 16]), memory=rnd.choice([0, 512, 2 * GiB]),
                     limit=rnd.choice([0, 60, 600]), partition=rnd.choice(PARTS),
                     exclude=rnd.choice([set(), {"n0"}]), exclusive=rnd.random() < 0.2) for _ in range(4)]
        pending = []
        for i in range(1, 300):
            ask = rnd.choice(asks)
            pending.append(job(i, priority=rnd.randint(0, 3), submit=NOW - rnd.randint(0, 9),
                               blocked=rnd.choice([None] * 9 + ["JobHeldUser"]),
                               array_job_id=rnd.choice([None, 7]), array_throttle=rnd.choice([None, 3]), **ask))
        snap = Snapshot(nodes, tuple(running), tuple(pending))
        ordered = replace(snap, pending=tuple(sorted(pending, key=_order)), ordered=True)
        for cap in (100, 3, 0):
            expected = _ref_plan(snap, cap)
            assert plan(snap, NOW, max_reservations=cap) == expected
            assert plan(ordered, NOW, max_reservations=cap) == expected


def test_spanning_reservations_stop_at_the_plans_node_looks(monkeypatch):
    """Searches for spanning jobs' reservations look at most RESERVE_LOOKS nodes in one plan: the
    jobs first in priority order get theirs, the ones past it wait without one."""
    from melond.sched import plan as planner
    nodes = tuple(node(f"n{i:03}", cpus=4) for i in range(300))
    running = tuple(run(1000 + i, f"n{i:03}", 4, ends_in=60 + i) for i in range(300))
    wide = make_shape(nodes=(2, 2), ntasks=8)
    pending = tuple(job(i, cpus=8, memory=0, limit=600, priority=100 - i, shape=wide) for i in range(1, 61))
    snap = Snapshot(nodes, running, pending)
    reserved = [j.job_id for j in pending if j.job_id in plan(snap, NOW).expected]
    assert 0 < len(reserved) < len(pending)
    assert reserved == list(range(1, len(reserved) + 1))  # the first in priority order
    monkeypatch.setattr(planner, "RESERVE_LOOKS", 1 << 30)
    assert len(plan(snap, NOW).expected) == len(pending)


def test_reservations_on_one_node_stop_at_the_plans_node_looks(monkeypatch):
    """A request's earliest start is looked for on each node it may use once per plan (a later
    job asking the same reads it back): past RESERVE_LOOKS, jobs first in priority order keep
    theirs, and later distinct requests wait without one."""
    from melond.sched import plan as planner
    nodes = tuple(node(f"n{i:04}", cpus=4) for i in range(2000))
    running = tuple(run(1000 + i, f"n{i:04}", 4, ends_in=60 + i) for i in range(2000))
    pending = tuple(job(i, cpus=1 + i % 4, limit=60 * i, priority=100 - i) for i in range(1, 41))
    snap = Snapshot(nodes, running, pending)
    reserved = [j.job_id for j in pending if j.job_id in plan(snap, NOW).expected]
    assert len(reserved) == planner.RESERVE_LOOKS // len(nodes)
    assert reserved == list(range(1, len(reserved) + 1))
    monkeypatch.setattr(planner, "RESERVE_LOOKS", 1 << 30)
    assert len(plan(snap, NOW).expected) == len(pending)


def test_a_plan_counts_the_cpus_left_free_on_available_nodes():
    """The controller skips a pass for new submissions only while no available node has a CPU free."""
    nodes = (NodeView("a", "p", 2, 1000), NodeView("b", "p", 1, 1000), NodeView("c", "p", 4, 1000, available=False))
    running = (RunningView(1, "a", 1, 10, None), RunningView(2, "b", 1, 10, None))
    assert plan(Snapshot(nodes, running), 0.0).free_cpus == 1  # a has one free; c is drained
    pending = (PendingView(3, 0, 0.0, 1, 10, 60, "p"),)
    result = plan(Snapshot(nodes, running, pending), 0.0)
    assert result.starts == (Start(3, "a"),) and result.free_cpus == 0
    assert plan(Snapshot(nodes[:1]), 0.0).free_cpus == 2


def test_expected_starts_of_the_jobs_holding_reservations() -> None:
    """`mqueue --start`: each waiting job's reservation says when it should start, behind the
    running job's deadline and then behind the job reserved before it."""
    snap = Snapshot((node("n1", cpus=2),), (run(1, "n1", 2, ends_in=100),),
                    (job(2, cpus=2, limit=50), job(3, cpus=2, limit=50), job(4, cpus=1, limit=0)))
    got = plan(snap, NOW)
    assert got.starts == ()
    assert got.expected == {2: NOW + 100, 3: NOW + 150, 4: NOW + 200}  # unlimited, it still has a start


def test_no_expected_start_without_a_deadline_ahead() -> None:
    got = plan(Snapshot((node("n1", cpus=1),), (run(1, "n1", 1, ends_in=None),), (job(2, cpus=1),)), NOW)
    assert got.expected == {}


def test_a_node_reached_as_an_account_takes_only_that_accounts_jobs():
    """A helper logged in as alice (not root) cannot start bob's jobs: bob's job waits for a node
    of his; alice's goes to hers even when the other node fits better."""
    nodes = (NodeView("n1", "p", 4, 1000, only_users=frozenset({"alice"})), NodeView("n2", "p", 2, 1000))
    bobs, alices = PendingView(1, 0, NOW, 2, 10, 60, "p", user="bob"), PendingView(2, 0, NOW, 2, 10, 60, "p", user="alice")
    got = plan(Snapshot(nodes=nodes, pending=(bobs, alices)), NOW)
    assert {s.job_id: s.node for s in got.starts} == {1: "n2", 2: "n1"}
    busy = (RunningView(9, "n2", 2, 10, NOW + 100),)
    got = plan(Snapshot(nodes=nodes, running=busy, pending=(PendingView(3, 0, NOW, 1, 10, 60, "p", user="bob"),)), NOW)
    assert got.starts == () and got.expected == {3: NOW + 100} and got.expected_nodes == {3: "n2"}


def test_a_partitions_max_cpus_per_node_caps_what_its_jobs_hold_on_a_node():
    """MaxCPUsPerNode 2 on a 4-CPU node: the node's view has 2 CPUs, so two 1-CPU jobs start,
    the third waits for Resources until one ends, and a whole-node job gets the 2; jobs started
    before the cap was lowered hold more, and nothing starts until they are under it again."""
    from melond.nodes.state import NodeState
    state = NodeState("a", "main", 4, 4 * GiB, up=True, max_cpus=2)
    capped = (node("a", cpus=state.usable_cpus),)
    got = plan(Snapshot(capped, pending=(job(1), job(2), job(3))), NOW)
    assert got.starts == starts((1, "a"), (2, "a")) and got.reasons == {3: "Resources"} and got.free_cpus == 0
    got = plan(Snapshot(capped, (run(1, "a", 1, ends_in=60),), (job(3), job(4))), NOW)
    assert got.starts == starts((3, "a")) and got.expected == {4: NOW + 60}
    whole = make_shape(nodes=(2, 2), exclusive=True)
    got = plan(Snapshot(capped + (node("b", cpus=3),), pending=(job(5, exclusive=True, shape=whole, memory=0),)), NOW)
    assert [(s.node, s.cpus) for s in got.starts[0].shares] == [("a", 2), ("b", 3)]
    assert plan(Snapshot(capped, (run(1, "a", 3),), (job(6),)), NOW).reasons == {6: "Resources"}
    assert NodeState("b", "main", 4, 4 * GiB).usable_cpus == 4 and replace(state, max_cpus=8).usable_cpus == 4


@settings(max_examples=300)
@given(st.integers(0, 8), st.integers(0, 4096), st.lists(st.tuples(st.integers(1, 500), st.integers(0, 4),
                                                                      st.integers(0, 2048)), max_size=6),
       st.integers(0, 12), st.integers(0, 8192), st.sampled_from([1.0, 60.0, 600.0, math.inf]))
def test_a_rising_profiles_first_fit_is_its_earliest(free_c, free_m, releases, c, m, d):
    """A node holding no reservation only gains room over time, so its earliest start for a
    request is the first time the room is there (a bisection), whatever the job's length."""
    from melond.sched.plan import _Profile
    profile = _Profile(NOW, free_c, free_m, [(NOW + t, rc, rm, ()) for t, rc, rm in releases])
    assert profile.first(c, m) == profile.earliest(d, c, m, math.inf)
