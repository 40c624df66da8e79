"""The store's group commit on SQLite and on PostgreSQL, side by side: durable single-job inserts
(one submission each, as mbatch's), from many writers at once, and one 10,000-task array.

Both in this process, through melond's own Store: SQLite in a file (WAL, synchronous=FULL) and
the tests' private PostgreSQL 15 (Unix socket; fsync off there, so its figure is PostgreSQL's
statements and round trips, not its disk). SQLite's is the reference, in the same run.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, median_range, skip, summary, table

sys.path.insert(0, str(REPO))
from melond.spec.states import State  # noqa: E402
from melond.state.job import Job  # noqa: E402
from melond.state.store import Store  # noqa: E402
from tests.pgserver import PgServer, binaries  # noqa: E402

WRITES = 5000
TASKS = 10_000
ROUNDS = 3


def job(**kw) -> Job:
    return Job(user="alice", uid=1000, name="bench", state=State.PENDING, partition="debug", cpus=1,
               memory=1 << 30, time_limit=600, script="#!/bin/sh\ntrue\n", chdir="/tmp", output="o",
               submit_time=time.time(), environment={"PATH": "/usr/bin:/bin"}, **kw)


async def rates(where: str) -> tuple[float, float]:
    """Single inserts a second, and seconds for one array of TASKS."""
    store = Store(where)
    try:
        began = time.perf_counter()
        await asyncio.gather(*(store.write(Store.op_insert_jobs, [job()], "alice", 1.0) for _ in range(WRITES)))
        singles = WRITES / (time.perf_counter() - began)
        began = time.perf_counter()
        await store.write(Store.op_insert_jobs, [job(array_task_id=t) for t in range(TASKS)], "alice", 1.0)
        return singles, time.perf_counter() - began
    finally:
        await store.close()


def main() -> None:
    if binaries() is None or os.geteuid() != 0:
        skip("store", "PostgreSQL is not installed, or not root (its private server runs as nobody)")
    server = PgServer()
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgresql": []}
    try:
        for _ in range(ROUNDS):
            root = Path(tempfile.mkdtemp(prefix="ms-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
            url = server.new_database()
            try:
                results["sqlite"].append(asyncio.run(rates(str(root / "melon.db"))))
                results["postgresql"].append(asyncio.run(rates(url)))
            finally:
                shutil.rmtree(root, ignore_errors=True)
                server.drop_database(url)
    finally:
        server.close()
    rows = []
    for name, got in results.items():
        singles = [g[0] for g in got]
        arrays = [g[1] for g in got]
        ratio = [g[0] / s[0] for g, s in zip(got, results["sqlite"])]
        rows.append([name, median_range(singles, "", 0), median_range(ratio, "x"), median_range(arrays, " s")])
    table(f"The store's group commit, {WRITES:,} single inserts at once and one {TASKS:,}-task array, "
          f"{ROUNDS} rounds", ["database", "inserts/s", "x SQLite", "array"], rows)
    pg = [g[0] for g in results["postgresql"]]
    summary("store", f"{median_range(pg, '', 0)} inserts/s on PostgreSQL, "
                     f"{median_range([p / s[0] for p, s in zip(pg, results['sqlite'])], 'x')} SQLite's")


if __name__ == "__main__":
    main()
