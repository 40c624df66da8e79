"""Durable submissions through the API from concurrent clients (target: >= 2,000 jobs/s).

Each submission is acknowledged only after its group commit (WAL, synchronous=FULL) returns.
Jobs are submitted held so that the measurement is of the submit path, not of running them.
"""
from __future__ import annotations

import asyncio
import json

from harness import job_body, melond, submit_concurrently, summary, table

TOTAL = 6000


def run(sock: str, work, clients: int) -> tuple[float, list[float]]:
    body = json.dumps(job_body(work, hold=True, memory=1 << 20, time_limit=60)).encode()
    _, latencies, elapsed = asyncio.run(submit_concurrently(sock, body, TOTAL, clients))
    return elapsed, latencies


def main() -> None:
    rows, rates = [], {}
    for clients in (1, 8, 32, 64):
        with melond() as (client, state, work, _):
            elapsed, lat = run(f"{state}/melond.sock", work, clients)
            stored = len(client.call("GET", "/jobs", query={"state": "PD"})["jobs"])
            assert stored == TOTAL, f"{stored} of {TOTAL} submissions stored"
            lat.sort()
            rates[clients] = TOTAL / elapsed
            rows.append([clients, TOTAL, f"{rates[clients]:.0f}", f"{lat[len(lat) // 2]:.1f}",
                         f"{lat[int(len(lat) * 0.99)]:.1f}"])
    table("Durable submissions through the API (Unix socket, one job per request)",
          ["clients", "jobs", "jobs/s", "p50 ms", "p99 ms"], rows)
    most = max(rates)
    summary("submit", f"{rates[most]:,.0f} jobs/s at {most} clients")


if __name__ == "__main__":
    main()
