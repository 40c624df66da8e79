"""melond in this process over simulated nodes (melond/nodes/simulated.py): its sessions, store,
scheduler and API are real, the nodes' jobs are a duration and an exit code with no processes.
So the rules of a job's end can be driven where real processes cannot be: a node reboots under a
running job, a job ends while melond is stopped, a thousand jobs cross three nodes in seconds."""
from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from melon_cli.client import Client
from melond import config
from melond.daemon import Daemon, Options
from melond.nodes import fleet, simulated

NODES = 3
INVENTORY = "".join(f'[nodes.sim{i}]\nsimulate = true\ncpus = 4\nmemory = "8G"\n' for i in range(1, NODES + 1))


@pytest.fixture(autouse=True)
def fresh_machines() -> None:
    """Each test's simulated machines are new ones: they outlive melond, not the test."""
    simulated.MACHINES.clear()


def in_loop(test: Callable[[Path], Awaitable[None]]) -> Callable[[Path], None]:
    """Run an async test in an event loop of its own, melond included (short_tmp: a socket path
    fits in sun_path)."""
    @functools.wraps(test)
    def run(short_tmp: Path) -> None:
        asyncio.run(test(short_tmp))
    return run


@asynccontextmanager
async def melond(root: Path, inventory: str = INVENTORY) -> AsyncIterator[Client]:
    """melond serving in this event loop until the block ends (stopped as SIGTERM stops it)."""
    (root / "inventory.toml").write_text(inventory)
    daemon = Daemon(Options(state_dir=str(root / "state"), inventory=config.load(str(root / "inventory.toml")),
                            kill_wait=0.2))
    running = asyncio.ensure_future(daemon.run())
    client = Client(f"unix:{root}/state/melond.sock")
    try:
        await until(lambda: os.path.exists(root / "state" / "melond.sock") and
                    all(n["state"] != "down" for n in client.call("GET", "/nodes")["nodes"]), "the nodes up")
        yield client
    finally:
        daemon._stop.set()
        await asyncio.wait_for(running, 30)


