"""melond's restart with 100,000 pending jobs (10 arrays of 10,000 held tasks) and 10,000
running ones (100 simulated nodes of 100 CPUs, each job `sleep 3600`): after `kill -9`, how long
until it serves (a job's view answered) and until every node is up again, and its memory
beside the melond before the restart.

Simulated machines live in melond's process, so the restarted melond finds new machines: its
reconcile sends the 10,000 starts again (a real node's helper would list them running), which
makes this an upper bound on a real restart's work. The reference is the same melond's restart
over an empty database, measured in the same round.
"""
from __future__ import annotations

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

ARRAYS, TASKS = 10, 10_000
NODES, CPUS = 100, 100
ROUNDS = 3


class Melond:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "inventory.toml").write_text("".join(
            f'[nodes.sim{i:03d}]\nsimulate = true\ncpus = {CPUS}\nmemory = "400G"\n' for i in range(NODES)))
        self.client = Client(f"unix:{root}/state/melond.sock", timeout=120)
        self.proc: subprocess.Popen | None = None

    def start(self, probe: int | None) -> tuple[float, float]:
        """Seconds until it answers (job `probe`'s view, else the node list), and until every node is up."""
        began = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(self.root / "state"), "--inventory",
                                      str(self.root / "inventory.toml"), "--log-level", "WARNING"],
                                     stderr=open(self.root / "melond.log", "ab"))
        serving = None
        while True:
            try:
                if serving is None:
                    self.client.call("GET", f"/jobs/{probe}" if probe else "/nodes")
                    serving = time.perf_counter() - began
                if all(n["state"] != "down" for n in self.client.call("GET", "/nodes")["nodes"]):
                    return serving, time.perf_counter() - began
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.perf_counter() - began > 600:
                raise RuntimeError((self.root / "melond.log").read_text()[-3000:])
            time.sleep(0.02)

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / (1 << 20)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)


def fill(m: Melond, work: Path) -> int:
    """The queue: 10,000 running, 100,000 held; the id of a pending task."""
    m.client.call("POST", "/jobs", job_body(work, "sleep 3600", array=f"1-{NODES * CPUS}"))
    while len(m.client.call("GET", "/jobs", query={"state": "R", "fields": "id"})["jobs"]) < NODES * CPUS:
        time.sleep(0.2)
    ids = [m.client.call("POST", "/jobs", job_body(work, hold=True, array=f"1-{TASKS}"))["job_ids"]
           for _ in range(ARRAYS)]
    return ids[-1][-1]


def main() -> None:
    figures: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for loaded in (False, True):
            root = Path(tempfile.mkdtemp(prefix="mr-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
            (root / "work").mkdir()
            m = Melond(root)
            try:
                m.start(None)
                probe = fill(m, root / "work") if loaded else None
                time.sleep(3)  # the passes that follow the submissions settle
                before = m.rss_mib()
                m.kill()
                serving, all_up = m.start(probe)
                time.sleep(3)
                after = m.rss_mib()
                tag = "loaded" if loaded else "empty"
                for name, value in (("serving", serving), ("all up", all_up), ("RSS before", before),
                                    ("RSS after", after)):
                    figures.setdefault(f"{tag} {name}", []).append(value)
                m.kill()
            finally:
                shutil.rmtree(root, ignore_errors=True)
    rows = []
    for what in ("serving", "all up"):
        loaded, empty = figures[f"loaded {what}"], figures[f"empty {what}"]
        ratio = [a / b for a, b in zip(loaded, empty)]
        rows.append([f"{what}, s", f"{statistics.median(loaded):.2f} ({min(loaded):.2f}-{max(loaded):.2f})",
                     f"{statistics.median(empty):.2f}", f"{statistics.median(ratio):.1f}x"])
    for what in ("RSS before", "RSS after"):
        loaded, empty = figures[f"loaded {what}"], figures[f"empty {what}"]
        rows.append([f"{what}, MiB", f"{statistics.median(loaded):.0f} ({min(loaded):.0f}-{max(loaded):.0f})",
                     f"{statistics.median(empty):.0f}", ""])
    table(f"Restart after kill -9 with {ARRAYS * TASKS:,} pending and {NODES * CPUS:,} running ({ROUNDS} rounds)",
          ["figure", "loaded: median (spread)", "empty database", "x empty"], rows)
    print(f"\nrestart: {statistics.median(figures['loaded serving']):.2f} s to serve")


if __name__ == "__main__":
    main()
