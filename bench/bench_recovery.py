"""Recovery on the Docker sshd cluster: how long melond takes to come back with 1,000 jobs running
on 3 nodes (after `kill -9` and after SIGTERM), and how long a dead node takes to be noticed.

Brings up its own 3-node cluster (tests/docker-sshd/cluster) and always tears it down.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from harness import BIN, REPO, Client, docker_missing, job_body, skip, summary, table

CLUSTER = REPO / "tests" / "docker-sshd" / "cluster"
DIR = Path("/tmp/mcrecov")
INVENTORY = Path("/tmp/mcrecov.toml")
JOBS = 1000
NODE_TIMEOUT = 5


class Daemon:
    """One melond on a fixed state dir, restartable."""

    def __init__(self, inventory: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))
        self.inventory = inventory
        self.client = Client(f"unix:{self.root}/state/melond.sock", timeout=120)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start melond; return the seconds until every node is reconciled (all jobs re-adopted)."""
        t = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(self.root / "state"), "--kill-wait", "1",
                                      "--inventory", str(self.inventory), "--log-level", "WARNING"],
                                     stderr=open(self.root / "melond.log", "ab"))
        while True:
            try:
                if all(n["state"] != "down" for n in self.client.call("GET", "/nodes")["nodes"]):
                    return time.perf_counter() - t
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.perf_counter() - t > 300:
                raise RuntimeError((self.root / "melond.log").read_text()[-3000:])
            time.sleep(0.02)

    def stop(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=120)

    def running(self) -> int:
        return len(self.client.call("GET", "/jobs", query={"state": "R"})["jobs"])

    def nodes(self) -> dict[str, dict]:
        return {n["name"]: n for n in self.client.call("GET", "/nodes")["nodes"]}


def wait(predicate, timeout: float, what: str) -> float:
    t = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - t


def sleeping() -> int:
    """Job processes really running on the nodes (melond counts a job RUNNING from its dispatch)."""
    total = 0
    for n in (1, 2, 3):
        r = subprocess.run(["docker", "exec", f"melon-node{n}", "pgrep", "-cf", "^sleep 3000$"], capture_output=True, text=True)
        total += int(r.stdout.strip() or 0)
    return total


def main() -> None:
    why = docker_missing()
    if why:
        skip("recovery", why)
    summary("recovery", measure())


def measure() -> str:
    """Both tables, on a cluster brought up for them and always torn down; the headline figure."""
    subprocess.run([str(CLUSTER), "up", "3", "--inventory", str(INVENTORY), "--dir", str(DIR)], check=True)
    d = None
    try:
        inventory = DIR / "inv-recovery.toml"
        inventory.write_text(INVENTORY.read_text()
                             .replace("[defaults]\n", "[defaults]\ncpus = 400\n", 1)
                             .replace('operators = ["root"]\n', f'operators = ["root"]\nnode_timeout = {NODE_TIMEOUT}\n'))
        d = Daemon(inventory)
        d.start()
        work = DIR / "shared"
        body = job_body(work, "sleep 3000", memory=8 << 20, time_limit=3600)
        for _ in range(JOBS // 100):
            d.client.call("POST", "/jobs", {**body, "array": "1-100"})
        launch = wait(lambda: sleeping() >= JOBS, 600, "every job's process to run on its node")
        rows = []
        for label, sig in (("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
            time.sleep(2)  # every monitor settled
            d.stop(sig)
            took = d.start()
            still = d.running()
            assert still == JOBS == sleeping(), f"after {label}: {still} of {JOBS} jobs running"
            rows.append([label, f"{took:.2f}", still])
        table(f"melond restart with {JOBS} running jobs on 3 nodes (started in {launch:.0f} s)",
              ["melond stopped by", "start to all nodes reconciled, s", "jobs still running"], rows)

        cut = "node2"
        subprocess.run(["docker", "network", "disconnect", "melon-test", f"melon-{cut}"], check=True)
        try:
            partitioned = wait(lambda: d.nodes()[cut]["state"] == "down", 120, "the cut-off node to be noticed")
        finally:
            subprocess.run(["docker", "network", "connect", "melon-test", f"melon-{cut}"], check=True)
        wait(lambda: d.nodes()[cut]["state"] != "down", 180, "the cut-off node to return")

        victim = "node3"
        on_victim = sum(1 for j in d.client.call("GET", "/jobs", query={"state": "R"})["jobs"] if j["node"] == victim)
        subprocess.run(["docker", "kill", f"melon-{victim}"], check=True, capture_output=True)
        down = wait(lambda: d.nodes()[victim]["state"] == "down", 120, "the dead node to be noticed")
        failed = down + wait(lambda: d.running() == JOBS - on_victim, 120, "its jobs to end NODE_FAIL")
        subprocess.run(["docker", "start", f"melon-{victim}"], check=True, capture_output=True)
        back = wait(lambda: d.nodes()[victim]["state"] != "down", 180, "the node to return")
        table("node failure detection", ["event", "seconds after the fault"], [
            ["network cut (docker network disconnect): node marked down (SSH keepalive 5 s x 3)",
             f"{partitioned:.1f}"],
            ["docker kill: node marked down (its connection reset)", f"{down:.1f}"],
            [f"docker kill: its {on_victim} jobs ended NODE_FAIL (node_timeout = {NODE_TIMEOUT} s)", f"{failed:.1f}"],
            ["docker kill: back in service after docker start (probe + fencing)", f"{failed + back:.1f}"],
        ])
        return f"{rows[0][1]} s from a start after kill -9 to all {JOBS:,} jobs reconciled on 3 nodes"
    finally:
        if d is not None and d.proc is not None and d.proc.poll() is None:
            for j in d.client.call("GET", "/jobs")["jobs"]:
                try:
                    d.client.call("POST", f"/jobs/{j['id']}/cancel")
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(5)
            d.stop(signal.SIGTERM)
        if d is not None:
            shutil.rmtree(d.root, ignore_errors=True)
        subprocess.run([str(CLUSTER), "down", "--dir", str(DIR)], check=False)
        INVENTORY.unlink(missing_ok=True)


if __name__ == "__main__":
    os.chdir(REPO)
    main()
