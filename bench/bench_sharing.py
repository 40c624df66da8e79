"""What sharing costs the scheduler: 100,000 pending jobs from 1,000 users on 1,000 nodes 90% busy.

Run: .venv/bin/python bench/bench_sharing.py [--runs N]

Times, interleaved in one run and reported as ratios to the plain pass (the reference):
- the plain pass: plan() with no limits, every job's priority fixed;
- the same pass with every job counted in its user's QOS pools (MaxJobsPerUser=2,
  MaxTRESPerUser cpu=4) and its account's GrpTRES (cpu=200; 10 accounts), as
  melond.sched.order gives them, so that most jobs are held by a limit;
- recomputing every pending job's priority: Fair Tree over the 1,000 users' decayed usage
  (from 100,000 ended jobs' rows) and the multifactor formula for each of the 100,000 jobs.
Prints the median and the spread (min-max) of each ratio.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

from harness import median_range, summary
from melond.sched import priority as pr
from melond.sched.plan import NodeView, PendingView, RunningView, Snapshot, plan
from melond.sched.sharing import JOBS, AccountRules, QosRules, Sharing

NOW = 1_000_000_000.0
USERS, ACCOUNTS, PENDING, NODES, HISTORY = 1000, 10, 100_000, 1000, 100_000


def _cluster(rnd: random.Random) -> tuple[tuple[NodeView, ...], tuple[RunningView, ...]]:
    nodes = tuple(NodeView(f"n{i:04}", "p", 32, 128 * 1024) for i in range(NODES))
    running, jid = [], 1
    for n in nodes:
        used = 0
        while used < 29:
            c = rnd.choice([1, 2, 4])
            running.append(RunningView(jid, n.name, c, c * 1024, NOW + rnd.randint(60, 86_400)))
            used, jid = used + c, jid + 1
    return nodes, tuple(running)


def _pending(rnd: random.Random) -> list[tuple[PendingView, str]]:
    out = []
    for i in range(PENDING):
        user = f"u{rnd.randrange(USERS):04}"
        view = PendingView(1_000_000 + i, rnd.randint(0, 10_000), NOW - rnd.randint(0, 86_400), rnd.choice([1, 2, 4]),
                           1024, rnd.choice([600, 3600, 86_400]), "p", user=user)
        out.append((view, user))
    return out


def _sharing() -> Sharing:
    accounts = [AccountRules(f"a{k}", users=tuple(f"u{i:04}" for i in range(USERS) if i % ACCOUNTS == k),
                             grp_tres={"cpu": 200}) for k in range(ACCOUNTS)]
    return Sharing(accounts, {}, [QosRules("normal", max_jobs_per_user=2, max_tres_per_user={"cpu": 4})])


def _with_pools(views: list[tuple[PendingView, str]], sharing: Sharing) -> tuple[tuple[PendingView, ...], dict]:
    limits, out = {}, []
    for view, user in views:
        pools = sharing.pools(user, f"a{int(user[1:]) % ACCOUNTS}", "normal")
        limits.update({p.key: (p.caps, p.reasons) for p in pools})
        out.append(replace(view, pools=tuple(p.key for p in pools),
                           tres=(("cpu", view.cpus), ("mem", view.memory), ("node", 1), (JOBS, 1))))
    return tuple(out), limits


def _recompute(rnd_rows: list[tuple[str, float, float, int]], views: list[tuple[PendingView, str]]) -> int:
    usage: dict[tuple[str | None, str], float] = {}
    for user, start, end, cpus in rnd_rows:
        key = (None, user)
        usage[key] = usage.get(key, 0.0) + pr.decayed(float(cpus), start, end, NOW)
    shares = pr.fair_tree(pr.tree({u for _, u in views}, usage))
    weights = pr.Weights()
    total = 0
    for view, user in views:
        f = pr.factors(submitted=view.submit_time, eligible=None, now=NOW, fairshare=shares.get(user, 1.0),
                       cpus=view.cpus, nodes=1, cluster_cpus=NODES * 32, cluster_nodes=NODES, qos_priority=0,
                       max_qos_priority=0, weights=weights)
        total += pr.priority(f, weights)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rnd = random.Random(7)
    nodes, running = _cluster(rnd)
    views = _pending(rnd)
    plain = Snapshot(nodes, running, tuple(v for v, _ in views))
    pooled_views, limits = _with_pools(views, _sharing())
    pooled = Snapshot(nodes, running, pooled_views, limits, {})
    history = [(f"u{rnd.randrange(USERS):04}", NOW - (s := rnd.uniform(0, 60 * 86_400)), NOW - s + rnd.uniform(60, 86_400),
                rnd.choice([1, 2, 4])) for _ in range(HISTORY)]
    times: dict[str, list[float]] = {"plain": [], "pools": [], "priorities": []}
    for _ in range(args.runs):
        for name, work in (("plain", lambda: plan(plain, NOW)), ("pools", lambda: plan(pooled, NOW)),
                           ("priorities", lambda: _recompute(history, views))):
            t0 = time.perf_counter()
            work()
            times[name].append((time.perf_counter() - t0) * 1000)
    held = plan(pooled, NOW)
    limited = sum(1 for r in held.reasons.values() if r.startswith(("QOS", "Assoc")))
    print(f"{USERS:,} users, {PENDING:,} pending, {NODES:,} nodes 90% busy, {HISTORY:,} jobs of history; "
          f"{args.runs} runs, interleaved")
    print(f"{'pass':48} {'ms (median)':>12} {'ratio to plain':>15} {'spread':>13}")
    ratio = {}
    for name, label in (("plain", "plan(), no limits (reference)"),
                        ("pools", f"plan(), every job in 3 limit pools ({limited:,} held)"),
                        ("priorities", "Fair Tree + multifactor for every pending job")):
        ratios = ratio[name] = sorted(t / p for t, p in zip(times[name], times["plain"]))
        print(f"{label:48} {statistics.median(times[name]):>12.1f} {statistics.median(ratios):>14.2f}x "
              f"{ratios[0]:>6.2f}-{ratios[-1]:.2f}")
    summary("sharing", f"{median_range(ratio['pools'], 'x plain plan() with limit pools')}, "
                       f"priorities {median_range(ratio['priorities'], 'x')}")


if __name__ == "__main__":
    main()
