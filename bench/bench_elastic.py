"""Elastic jobs against full limits requested up front, on the same workload and the same node.

A conservative user asks every job for 30 s (they cannot tell which will run long); an elastic
user asks the same jobs for a short first limit with `--time-max 30 --extend-auto 4`. The
workload on one node (its CPUs as the local node has them): a long narrow job, a job that needs
the whole node (so it holds a reservation), then short narrow jobs, then one narrow job that runs
past its first limit when nobody waits behind it, so it must grow. Short limits let the narrow
jobs backfill ahead of the wide job's reservation; the full limits keep them behind it.

Reported per mode, as the median of ROUNDS rounds with the range: makespan (first submission to
last end), mean turnaround, and how many jobs completed or timed out; and elastic/full ratios.
Sleeps burn no CPU, so the machine's drift barely touches these figures; each round is a new
melond in a new state directory.
"""
from __future__ import annotations

import statistics
import time

from harness import job_body, median_range, melond, summary, table

ROUNDS = 3
FULL = 30  # seconds every job asks for up front
# (name, CPUs: 1 or "all", seconds it really runs, elastic first limit)
WORKLOAD = [("long", 1, 10, 12), ("wide", "all", 3, 4)] + [(f"short{i}", 1, 2, 4) for i in range(8)] \
    + [("grows", 1, 6, 4)]


def run(mode: str) -> dict:
    with melond() as (client, _, work, _):
        cpus = client.call("GET", "/nodes")["nodes"][0]["cpus"]
        ids, submitted = [], {}
        start = time.time()
        for name, want, seconds, first in WORKLOAD:
            body = job_body(work, f"sleep {seconds}", name=name, cpus=cpus if want == "all" else want)
            if mode == "full":
                body["time_limit"] = FULL
            else:
                body |= {"time_limit": first, "time_max": FULL, "extend_step": 4}
            jid = client.call("POST", "/jobs", body)["job_ids"][0]
            ids.append(jid)
            submitted[jid] = time.time()
        while True:
            jobs = {jid: client.call("GET", f"/jobs/{jid}") for jid in ids}
            if all(j["state"] not in ("PD", "R") for j in jobs.values()):
                break
            time.sleep(0.2)
        ends = {jid: j["end_time"] for jid, j in jobs.items()}
        return {"makespan": max(ends.values()) - start,
                "turnaround": statistics.mean(ends[j] - submitted[j] for j in ids),
                "completed": sum(j["state"] == "CD" for j in jobs.values()),
                "timed_out": sum(j["state"] == "TO" for j in jobs.values()),
                "steps": sum(1 for j in jobs.values() for e in j["events"]
                             if e["kind"] == "extended" and e["data"].get("via") == "auto"),
                "cpus": cpus}


def main() -> None:
    results = {"full": [], "elastic": []}
    for _ in range(ROUNDS):
        for mode in results:
            results[mode].append(run(mode))

    def cell(mode: str, key: str) -> str:
        values = [r[key] for r in results[mode]]
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
    rows = [[mode, cell(mode, "makespan"), cell(mode, "turnaround"),
             f"{statistics.median(r['completed'] for r in results[mode]):.0f}/{len(WORKLOAD)}",
             f"{statistics.median(r['timed_out'] for r in results[mode]):.0f}",
             f"{statistics.median(r['steps'] for r in results[mode]):.0f}"] for mode in results]
    ratio = {key: [e[key] / f[key] for e, f in zip(results["elastic"], results["full"])]
             for key in ("makespan", "turnaround")}
    rows.append(["elastic / full", *(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                                     for v in ratio.values()), "", "", ""])
    table(f"{len(WORKLOAD)} jobs on one {results['full'][0]['cpus']}-CPU node, {ROUNDS} rounds: "
          f"full limits ({FULL} s) vs elastic (short first limit, --time-max {FULL}, --extend-auto 4)",
          ["mode", "makespan s (range)", "mean turnaround s (range)", "completed", "timed out", "auto steps"], rows)
    summary("elastic", f"makespan {median_range(ratio['makespan'], 'x full limits')}, "
                       f"turnaround {median_range(ratio['turnaround'], 'x')}")


if __name__ == "__main__":
    main()
