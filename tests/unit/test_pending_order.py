"""The pending order melond keeps between full scheduling passes (Controller._snapshot).

An event's pass reads the first pending jobs off an order built by the last full pass, with the
jobs submitted or changed since merged in. Whatever happens to the queue through the
controller's own operations (submissions of every kind, holds, releases, extensions, cancels,
starts, ends, requeues), that pass must see exactly the jobs, views and running set that a walk
over every job would give.
"""
from __future__ import annotations

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from melond import config
from melond.sched import plan as scheduler
from melond.engine.controller import Controller, NodeState
from melond.spec.states import State
from melond.state.store import Store

DEPTH = 3
MIB = 1 << 20

ops = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.integers(1, 4), st.sampled_from(["plain", "held", "begin", "dep"])),
    st.tuples(st.sampled_from(["hold", "release", "extend", "cancel", "end", "lost"]), st.integers(0, 50)),
    st.tuples(st.sampled_from(["pass", "full"]), st.just(0)),
), min_size=1, max_size=40)


def _expected(ctl: Controller, now: float) -> tuple[list[tuple], set[int], bool]:
    """The first DEPTH pending jobs (id, reason outside the plan, limit), every running job and
    whether more are pending, from a walk over every active job."""
    states = ctl._dependency_states()
    pending = sorted((-j["priority"], j["submit_time"], j["id"]) for j in ctl.active.values()
                     if j["state"] == State.PENDING.value)
    first = [ctl.active[jid] for _, _, jid in pending[:DEPTH]]
    running = {j["id"] for j in ctl.active.values() if j["state"] == State.RUNNING.value}
    return ([(j["id"], ctl._blocked(j, now, states), j["time_limit"]) for j in first], running,
            len(pending) > DEPTH)


def _controller(path: str) -> tuple[Controller, Store]:
    """A controller over a real store and the embedded inventory's one node, up, with 2 CPUs."""
    inv = config.load(None)
    name = next(iter(inv.node_table()))
    nodes = {name: NodeState(name=name, partition=inv.default_partition(), cpus=2, memory=4096, up=True)}
    store = Store(path)
    return Controller(store, inv, nodes, kill_wait=1.0), store


async def _run(path: str, steps: list[tuple]) -> None:
    ctl, store = _controller(path)
    root = ctl.caller("root", 0)
    try:
        ctl._snapshot(time.time())  # the first pass is a full one
        for op, arg, *rest in steps:
            active = sorted(ctl.active)
            pending = [j for j in active if ctl.active[j]["state"] == State.PENDING.value]
            running = [j for j in active if ctl.active[j]["state"] == State.RUNNING.value]
            if op == "submit":
                kind = rest[0]
                req = {"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n", "chdir": "/tmp",
                       "time_limit": 60, "requeue": True, "hold": kind == "held"}
                if kind == "begin":
                    req["begin"] = time.time() + 3600
                if kind == "dep" and active:
                    req["dependency"] = f"afterok:{active[-1]}"
                for _ in range(arg):
                    await ctl.submit(req, root, ("root", 0, 0))
            elif op in ("hold", "release", "extend", "cancel") and pending:
                jid = pending[arg % len(pending)]
                if op == "extend":
                    await ctl.extend(jid, root, add=60, to=None)
                elif op == "cancel":
                    await ctl.cancel(jid, root)
                else:
                    await ctl.set_hold(jid, root, op == "hold")
            elif op in ("end", "lost") and running:
                await ctl._record_end(running[arg % len(running)], {
                    "reason": "exited" if op == "end" else "lost", "exit_code": 0, "signal": None,
                    "end": time.time()})
            elif op == "pass":
                await ctl.schedule_once()
            elif op == "full":
                ctl._snapshot(time.time())
            while ctl._tasks:  # starts and ends being committed
                await asyncio.gather(*list(ctl._tasks))
            now = time.time()
            want_pending, want_running, want_more = _expected(ctl, now)
            snap = ctl._snapshot(now, DEPTH)
            assert [(v.job_id, v.blocked, v.time_limit) for v in snap.pending] == want_pending, (op, arg)
            assert {r.job_id for r in snap.running} == want_running
            assert ctl._deferred == want_more
            assert all(isinstance(v, scheduler.PendingView) for v in snap.pending)
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(steps=ops)
def test_an_event_pass_sees_what_a_full_walk_sees(tmp_path_factory, steps):
    path = str(tmp_path_factory.mktemp("order") / "melon.db")
    asyncio.run(_run(path, steps))


def test_a_job_is_listed_running_until_its_end_is_committed(tmp_path):
    """Its CPUs are freed for the next plan before the end is durable, but a job that mqueue no
    longer lists must already be ended in the store."""
    async def scenario() -> None:
        ctl, store = _controller(str(tmp_path / "melon.db"))
        root = ctl.caller("root", 0)
        try:
            [jid], _ = await ctl.submit({"cpus": 1, "memory": MIB, "name": "t", "script": "#!/bin/sh\n",
                                         "chdir": "/tmp", "time_limit": 60}, root, ("root", 0, 0))
            await ctl.schedule_once()
            while ctl._tasks:
                await asyncio.gather(*list(ctl._tasks))
            ending = asyncio.ensure_future(ctl._record_end(jid, {"reason": "exited", "exit_code": 0,
                                                                 "signal": None, "end": time.time()}))
            await asyncio.sleep(0)  # out of the active jobs, its end not yet committed
            assert jid not in ctl.active
            assert [(j["id"], j["state"]) for j in ctl.listed_jobs()] == [(jid, State.RUNNING.value)]
            await ending
            assert ctl.listed_jobs() == []
            assert store.job(jid)["state"] == State.COMPLETED.value
        finally:
            await store.close()

    asyncio.run(scenario())
