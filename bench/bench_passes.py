"""The scheduling passes melond makes, made by its own scheduling loop (SchedulingLoop.run_once)
on job records in memory: the node views, the pending order kept between passes, plan(), the
starts and the pending reasons' changes.

Two passes at each size (1,000 to 100,000 pending on 10, 100 and 1,000 nodes of 32 CPUs and 4
GPUs, 90% busy, the queue's jobs mixed: a tenth spanning 2 to 4 nodes, a sixth asking for GPUs,
priorities spread as fair-share spreads them):
- full: the backfill pass, over the first FULL_PASS_DEPTH pending jobs in the kept order;
- one end: the pass after one running job ends (an event's pass: the first QUEUE_DEPTH, no backfill).
Each is the median of ROUNDS passes, with its spread. The reference is the machine's floor for
the same queue, measured in the same run: one walk over the pending jobs' records reading an
attribute of each; `x floor` is the full pass over it.
`--json`: the last line is the points as JSON instead (bench/run --plot draws them).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

from harness import median_range, summary, table
from melond.engine.jobs import JobTable
from melond.engine.scheduling import SchedulingLoop
from melond.engine.tasks import Tasks
from melond.nodes.state import NodeState
from melond.sched.order import PendingOrder
from melond.sched.plan import NodeView
from melond.spec.gres import Device
from melond.spec.states import State
from melond.state.job import Job

NOW = 1_000_000.0
MIB = 1 << 20
CPUS, GPUS, MEMORY = 32, 4, 128 * 1024  # each node; MiB
PENDING = (1_000, 10_000, 100_000)
NODES = (10, 100, 1_000)
ROUNDS = 7
HEADLINE = (100_000, 1_000)


def _job(jid: int, **kw) -> Job:
    return Job(id=jid, user="u", uid=1000, name="j", partition="main", **{"submit_time": NOW - 60, **kw})


def cluster(nodes: int, pending: int, rnd: random.Random) -> tuple[tuple[NodeView, ...], dict[int, Job]]:
    """Nodes 90% busy with running jobs ending over a week (a tenth unlimited), and the queue."""
    views = tuple(NodeView(f"n{i:04}", "main", CPUS, MEMORY, devices=(("gpu", None),) * GPUS) for i in range(nodes))
    jobs: dict[int, Job] = {}
    jid = 1
    for node in views:
        used = 0
        while used < CPUS * 0.9:
            c = min(rnd.choice([1, 2, 4]), CPUS - used)
            jobs[jid] = _job(jid, state=State.RUNNING, cpus=c, cpus_per_task=c, memory=c * 1024 * MIB, node=node.name,
                             time_limit=0 if rnd.random() < 0.1 else rnd.randint(60, 7 * 86_400), start_time=NOW)
            used += c
            jid += 1
    for _ in range(pending):
        c = rnd.choice([1, 2, 4, 8])
        extra: dict = {}
        kind = rnd.random()
        if kind < 0.1:  # spanning: -N 2-4, c tasks of one CPU on each
            n = rnd.choice([2, 4])
            extra = dict(nodes_min=n, nodes_max=n, ntasks=n * c, cpus=n * c, cpus_per_task=1)
        elif kind < 0.27:
            extra = dict(gres=f"gpu:{rnd.choice([1, 2])}")
        jobs[jid] = _job(jid, **{"cpus": c, "cpus_per_task": c, **extra,
                                  "memory": rnd.choice([512, 1024, 4096]) * MIB,
                                  "time_limit": rnd.choice([600, 3600, 4 * 3600, 86_400]),
                                  "priority": rnd.randint(0, 10_000), "submit_time": NOW - rnd.randint(0, 86_400)})
        jid += 1
    return views, jobs


class Passes:
    """melond's scheduling loop (melond.engine.scheduling.SchedulingLoop) over job records in
    memory, its passes made as the daemon makes them: the node views, the kept order, plan(),
    the starts pinned and handed on, the pending reasons' changes. Left out, as they run after
    the pass: the store's writes (its thread, in melond) and the starts on the nodes."""

    def __init__(self, nodes: tuple[NodeView, ...], jobs: dict[int, Job]) -> None:
        self.table = JobTable(jobs.values())
        states = {v.name: NodeState(v.name, v.partition, v.cpus, v.memory, up=True,
                                    devices=tuple(Device(name, kind, i, None) for i, (name, kind) in enumerate(v.devices)))
                  for v in nodes}
        self.order = PendingOrder({}, stopped=self.table.stopped)
        self.loop = SchedulingLoop(self.table, states, self.order, _Unwritten(), _started, Tasks())

    async def once(self, full: bool) -> float:
        self.loop.kick()  # something ended: room may be free
        t0 = time.perf_counter()
        self.loop.run_once(full)
        took = (time.perf_counter() - t0) * 1000
        await asyncio.sleep(0)  # the writes and starts it handed on
        return took

    def end_one(self, rnd: random.Random) -> None:
        """A running job ends, as melond.engine.ends records it."""
        running = [j for j in self.table.active.values() if j.state is State.RUNNING and j.time_limit]
        job = rnd.choice(running)
        self.table.ending_begins(job)
        self.table.ending_done(job.id)
        self.table.finished(job.id)


