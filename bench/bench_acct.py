"""`macct -S` over one day among 1,000,000 stored jobs (target: <= 1 s), beside the Python floor.

The rows are written straight into a fresh melond database (its own schema, made by the Store),
100 days of finished jobs, 10,000 a day; then melond starts on it and `macct` asks for one day,
every user, as `sacct -a -S DAY -E DAY+1` would. Each round also times the floor (a bare
`python -I` sending one request over the socket), so the ratio is measured on the same machine
at the same moment. The query plan is printed too: it must read the day through jobs_end.
"""
from __future__ import annotations

import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BIN, REPO, floor_command, median_range, run_ms, serving, summary, table

ROWS = 1_000_000
DAYS = 100
ROUNDS = 10


def fill(db_path: Path, now: float, keep=None) -> int:
    """The ROWS jobs into a fresh database (or those whose end time `keep` accepts): how many."""
    sys.path.insert(0, str(REPO))
    from melond.state.store import Store  # noqa: E402 - the schema, exactly as melond makes it

    asyncio_free_store = Store(str(db_path))
    import asyncio
    asyncio.run(asyncio_free_store.close())
    conn = sqlite3.connect(db_path)
    rng = random.Random(7)
    states = ["COMPLETED"] * 8 + ["FAILED", "TIMEOUT", "CANCELLED"]
    first = now - DAYS * 86400
    rows = []
    for i in range(ROWS):
        submit = first + i * (DAYS * 86400 / ROWS)
        start = submit + rng.uniform(0, 60)
        end = start + rng.uniform(1, 3600)
        if keep is not None and not keep(end):
            rng.choice(states), rng.uniform(0, 3600), rng.randrange(1 << 20, 1 << 32)  # a kept row's draws
            continue
        rows.append((f"user{i % 50}", 1000 + i % 50, "job", rng.choice(states), "main", 1, 1 << 30, 3600,
                     "#!/bin/sh\ntrue\n", "/tmp", "melon-%j.out", submit, start, end, "n1", 0,
                     rng.uniform(0, 3600), rng.randrange(1 << 20, 1 << 32)))
    conn.executemany(
        "INSERT INTO jobs (user, uid, name, state, partition, cpus, memory, time_limit, script, chdir, output, "
        "submit_time, start_time, end_time, node, exit_code, cpu_time, max_rss) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return len(rows)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mb-acct-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
    state = root / "state"
    state.mkdir(mode=0o700)
    now = time.time()
    t = time.perf_counter()
    fill(state / "melon.db", now)
    print(f"wrote {ROWS:,} jobs over {DAYS} days in {time.perf_counter() - t:.1f} s")
    sys.path.insert(0, str(REPO))
    from melond.state.store import ACCOUNTING_COLUMNS, accounting_query  # noqa: E402
    day_start = now - 50 * 86400
    day_end = day_start + 86400
    conn = sqlite3.connect(state / "melon.db")
    sql, params = accounting_query(day_start, day_end, None, None, None, ACCOUNTING_COLUMNS)
    plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    print("query plan:", "; ".join(row[-1] for row in plan))
    conn.close()
    with serving(root) as sock:
        env = {**os.environ, "MELON_API": f"unix:{sock}"}
        stamp = "%Y-%m-%dT%H:%M:%S"
        day = [str(BIN / "macct"), "-a", "-n", "-P", "-S", time.strftime(stamp, time.localtime(day_start)),
               "-E", time.strftime(stamp, time.localtime(day_end))]
        count = len(subprocess.run(day, env=env, check=True, capture_output=True, text=True).stdout.splitlines())
        floor, acct = [], []
        for _ in range(ROUNDS):
            floor.append(run_ms(floor_command(str(sock)), env))
            acct.append(run_ms(day, env))
        ratios = sorted(a / f for a, f in zip(acct, floor))
        table(f"macct over one day ({count:,} jobs) among {ROWS:,} stored, {ROUNDS} rounds",
              ["command", "median ms", "min ms", "ratio to floor (median)", "<= 1 s"],
              [["floor (python -I, one request)", f"{statistics.median(floor):.1f}", f"{min(floor):.1f}", "1.00", ""],
               ["macct -a -P -S DAY -E DAY+1", f"{statistics.median(acct):.1f}", f"{min(acct):.1f}",
                f"{statistics.median(ratios):.1f} ({ratios[0]:.1f}-{ratios[-1]:.1f})",
                "yes" if statistics.median(acct) <= 1000 else "NO"]])
    summary("acct", f"{statistics.median(acct):.0f} ms, {median_range(ratios, 'x floor', 1)}")


if __name__ == "__main__":
    main()
