"""melond at 10, 100 and 1,000 nodes, simulated (melond/nodes/simulated.py: the helper's
protocol with jobs that are a duration and no processes, so melond's sessions, store, scheduler
and API are the real ones): the time until every node is up, melond's memory per node, its idle
CPU with every node connected and nothing running, and its sustained dispatch, 10,000 `true`
array tasks submitted to all ended.

Each size runs in its own melond, in turn, ROUNDS times; the figures per node are differences
between two sizes of the same round (the fixed costs cancel), and dispatch is a ratio to the
same 10,000 tasks over 10 nodes measured in that round.
`--json`: the last line is each size's medians as JSON instead (bench/run --plot draws them).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from harness import BIN, Client, job_body, table

SIZES = (10, 100, 1000)
ROUNDS = 3
TASKS = 10_000
IDLE = 10.0  # seconds of idle CPU measured
CPUS, MEMORY = 64, "256G"


class Melond:
    """melond over `nodes` simulated nodes, in a state dir of its own."""

    def __init__(self, nodes: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ms-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
        inventory = self.root / "inventory.toml"
        inventory.write_text("".join(
            f'[nodes.sim{i:04d}]\nsimulate = true\ncpus = {CPUS}\nmemory = "{MEMORY}"\n' for i in range(nodes)))
        self.work = self.root / "work"
        self.work.mkdir()
        began = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(self.root / "state"), "--inventory",
                                      str(inventory), "--log-level", "WARNING"],
                                     stderr=open(self.root / "melond.log", "wb"))
        self.client = Client(f"unix:{self.root}/state/melond.sock", timeout=120)
        while True:
            try:
                listed = self.client.call("GET", "/nodes")["nodes"]
                if len(listed) == nodes and all(n["state"] != "down" for n in listed):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.perf_counter() - began > 300:
                raise RuntimeError((self.root / "melond.log").read_text()[-3000:])
            time.sleep(0.05)
        self.up = time.perf_counter() - began
        self.ps = psutil.Process(self.proc.pid)

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / (1 << 20)

    def idle_cpu(self) -> float:
        """melond's CPU over IDLE seconds with nothing to do, as a share of one core."""
        before = sum(self.ps.cpu_times()[:2])
        time.sleep(IDLE)
        return (sum(self.ps.cpu_times()[:2]) - before) / IDLE

    def dispatch(self) -> float:
        """TASKS `true` tasks (one array submission) to all ended: jobs per second."""
        began = time.perf_counter()
        first = self.client.call("POST", "/jobs", job_body(self.work, array=f"1-{TASKS}"))["job_ids"][0]
        while True:
            left = self.client.call("GET", "/jobs", query={"state": "PD,R", "fields": "id"})["jobs"]
            if not left:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        assert first
        return TASKS / elapsed

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)


def main(as_json: bool = False) -> None:
    up: dict[int, list[float]] = {n: [] for n in SIZES}
    rss: dict[int, list[float]] = {n: [] for n in SIZES}
    idle: dict[int, list[float]] = {n: [] for n in SIZES}
    rate: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(ROUNDS):
        for n in SIZES:
            m = Melond(n)
            try:
                up[n].append(m.up)
                time.sleep(2)  # the first pings settle
                rss[n].append(m.rss_mib())
                idle[n].append(m.idle_cpu())
                rate[n].append(m.dispatch())
            finally:
                m.stop()
    base = SIZES[0]
    rows = []
    for n in SIZES:
        per_node = [(r - b) / (n - base) for r, b in zip(rss[n], rss[base])] if n != base else []
        ratio = [r / b for r, b in zip(rate[n], rate[base])]
        rows.append([f"{n:,}", f"{statistics.median(up[n]):.2f} ({min(up[n]):.2f}-{max(up[n]):.2f})",
                     f"{statistics.median(rss[n]):.0f}",
                     f"{statistics.median(per_node):.3f}" if per_node else "-",
                     f"{100 * statistics.median(idle[n]):.1f} ({100 * min(idle[n]):.1f}-{100 * max(idle[n]):.1f})",
                     f"{statistics.median(rate[n]):,.0f} ({min(rate[n]):,.0f}-{max(rate[n]):,.0f})",
                     f"{statistics.median(ratio):.2f}x"])
    table(f"melond over simulated nodes ({CPUS} CPUs each), {ROUNDS} rounds: medians (spread)",
          ["nodes", "all up, s", "RSS MiB", f"MiB per node over {base}", "idle CPU % of a core",
           f"dispatch, {TASKS:,} tasks, jobs/s", f"x {base} nodes"], rows)
    if as_json:
        print(json.dumps([{"nodes": n, "up_s": statistics.median(up[n]), "rss_mib": statistics.median(rss[n]),
                           "idle_cpu": statistics.median(idle[n]), "jobs_per_s": statistics.median(rate[n])}
                          for n in SIZES]))
    else:
        print(f"\nscale: {statistics.median(up[SIZES[-1]]):.2f} s to connect {SIZES[-1]:,} nodes")


if __name__ == "__main__":
    import sys
    main(as_json="--json" in sys.argv[1:])
