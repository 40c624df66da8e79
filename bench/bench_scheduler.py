"""Time plan() on typical and worst-ish snapshots; prints scenario -> median ms per plan.

Run: .venv/bin/python bench/bench_scheduler.py [--runs N] [--against REV | --curve]
Targets (one core): < 20 ms for 1,000 pending x 3 nodes, < 200 ms for 10,000 pending x 100 nodes.
Rows in pairs ("  same, ...") are one situation planned twice: with 10% of the jobs spanning
nodes, or on GPU nodes with a third of the jobs asking for GPUs, the second time; their ratio is
what that costs the scheduler, measured in the same run. --against REV also times the plan() of
git revision REV on the scenarios without GPUs, interleaved with today's, and prints the ratio.
--curve times plan() as the queue grows (1,000 to 100,000 pending) on 10, 100 and 1,000 nodes
90% busy, and prints the points as JSON on its last line (bench/run --plot draws them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import subprocess
import sys
import time
import types
from dataclasses import replace

from harness import median_range, summary
from melond.sched.plan import NodeView, PendingView, RunningView, Snapshot, plan
from melond.spec.gres import Gres
from melond.spec.shape import make_shape

NOW = 1_000_000.0
GiB = 1024
HEADLINE = "10k pending, 100 nodes 90% busy"  # the target's situation: < 200 ms
CURVE_PENDING = (1_000, 10_000, 100_000)
CURVE_NODES = (10, 100, 1_000)


def _nodes(count: int, cpus: int, memory: int, partitions: int = 1) -> tuple[NodeView, ...]:
    return tuple(NodeView(f"n{i:03}", f"p{i % partitions}", cpus, memory, True) for i in range(count))


def _pending(rnd: random.Random, count: int, partitions: int = 1, sizes=(1, 2, 4, 8), mem=(512, 1024, 4096)):
    return tuple(
        PendingView(
            job_id=10_000 + i,
            priority=rnd.randint(0, 10),
            submit_time=NOW - rnd.randint(0, 86_400),
            cpus=rnd.choice(sizes),
            memory=rnd.choice(mem),
            time_limit=rnd.choice([600, 3600, 4 * 3600, 86_400, 0]),
            partition=f"p{i % partitions}",
        )
        for i in range(count)
    )


def _fill(rnd: random.Random, nodes, fraction: float, mem_per_cpu: int = 1024) -> tuple[RunningView, ...]:
    """Running jobs using about ``fraction`` of each node's CPUs, ending at scattered times."""
    running, job_id = [], 1
    for n in nodes:
        used = 0
        while used < n.cpus * fraction:
            c = min(rnd.choice([1, 2, 4]), n.cpus - used)
            end = None if rnd.random() < 0.1 else NOW + rnd.randint(60, 7 * 86_400)
            running.append(RunningView(job_id, n.name, c, c * mem_per_cpu, end, None))
            used += c
            job_id += 1
    return tuple(running)


def _backfill_heavy(rnd: random.Random, nodes, exclude: frozenset[str] = frozenset()) -> Snapshot:
    """100 whole-node jobs hold reservations; 9,900 one-CPU jobs, each shorter than the last,
    all pass the free-now test and none is dominated, so each one searches every node's profile."""
    top = [PendingView(i, 100, NOW, nodes[0].cpus, 1024, 3600, "p0") for i in range(1, 101)]
    rest = [
        PendingView(1000 + i, 0, NOW, 1, 1024, 10 * 86_400 - 60 * i, "p0", exclude=exclude)
        for i in range(9900)
    ]
    return Snapshot(nodes, _fill(rnd, nodes, 0.9), tuple(top + rest))


def _spanning(rnd: random.Random, pending: tuple[PendingView, ...], share: float) -> tuple[PendingView, ...]:
    """Make `share` of the pending jobs span nodes: -N 2 to 8, or -n up to 64 tasks with no -N."""
    out = []
    for job in pending:
        if rnd.random() < share:
            nodes = rnd.choice([2, 4, 8, None])
            shape = make_shape(nodes=(nodes, nodes) if nodes else None, ntasks=None if nodes else rnd.randint(8, 64),
                               cpus_per_task=rnd.choice([1, 2, 4]))
            job = replace(job, shape=shape, memory=rnd.choice([1024, 4096]))
        out.append(job)
    return tuple(out)


def _gpu_nodes(nodes, gpus: int = 8) -> tuple[NodeView, ...]:
    return tuple(replace(n, devices=(("gpu", "a100"),) * gpus) for n in nodes)


def _gpu_fill(rnd: random.Random, running, gpus: int = 8) -> tuple[RunningView, ...]:
    """The same running jobs, each holding a GPU where its node has one left."""
    held: dict[str, int] = {}
    out = []
    for r in running:
        k = held.get(r.node, 0)
        if k < gpus and rnd.random() < 0.8:
            held[r.node] = k + 1
            r = replace(r, devices=(k,))
        out.append(r)
    return tuple(out)


def _gpu_jobs(rnd: random.Random, pending, share: float) -> tuple[PendingView, ...]:
    return tuple(replace(j, gres=(Gres("gpu", None, rnd.choice([1, 2, 4])),)) if rnd.random() < share else j
                 for j in pending)


