"""Trivial jobs on the embedded local node.

- 1,000 `true` jobs from submit to all recorded complete (target: >= 200 jobs/s);
- submit-to-start latency on an idle node, one job at a time (target: p50 <= 50 ms),
  from melond's own submit and start times in the store.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time


from harness import job_body, median_range, melond, pct, submit_concurrently, summary, table

JOBS = 1000
RUNS = 3  # this figure swings by +-15% from run to run on a shared 2-core VM
LATENCY_SAMPLES = 50


def submit_all(sock: str, body: bytes, count: int, clients: int = 16) -> list[int]:
    return asyncio.run(submit_concurrently(sock, body, count, clients))[0]


def wait_all_done(client, ids: list[int]) -> None:
    """Long-poll the last job, then check that nothing is left pending or running."""
    while client.call("GET", f"/jobs/{max(ids)}", query={"wait": 60})["state"] in ("PD", "R"):
        pass
    while client.call("GET", "/jobs")["jobs"]:
        time.sleep(0.005)


def throughput() -> list:
    with melond() as (client, state, work, _):
        body = json.dumps(job_body(work, "true", memory=16 << 20, time_limit=60)).encode()
        start = time.perf_counter()
        ids = submit_all(f"{state}/melond.sock", body, JOBS)
        submitted = time.perf_counter() - start
        wait_all_done(client, ids)
        elapsed = time.perf_counter() - start
        done = client.call("GET", "/jobs", query={"state": "CD", "ids": ",".join(map(str, ids))})["jobs"]
        assert len(done) == JOBS, f"only {len(done)} of {JOBS} completed"
        cpus = client.call("GET", "/nodes")["nodes"][0]["cpus"]
        return [JOBS, cpus, f"{submitted:.2f}", f"{elapsed:.2f}", f"{JOBS / elapsed:.0f}"]


def latency() -> list:
    with melond() as (client, state, work, _):
        lat = []
        for _ in range(LATENCY_SAMPLES):
            jid = client.call("POST", "/jobs", job_body(work, "true", memory=16 << 20, time_limit=60))["job_ids"][0]
            job = client.call("GET", f"/jobs/{jid}", query={"wait": 10})
            lat.append((job["start_time"] - job["submit_time"]) * 1000)
        return [LATENCY_SAMPLES, f"{statistics.median(lat):.1f}", f"{pct(lat, 0.9):.1f}", f"{max(lat):.1f}"]


def main() -> None:
    rows = [throughput() for _ in range(RUNS)]
    rates = [float(r[4]) for r in rows]
    rows.append(["median", "", "", "", f"{statistics.median(rates):.0f}"])
    table("1,000 trivial jobs on the local node", ["jobs", "node cpus", "submit s", "all done s", "jobs/s"], rows)
    start = latency()
    table("Submit-to-start latency, idle local node (ms)", ["samples", "p50", "p90", "max"], [start])
    summary("throughput", f"{median_range(rates, ' jobs/s', 0)}, submit-to-start p50 {start[1]} ms")


if __name__ == "__main__":
    main()