async def until(check: Callable[[], object], what: str, timeout: float = 20) -> object:
    """Poll `check` (off the loop: it may call melond) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await asyncio.to_thread(check)
        except (OSError, ConnectionError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _submit(client: Client, script: str, **fields) -> list[int]:
    body = {"script": f"#!/bin/sh\n{script}\n", "name": "sim", "chdir": "/tmp", "output": "/dev/null",
            "environment": {}, **fields}
    return client.call("POST", "/jobs", body)["job_ids"]


def _job(client: Client, jid: int) -> dict:
    return client.call("GET", f"/jobs/{jid}")


async def _ended(client: Client, jid: int, timeout: float = 20) -> dict:
    return await until(lambda: (j := _job(client, jid))["state"] not in ("PD", "R") and j,
                       f"job {jid} to end", timeout)


@in_loop
async def test_a_thousand_jobs_cross_three_simulated_nodes(short_tmp: Path) -> None:
    async with melond(short_tmp) as c:
        ids = await asyncio.to_thread(_submit, c, "sleep 0.05\nexit 3", array="1-1000")
        last = await _ended(c, ids[-1], timeout=60)
        states = await asyncio.to_thread(lambda: {j["state"] for j in c.call("GET", "/jobs", query={
            "all": "1", "state": "all"})["jobs"]})
        assert states == {"F"} and last["exit_code"] == 3, (states, last)
        nodes = {n["name"]: n for n in (await asyncio.to_thread(c.call, "GET", "/nodes"))["nodes"]}
        assert set(nodes) == {"sim1", "sim2", "sim3"} and all(n["cpus"] == 4 for n in nodes.values()), nodes


@in_loop
async def test_limits_extensions_and_cancels_reach_a_simulated_job(short_tmp: Path) -> None:
    async with melond(short_tmp) as c:
        short, = await asyncio.to_thread(_submit, c, "sleep 100", time_limit=1)
        assert (await _ended(c, short))["state"] == "TO"
        extended, = await asyncio.to_thread(_submit, c, "sleep 1.5", time_limit=1)
        await until(lambda: _job(c, extended)["state"] == "R", "the job to run")
        await asyncio.to_thread(c.call, "POST", f"/jobs/{extended}/extend", {"add": 60})
        assert (await _ended(c, extended))["state"] == "CD"  # its new limit reached the node
        cancelled, = await asyncio.to_thread(_submit, c, "sleep 100")
        await until(lambda: _job(c, cancelled)["state"] == "R", "the job to run")
        await asyncio.to_thread(c.call, "POST", f"/jobs/{cancelled}/cancel")
        assert (await _ended(c, cancelled))["state"] == "CA"


@in_loop
async def test_a_reboot_fails_a_running_job_and_requeues_a_requeue_one(short_tmp: Path) -> None:
    inventory = 'node_timeout = 1\n[nodes.sim1]\nsimulate = true\ncpus = 2\n'
    async with melond(short_tmp, inventory) as c:
        plain, = await asyncio.to_thread(_submit, c, "sleep 100", cpus=1)
        again, = await asyncio.to_thread(_submit, c, "sleep 30", cpus=1, requeue=True)
        await until(lambda: {(plain, 0), (again, 0)} <= set(simulated.MACHINES["sim1"].runs), "both on the node")
        simulated.MACHINES["sim1"].reboot()
        assert (await _ended(c, plain))["state"] == "NF"
        await until(lambda: (j := _job(c, again))["state"] == "R" and j["restarts"] == 1, "its second run")
        await until(lambda: (again, 1) in simulated.MACHINES["sim1"].runs, "its second run on the node")


def test_a_node_that_stops_answering_is_down_and_its_jobs_lost(short_tmp: Path, monkeypatch) -> None:
    """A hung node behind a connection that stays open (no end-of-file, no keepalive failure)
    answers no ping: melond drops the connection, cannot reach the node again, and after
    node_timeout its job has failed (NODE_FAIL) while the other node's runs on. Once the node
    answers again it is taken back. (Timeouts shortened: 15 s, 30 s and 20 s in melond.)"""
    monkeypatch.setattr(fleet, "QUIET_PING", 0.5)  # (a loaded machine answers a live node's ping well within 2 s)
    monkeypatch.setattr(fleet, "PING_TIMEOUT", 2.0)
    monkeypatch.setattr(fleet, "BOOT_TIMEOUT", 2.0)
    inventory = 'node_timeout = 1\n' + "".join(f'[nodes.sim{i}]\nsimulate = true\ncpus = 1\n' for i in (1, 2))

    async def body() -> None:
        async with melond(short_tmp, inventory) as c:
            first, second = await asyncio.to_thread(_submit, c, "sleep 100", array="1-2")
            await until(lambda: {(first, 0), (second, 0)} <= {k for m in simulated.MACHINES.values() for k in m.runs},
                        "both on their nodes")
            hung = next(name for name, m in simulated.MACHINES.items() if (first, 0) in m.runs)
            simulated.MACHINES[hung].hang()
            began = time.monotonic()
            lost = await _ended(c, first, timeout=30)
            assert lost["state"] == "NF", lost
            node = next(n for n in (await asyncio.to_thread(c.call, "GET", "/nodes"))["nodes"] if n["name"] == hung)
            assert node["state"] == "down" and "no answer" in (node["reason"] or ""), node
            assert time.monotonic() - began < 15
            other = await asyncio.to_thread(_job, c, second)
            assert other["state"] == "R", other  # the other node's job runs on
            simulated.MACHINES[hung].wake()
            await until(lambda: next(n for n in c.call("GET", "/nodes")["nodes"]
                                     if n["name"] == hung)["state"] != "down", "the node back", timeout=20)
    asyncio.run(body())


@in_loop
async def test_an_end_while_melond_is_stopped_is_recorded_at_its_return(short_tmp: Path) -> None:
    """The machines run on while melond is away: a job that ended meanwhile is recorded from the
    node's list when melond comes back, and one still running is adopted and ends later."""
    async with melond(short_tmp) as c:
        quick, = await asyncio.to_thread(_submit, c, "sleep 1")
        slow, = await asyncio.to_thread(_submit, c, "sleep 6")
        await until(lambda: {(quick, 0), (slow, 0)} <= {k for m in simulated.MACHINES.values() for k in m.runs},
                    "both on their nodes")
    await asyncio.sleep(1.5)  # melond stopped: the quick one ends unseen
    async with melond(short_tmp) as c:
        assert (await _ended(c, quick))["state"] == "CD"
        assert (await asyncio.to_thread(_job, c, slow))["state"] == "R"
        assert (await _ended(c, slow))["state"] == "CD"
        starts = [e for e in (await asyncio.to_thread(_job, c, slow))["events"] if e["kind"] == "started"]
        assert len(starts) == 1  # adopted, never run twice