def scenarios() -> dict[str, Snapshot]:
    rnd = random.Random(42)
    one = _nodes(1, 2, 4 * GiB)
    three = _nodes(3, 16, 64 * GiB)
    hundred = _nodes(100, 64, 256 * GiB, partitions=4)
    one_part = _nodes(100, 64, 256 * GiB)
    thousand = _nodes(1000, 32, 128 * GiB)
    busy = _fill(rnd, thousand, 0.9)
    wide_base = _pending(rnd, 10_000)
    return {
        "1k pending, 1 full 2-CPU node": Snapshot(
            one, (RunningView(1, "n000", 2, 2 * GiB, NOW + 3600, None),), _pending(rnd, 1000, sizes=(1, 2))
        ),
        "1k pending, 3 nodes half busy": Snapshot(three, _fill(rnd, three, 0.5), _pending(rnd, 1000)),
        "1k pending, 3 idle nodes": Snapshot(three, (), _pending(rnd, 1000)),
        "10k pending, 100 full nodes": Snapshot(hundred, _fill(rnd, hundred, 1.0), _pending(rnd, 10_000, 4)),
        "10k pending, 100 nodes 90% busy": Snapshot(hundred, _fill(rnd, hundred, 0.9), _pending(rnd, 10_000, 4)),
        "10k pending, 100 idle nodes": Snapshot(hundred, (), _pending(rnd, 10_000, 4)),
        "10k pending, 100 nodes memory-bound": Snapshot(
            hundred, _fill(rnd, hundred, 0.5, mem_per_cpu=8 * GiB), _pending(rnd, 10_000, 4, mem=(64 * GiB,))
        ),
        "10k pending, 100 nodes, backfill-heavy": _backfill_heavy(rnd, one_part),
        "  same, every job with --exclude": _backfill_heavy(rnd, one_part, frozenset({"n000"})),
        "10k pending, 1,000 nodes 90% busy": Snapshot(thousand, busy, wide_base),
        "  same, 10% of them spanning nodes": Snapshot(thousand, busy, _spanning(rnd, wide_base, 0.1)),
        "  same, on 8-GPU nodes, 1/3 asking GPUs": Snapshot(_gpu_nodes(thousand), _gpu_fill(rnd, busy),
                                                          _gpu_jobs(rnd, wide_base, 1 / 3)),
    }


def curve(runs: int) -> list[dict]:
    """plan()'s median ms for each queue length on each cluster size (32-CPU nodes, 90% busy): how
    its time grows, which the fixed scenarios show at one size each."""
    rnd = random.Random(42)
    points = []
    for count in CURVE_NODES:
        nodes = _nodes(count, 32, 128 * GiB)
        busy = _fill(rnd, nodes, 0.9)
        for pending in CURVE_PENDING:
            snap = Snapshot(nodes, busy, _pending(rnd, pending))
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                plan(snap, NOW)
                times.append((time.perf_counter() - t0) * 1000)
            points.append({"nodes": count, "pending": pending, "ms": statistics.median(times)})
            print(f"{count:>6,} nodes {pending:>8,} pending {statistics.median(times):>9.1f} ms", flush=True)
    return points


def _old_plan(rev: str):
    """plan() as it was at git revision `rev`, and a way to give it today's snapshots."""
    source = subprocess.run(["git", "show", f"{rev}:melond/sched/plan.py"], capture_output=True, text=True,
                            check=True).stdout
    old = types.ModuleType("old_plan")
    sys.modules["old_plan"] = old  # dataclasses look their module up
    exec(compile(source, "old_plan.py", "exec"), old.__dict__)

    def convert(snap: Snapshot):
        def as_old(cls, value):
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name in names})
        return old.Snapshot(tuple(as_old(old.NodeView, n) for n in snap.nodes),
                            tuple(as_old(old.RunningView, r) for r in snap.running),
                            tuple(as_old(old.PendingView, p) for p in snap.pending))
    return old.plan, convert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="also time plan() of this git revision, interleaved")
    parser.add_argument("--curve", action="store_true", help="time plan() as the queue grows; print JSON points")
    args = parser.parse_args()
    if args.curve:
        print(json.dumps(curve(args.runs)))
        return
    old_plan, convert = _old_plan(args.against) if args.against else (None, None)
    print(f"{'scenario':40} {'nodes':>5} {'pending':>7} {'starts':>6} {'ms/plan':>8}"
          + (f" {args.against[:10] + ' ms':>13} {'ratio':>6}" if old_plan else ""))
    headline, against = 0.0, []
    for name, snap in scenarios().items():
        gpus = any(n.devices for n in snap.nodes)
        before = convert(snap) if old_plan and not gpus else None
        times, old_times = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = plan(snap, NOW)
            times.append((time.perf_counter() - t0) * 1000)
            if before is not None:
                t0 = time.perf_counter()
                old_plan(before, NOW)
                old_times.append((time.perf_counter() - t0) * 1000)
        line = (f"{name:40} {len(snap.nodes):>5} {len(snap.pending):>7} {len(result.starts):>6} "
                f"{statistics.median(times):>8.2f}")
        if old_times:
            ratios = sorted(t / o for t, o in zip(times, old_times))
            line += f" {statistics.median(old_times):>13.2f} {statistics.median(ratios):>5.2f}x " \
                    f"({ratios[0]:.2f}-{ratios[-1]:.2f})"
            against.append(statistics.median(ratios))
        if name == HEADLINE:
            headline = statistics.median(times)
        print(line)
    # The reference, where one is measured, is the older plan(): its ratio per scenario, and their range.
    versus = f", {median_range(against, 'x ' + args.against[:10])} over {len(against)} scenarios" if against else ""
    summary("scheduler", f"{headline:.1f} ms a plan ({HEADLINE}){versus}")


if __name__ == "__main__":
    main()
