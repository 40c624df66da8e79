"""The web UI's job list over 1,000,000 stored jobs: one page (50 rows) per filter and sort,
beside the floor (`GET /whoami` on the same connection: the API's own cost per request).

Pages are keyset pages off indexes (melond/state/pages.py), so each should cost about the same
whatever the sort or how deep the page; the query plans are printed, and none may sort.
Each round times the floor and every page in turn, so the ratios are taken at the same moment.
"""
from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from harness import REPO, median_range, serving, summary, table

ROWS = 1_000_000
ROUNDS = 15
STATES = ["COMPLETED"] * 8 + ["FAILED", "TIMEOUT", "CANCELLED"]


def fill(db_path: Path, now: float) -> None:
    sys.path.insert(0, str(REPO))
    from melond.state.store import Store  # noqa: E402 - the schema and indexes, exactly as melond makes them

    asyncio.run(Store(str(db_path)).close())
    conn = sqlite3.connect(db_path)
    rng = random.Random(11)
    first = now - 100 * 86400
    rows = []
    for i in range(ROWS):
        submit = first + i * (100 * 86400 / ROWS)
        start = submit + rng.uniform(0, 60)
        rows.append((f"user{i % 50}", 1000 + i % 50, f"{rng.choice(['align', 'train', 'sim', 'post'])}-{i % 997}",
                     rng.choice(STATES), rng.choice(["main", "long"]), 1, 1 << 30, rng.choice([600, 3600, 86400]),
                     "#!/bin/sh\ntrue\n", "/tmp", "melon-%j.out", submit, start, start + rng.uniform(1, 3600),
                     f"n{i % 40}", 0))
    conn.executemany(
        "INSERT INTO jobs (user, uid, name, state, partition, cpus, memory, time_limit, script, chdir, output, "
        "submit_time, start_time, end_time, node, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows)
    conn.commit()
    conn.close()


PAGES = {
    "newest first": "all=1&limit=50",
    "by name": "all=1&limit=50&sort=name",
    "by end time, latest first": "all=1&limit=50&sort=-end_time",
    "longest limit first": "all=1&limit=50&sort=-time_limit",
    "one user's": "all=1&limit=50&user=user7",
    "name prefix": "all=1&limit=50&name=train-5",
    "failed, by node": "state=F&limit=50&sort=node",
    "one node's, by start": "all=1&limit=50&node=n3&sort=-start_time",
}


async def measure(sock: Path) -> tuple[list[float], dict[str, list[float]], dict[str, int]]:
    conn = aiohttp.UnixConnector(path=str(sock))
    floor: list[float] = []
    times: dict[str, list[float]] = {k: [] for k in [*PAGES, "page 2,000 (after a cursor)"]}
    totals: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=conn) as s:
        async def get(query: str) -> tuple[float, dict]:
            t = time.perf_counter()
            async with s.get(f"http://melond/api/v1/jobs?{query}&fields=id,name,user,state,node,end_time,"
                             "start_time,time_limit") as r:
                body = await r.json()
                assert r.status == 200, body
            return (time.perf_counter() - t) * 1000, body

        deep = None  # a cursor 100,000 rows in: read once, page by page, then timed like the rest
        query = PAGES["newest first"]
        for _ in range(2000):
            _, body = await get(query + (f"&after={deep}" if deep else ""))
            deep = body["next"]
        for _ in range(ROUNDS):
            t = time.perf_counter()
            async with s.get("http://melond/api/v1/whoami") as r:
                await r.read()
            floor.append((time.perf_counter() - t) * 1000)
            for name, q in PAGES.items():
                ms, body = await get(q)
                times[name].append(ms)
                totals[name] = body["total"]
            ms, body = await get(f"{PAGES['newest first']}&after={deep}")
            times["page 2,000 (after a cursor)"].append(ms)
            totals["page 2,000 (after a cursor)"] = body["total"]
    return floor, times, totals


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mb-list-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
    state = root / "state"
    state.mkdir(mode=0o700)
    t = time.perf_counter()
    fill(state / "melon.db", time.time())
    print(f"wrote {ROWS:,} jobs in {time.perf_counter() - t:.1f} s")
    sys.path.insert(0, str(REPO))
    from melond.state import pages  # noqa: E402
    conn = sqlite3.connect(state / "melon.db")
    for sort in ("id", "name", "-end_time", "node"):
        column, descending = pages.parse_sort(sort)
        for sql, params in pages.segments(pages.PageRequest(sort=column, descending=descending)):
            plan = "; ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            print(f"plan, sort={sort}: {plan}")
    conn.close()
    with serving(root) as sock:
        floor, times, totals = asyncio.run(measure(sock))
    rows = [["floor: GET /whoami", "", f"{statistics.median(floor):.1f}", f"{min(floor):.1f}", "1.0"]]
    pages_ms, pages_ratio = [], []
    for name, values in times.items():
        ratios = sorted(v / f for v, f in zip(values, floor))
        pages_ms.append(statistics.median(values))
        pages_ratio.append(statistics.median(ratios))
        rows.append([name, f"{totals[name]:,}", f"{statistics.median(values):.1f}", f"{min(values):.1f}",
                     f"{statistics.median(ratios):.1f} ({ratios[0]:.1f}-{ratios[-1]:.1f})"])
    table(f"one page of 50 among {ROWS:,} stored jobs, {ROUNDS} rounds",
          ["page", "matching", "median ms", "min ms", "ratio to floor (median, range)"], rows)
    # Every page should cost about the same: the median page, and the range from the cheapest to the dearest.
    summary("job_list", f"{median_range(pages_ms, ' ms a page', 1)}, {statistics.median(pages_ratio):.1f}x floor")


if __name__ == "__main__":
    main()
