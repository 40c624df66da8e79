"""The pending order melond keeps between full scheduling passes (sched.order.PendingOrder).

An event's pass reads the first pending jobs off an order built by the last full pass, with the
jobs submitted or changed since merged in. Whatever happens to the queue through the
engine's own operations (submissions of every kind, holds, releases, extensions, cancels,
starts, ends, requeues), that pass must see exactly the jobs, views and running set that a walk
over every job would give.
"""
from __future__ import annotations

import asyncio
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from melond import config
from melond.engine.engine import Engine
from melond.nodes.state import NodeState
from melond.sched import plan as scheduler
from melond.sched.order import running_views
from melond.sched.admission import Submitter
from melond.spec.gres import Gres
from melond.spec.states import SHORT, State
from melond.state.store import Store

DEPTH = 3
MIB = 1 << 20

ops = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.sampled_from([1, 2, 4, 80]), st.sampled_from(["plain", "held", "begin", "dep"])),
    st.tuples(st.sampled_from(["hold", "release", "extend", "cancel", "end", "lost"]), st.integers(0, 50)),
    st.tuples(st.sampled_from(["hold_all", "release_all", "extend_all", "cancel_all"]), st.just(0)),  # an array's, one transaction
    st.tuples(st.sampled_from(["pass", "full"]), st.just(0)),
), min_size=1, max_size=40)


ROOT = Submitter("root", 0, 0)


def _expected(engine: Engine, now: float, depth: int | None = DEPTH) -> tuple[list[tuple], set[int], bool]:
    """The first `depth` pending jobs (id, reason outside the plan, limit), every running job and
    whether more are pending, from a walk over every active job."""
    active = engine.jobs.active
    deps = {int(x) for j in active.values() if j.dependency for x in j.dependency.split(":")[1:]}
    states = {jid: SHORT[s] for jid, s in engine.store.states(deps).items()}
    pending = sorted((-j.priority, j.submit_time, j.id) for j in active.values() if j.state is State.PENDING)
    first = [active[jid] for _, _, jid in pending[:depth]]
    running = {j.id for j in active.values() if j.state is State.RUNNING}
    return ([(j.id, engine.order.blocked(j, now, states), j.time_limit) for j in first], running,
            depth is not None and len(pending) > depth)


def _engine(path: str) -> tuple[Engine, Store]:
    """An engine over a real store and the embedded inventory's one node, up, with 2 CPUs."""
    inv = config.load(None)
    name = next(iter(inv.node_table()))
    nodes = {name: NodeState(name=name, partition=inv.default_partition(), cpus=2, memory=4096, up=True)}
    store = Store(path)
    return Engine(store, inv, nodes, kill_wait=1.0), store


def _snapshot(engine: Engine, now: float, depth: int | None = None, strict: bool = False):
    nodes = tuple(scheduler.NodeView(n.name, n.partition, n.cpus, n.memory, n.available)
                  for n in engine.nodes.values())
    return engine.order.snapshot(engine.jobs.active, nodes, now, engine.store.states, depth, strict)


def _sums(holds) -> dict:
    """What running jobs hold, by node, those holding nothing left out."""
    return {name: (h.cpus, h.memory, h.whole, +h.devices) for name, h in holds.items()
            if h.cpus or h.memory or h.whole or +h.devices}


def _held(engine: Engine) -> tuple[dict, dict]:
    """The sums and the array tasks a walk over every running job gives."""
    holds: dict[str, scheduler.NodeHold] = {}
    tasks: dict[int, int] = {}
    for job in engine.jobs.active.values():
        if job.state is State.RUNNING:
            for view in running_views(job):
                holds.setdefault(view.node, scheduler.NodeHold()).add(view)
            if job.array_job_id is not None:
                tasks[job.array_job_id] = tasks.get(job.array_job_id, 0) + 1
    return _sums(holds), tasks


