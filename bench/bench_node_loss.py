"""A node that stops answering, among 10 and 1,000 simulated nodes: how long until melond marks
it down and fails its job (NODE_FAIL), while the other nodes run a stream of short jobs.

melond runs in this process (its sessions, store, scheduler and API are the real ones), over
simulated nodes (melond/nodes/simulated.py) of 64 CPUs, each running one 32-CPU job. One
machine is then hung: its connection stays open and it answers nothing, as a hung node behind a
live connection, so only melond's own pings can find it out. Meanwhile 5,000 one-second jobs
are submitted for the other nodes' free CPUs. The timeouts are shortened (a quiet node is pinged
after 2 s, a ping waits 3 s, node_timeout is 5 s; melond's own are 15 s, 30 s and 60 s), so the
figures are the timeouts plus whatever lateness the cluster's size adds: the reference is the
same loss among 10 nodes, in the same round.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from harness import Client, job_body, table

from melond import config
from melond.daemon import Daemon, Options
from melond.nodes import fleet, simulated

SIZES = (10, 1000)
ROUNDS = 3
CPUS, MEMORY = 64, "256G"
QUIET_PING, PING_TIMEOUT, NODE_TIMEOUT = 2.0, 3.0, 5.0
SHORT_JOBS = 5000


async def until(check, timeout: float, poll: float = 0.05) -> float:
    """Seconds until `check` (run off the loop: it calls melond) is true."""
    began = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - began > timeout:
            raise RuntimeError("timed out")
        await asyncio.sleep(poll)
    return time.monotonic() - began


async def one_loss(nodes: int) -> tuple[float, float]:
    """Seconds from the hang to the node down, and to its job failed."""
    simulated.MACHINES.clear()
    root = Path(tempfile.mkdtemp(prefix="ml-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
    work = root / "work"
    work.mkdir()
    (root / "inventory.toml").write_text(f"node_timeout = {NODE_TIMEOUT}\n" + "".join(
        f'[nodes.sim{i:04d}]\nsimulate = true\ncpus = {CPUS}\nmemory = "{MEMORY}"\n' for i in range(nodes)))
    daemon = Daemon(Options(state_dir=str(root / "state"), inventory=config.load(str(root / "inventory.toml")),
                            kill_wait=0.2))
    running = asyncio.ensure_future(daemon.run())
    client = Client(f"unix:{root}/state/melond.sock", timeout=120)
    try:
        def all_up() -> bool:
            try:
                listed = client.call("GET", "/nodes")["nodes"]
            except Exception:  # noqa: BLE001 - not serving yet
                return False
            return len(listed) == nodes and all(n["state"] != "down" for n in listed)
        await until(all_up, 300)
        ids = (await asyncio.to_thread(client.call, "POST", "/jobs", job_body(
            work, "sleep 3600", cpus=CPUS // 2, array=f"1-{nodes}")))["job_ids"]
        await until(lambda: not client.call("GET", "/jobs", query={"state": "PD", "fields": "id"})["jobs"], 120)
        victim = ids[len(ids) // 2]
        while not (name := next((n for n, m in simulated.MACHINES.items() if (victim, 0) in m.runs), None)):
            await asyncio.sleep(0.05)  # running in the store, its start on its way to the node
        simulated.MACHINES[name].hang()
        began = time.monotonic()
        await asyncio.to_thread(client.call, "POST", "/jobs", job_body(work, "sleep 1", array=f"1-{SHORT_JOBS}"))

        def node_down() -> bool:
            return any(n["name"] == name and n["state"] == "down" for n in client.call("GET", "/nodes")["nodes"])
        await until(node_down, 120)
        down = time.monotonic() - began
        await until(lambda: client.call("GET", f"/jobs/{victim}")["state"] == "NF", 120)
        return down, time.monotonic() - began
    finally:
        daemon._stop.set()
        await asyncio.wait_for(running, 120)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    logging.getLogger("melond").setLevel(logging.ERROR)  # its warnings (node down, node lost) are the point here
    fleet.QUIET_PING, fleet.PING_TIMEOUT, fleet.BOOT_TIMEOUT = QUIET_PING, PING_TIMEOUT, PING_TIMEOUT
    down: dict[int, list[float]] = {n: [] for n in SIZES}
    failed: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(ROUNDS):
        for n in SIZES:
            d, f = asyncio.run(one_loss(n))
            down[n].append(d)
            failed[n].append(f)
    base = SIZES[0]
    rows = []
    for n in SIZES:
        ratio = [f / b for f, b in zip(failed[n], failed[base])]
        rows.append([f"{n:,}", f"{statistics.median(down[n]):.2f} ({min(down[n]):.2f}-{max(down[n]):.2f})",
                     f"{statistics.median(failed[n]):.2f} ({min(failed[n]):.2f}-{max(failed[n]):.2f})",
                     f"{statistics.median(ratio):.2f}x"])
    table(f"A node stops answering, {ROUNDS} rounds, {SHORT_JOBS:,} short jobs meanwhile: seconds from the hang, "
          f"medians (spread); expected: down after {QUIET_PING + PING_TIMEOUT:g} s (a ping {QUIET_PING:g} s after "
          f"its last word, unanswered for {PING_TIMEOUT:g} s), its job failed {NODE_TIMEOUT:g} s later", ["nodes", "node down", "its job NODE_FAIL", f"x {base} nodes"], rows)
    print(f"\nnode_loss: {statistics.median(failed[SIZES[-1]]):.2f} s to fail a hung node's job among "
          f"{SIZES[-1]:,} nodes")


if __name__ == "__main__":
    main()