class _Unwritten:
    """The store, as far as a pass uses it: its writes are not part of the pass."""

    def states(self, ids: set[int]) -> dict:
        return {}

    async def write(self, op: object, *args: object) -> bool:
        return True


async def _started(job: Job, node: str, now: float) -> None:
    """The dispatcher: a start's record and its launch on the node are not part of the pass."""


def floor(jobs: dict[int, Job]) -> float:
    pending = [j for j in jobs.values() if j.state is State.PENDING]
    t0 = time.perf_counter()
    for job in pending:
        job.priority  # noqa: B018 - the read is what is timed
    return (time.perf_counter() - t0) * 1000


async def measure(nodes: int, pending: int, rounds: int) -> dict:
    rnd = random.Random(nodes * 7 + pending)
    views, jobs = cluster(nodes, pending, rnd)
    passes = Passes(views, jobs)
    first = await passes.once(True)  # the walk over every job, and the starts that fill the nodes
    full, event, floors = [], [], []
    for _ in range(rounds):
        full.append(await passes.once(True))
        floors.append(floor(passes.table.active))
        passes.end_one(rnd)
        event.append(await passes.once(False))
    return {"nodes": nodes, "pending": pending, "first_ms": first, "full_ms": full, "event_ms": event,
            "floor_ms": floors, "ratio": [f / w for f, w in zip(full, floors)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", action="store_true", help="end with the points as JSON")
    parser.add_argument("--largest", action="store_true", help="only 100,000 pending on 1,000 nodes")
    args = parser.parse_args()
    sizes = [HEADLINE] if args.largest else [(p, n) for n in NODES for p in PENDING]
    rows, points = [], []
    for pending, nodes in sizes:
        m = asyncio.run(measure(nodes, pending, args.rounds))
        points.append({"nodes": nodes, "pending": pending, "full_ms": statistics.median(m["full_ms"]),
                       "event_ms": statistics.median(m["event_ms"])})
        rows.append([f"{nodes:,}", f"{pending:,}", f"{m['first_ms']:.0f}", median_range(m["full_ms"], "", 1),
                     median_range(m["event_ms"], "", 1), median_range(m["floor_ms"], "", 1),
                     median_range(m["ratio"], "x", 1)])
        print(f"{nodes:>6,} nodes {pending:>8,} pending: full {statistics.median(m['full_ms']):.1f} ms, "
              f"one end {statistics.median(m['event_ms']):.1f} ms", flush=True)
        if (pending, nodes) == HEADLINE:
            headline = m
    table("Scheduling passes (ms; median (min-max))",
          ["nodes", "pending", "first", "full", "one end", "floor", "full x floor"], rows)
    if args.json:
        print(json.dumps(points))
        return
    summary("passes", f"{median_range(headline['full_ms'], ' ms', 0)} a full pass, "
                      f"{median_range(headline['event_ms'], ' ms', 1)} after one end "
                      f"(100,000 pending x 1,000 nodes; {median_range(headline['ratio'], 'x', 1)} the walk's floor)")


if __name__ == "__main__":
    main()