async def _run(path: str, steps: list[tuple]) -> None:
    engine, store = _engine(path)
    ops = engine.ops
    root = ops.caller("root", 0)
    try:
        _snapshot(engine, time.time())  # the first pass is a full one
        for op, arg, *rest in steps:
            active = sorted(engine.jobs.active)
            pending = [j for j in active if engine.jobs.active[j].state is State.PENDING]
            running = [j for j in active if engine.jobs.active[j].state is State.RUNNING]
            if op == "submit":
                kind = rest[0]
                req = {"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n", "chdir": "/tmp",
                       "time_limit": 60, "requeue": True, "hold": kind == "held"}
                if kind == "begin":
                    req["begin"] = time.time() + 3600
                if kind == "dep" and active:
                    req["dependency"] = f"afterok:{active[-1]}"
                for _ in range(arg):
                    await ops.submit(req, root, ROOT)
            elif op in ("hold", "release", "extend", "cancel") and pending:
                jid = pending[arg % len(pending)]
                if op == "extend":
                    await ops.extend(jid, root, add=60, to=None)
                elif op == "cancel":
                    await ops.cancel(jid, root)
                else:
                    await ops.set_hold(jid, root, op == "hold")
            elif op in ("hold_all", "release_all") and pending:
                await ops.set_hold_many(pending, root, op == "hold_all")
            elif op == "extend_all" and active:
                await ops.extend_many(active, root, add=60, to=None)
            elif op == "cancel_all" and active:
                await ops.cancel_many(active, root)
            elif op in ("end", "lost") and running:
                await engine.ends.record(running[arg % len(running)], {
                    "reason": "exited" if op == "end" else "lost", "exit_code": 0, "signal": None,
                    "end": time.time()})
            elif op == "pass":
                engine.loop.run_once()
            await engine.tasks.drain()  # starts and ends being committed
            now = time.time()
            # An event's pass reads what running jobs hold from sums kept as jobs start and stop.
            strict = _snapshot(engine, now, DEPTH, strict=True)
            assert strict.running == () and (_sums(strict.holds), dict(strict.array_tasks)) == _held(engine), (op, arg)
            if op == "full":  # every pending job, in order, from the kept order; nothing kept of the others
                want_all, want_running, _ = _expected(engine, now, None)
                snap = _snapshot(engine, now)
                assert [(v.job_id, v.blocked, v.time_limit) for v in snap.pending] == want_all, (op, arg)
                assert snap.ordered and {r.job_id for r in snap.running} == want_running
                assert set(engine.order._views) <= {j for j, _, _ in want_all}
            want_pending, want_running, want_more = _expected(engine, now)
            snap = _snapshot(engine, now, DEPTH)
            assert [(v.job_id, v.blocked, v.time_limit) for v in snap.pending] == want_pending, (op, arg)
            assert {r.job_id for r in snap.running} == want_running
            assert engine.order.deferred == want_more
            assert all(isinstance(v, scheduler.PendingView) for v in snap.pending)
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(steps=ops)
@example(steps=[("submit", 2, "plain"), ("pass", 0), ("end", 0), ("pass", 0), ("lost", 0), ("pass", 0)])
@example(steps=[("submit", 4, "held"), ("full", 0), ("extend_all", 0), ("release", 1), ("extend_all", 0), ("pass", 0)])
@example(steps=[("submit", 4, "plain"), ("extend_all", 0), ("hold_all", 0), ("full", 0)])  # a hold keeps the limit's mark
def test_an_event_pass_sees_what_a_full_walk_sees(tmp_path_factory, steps):
    path = str(tmp_path_factory.mktemp("order") / "melon.db")
    asyncio.run(_run(path, steps))


def test_a_job_is_listed_running_until_its_end_is_committed(tmp_path):
    """Its CPUs are freed for the next plan before the end is durable, but a job that mqueue no
    longer lists must already be ended in the store."""
    async def scenario() -> None:
        engine, store = _engine(str(tmp_path / "melon.db"))
        root = engine.ops.caller("root", 0)
        try:
            [jid], _ = await engine.ops.submit({"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n",
                                                "chdir": "/tmp", "time_limit": 60}, root, ROOT)
            engine.loop.run_once()
            await engine.tasks.drain()
            ending = asyncio.ensure_future(engine.ends.record(jid, {"reason": "exited", "exit_code": 0,
                                                                    "signal": None, "end": time.time()}))
            await asyncio.sleep(0)  # out of the active jobs, its end not yet committed
            assert jid not in engine.jobs.active
            assert [(j.id, j.state) for j in engine.jobs.listed()] == [(jid, State.RUNNING)]
            await ending
            assert engine.jobs.listed() == []
            assert store.job(jid).state is State.COMPLETED
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_one_node_jobs_gpus_per_task_are_asked_for_all_its_tasks_there() -> None:
    """-N 1 -n 3 --gpus-per-task=1: the plan sees three GPUs on one node, not one."""
    from melond.sched.order import PendingOrder
    from melond.state.job import Job
    job = Job(id=1, user="u", uid=1, name="j", partition="p", cpus=3, nodes_min=1, nodes_max=1, ntasks=3,
              cpus_per_task=1, gpus_per_task="gpu:1")
    (view,) = PendingOrder({"p": 0}).snapshot({1: job}, (), 0.0, lambda ids: {}).pending
    assert view.shape is None and view.want() == (Gres("gpu", None, 3),)


def test_many_jobs_released_at_once_go_back_before_newer_ones(tmp_path):
    """An array released in one transaction takes its place in the order before jobs submitted
    after it (one sort of the changed jobs with the rest, not an insert each)."""
    async def go() -> None:
        engine, store = _engine(str(tmp_path / "melon.db"))
        root = engine.ops.caller("root", 0)
        req = {"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n", "chdir": "/tmp", "time_limit": 60,
               "hold": True}  # none starts (no pass runs): only the order is looked at
        try:
            older, _ = await engine.ops.submit({**req, "array": "1-80"}, root, ROOT)
            _snapshot(engine, time.time())  # a full pass: the order is built
            newer, _ = await engine.ops.submit(req, root, ROOT)
            _snapshot(engine, time.time(), DEPTH)
            await engine.ops.set_hold_many(older, root, False)
            snap = _snapshot(engine, time.time(), DEPTH)
            assert [v.job_id for v in snap.pending] == older[:DEPTH], (newer, [v.job_id for v in snap.pending])
        finally:
            await store.close()
    asyncio.run(go())


def test_a_begin_time_wakes_its_job_when_it_comes(tmp_path):
    """A job waiting for its begin time is cached (no pass recomputes it) and woken at that time."""
    async def go() -> None:
        engine, store = _engine(str(tmp_path / "melon.db"))
        root = engine.ops.caller("root", 0)
        begin = time.time() + 1000
        try:
            [jid], _ = await engine.ops.submit({"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n",
                                                "chdir": "/tmp", "time_limit": 60, "begin": begin}, root, ROOT)
            _snapshot(engine, time.time())
            assert [v.blocked for v in _snapshot(engine, time.time(), DEPTH).pending] == ["BeginTime"]
            assert jid in engine.order._views and jid not in engine.order._volatile  # nothing redone per pass
            assert [v.blocked for v in _snapshot(engine, begin + 1, DEPTH).pending] == [None]  # its time came
        finally:
            await store.close()
    asyncio.run(go())
