"""Shared bench plumbing: a throwaway melond, an API client, and table printing."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(BIN.parent / "melon-src"))  # melond and melon_cli by their installed names (scripts/setup.sh)

from melon_cli.client import Client  # noqa: E402


@contextmanager
def melond(*extra: str, kill_wait: float = 1.0):
    """Start melond in a temp state dir; yield (client, state_dir, work_dir); stop and clean up."""
    root = Path(tempfile.mkdtemp(prefix="mb-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
    state, work = root / "state", root / "work"
    work.mkdir()
    log = open(root / "melond.log", "wb")
    proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(state), "--kill-wait", str(kill_wait),
                             "--log-level", "WARNING", *extra], stderr=log)
    client = Client(f"unix:{state}/melond.sock")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if all(n["state"] != "down" for n in client.call("GET", "/nodes")["nodes"]):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((root / "melond.log").read_text())
            time.sleep(0.05)
        yield client, state, work, proc
    finally:
        for j in client.call("GET", "/jobs")["jobs"]:
            try:
                client.call("POST", f"/jobs/{j['id']}/cancel")
            except Exception:  # noqa: BLE001
                pass
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def serving(root: Path):
    """melond on the state dir `root/state` filled beforehand (a million stored jobs); yield its
    socket once it listens; stop it and remove `root` afterwards."""
    state = root / "state"
    proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(state), "--log-level", "WARNING"],
                            stderr=open(root / "melond.log", "wb"))
    sock = state / "melond.sock"
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "melond.log").read_text())
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def job_body(work: Path, cmd: str = "true", **kw) -> dict:
    return {"script": f"#!/bin/sh\n{cmd}\n", "name": "bench", "chdir": str(work), "output": "/dev/null",
            "environment": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, **kw}


async def submit_concurrently(sock: str, body: bytes, count: int, clients: int) -> tuple[list[int], list[float], float]:
    """POST one job body `count` times from `clients` concurrent connections.

    Returns the job ids, each request's latency (ms), and the elapsed seconds.
    """
    import aiohttp

    ids: list[int] = []
    latencies: list[float] = []
    left = count

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            async with session.post("http://melon/api/v1/jobs", data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                assert r.status == 201, await r.text()
                ids.extend((await r.json())["job_ids"])
            latencies.append((time.perf_counter() - t) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock, limit=clients)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return ids, latencies, time.perf_counter() - start


# The Python floor every CLI figure is a ratio to: a bare `python -I` that sends one HTTP request
# over melond's socket and reads the reply. No Python command can start and ask melond faster.
FLOOR = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET " + sys.argv[2].encode() + b" HTTP/1.1\\r\\nHost: melond\\r\\nConnection: close\\r\\n\\r\\n")
while s.recv(65536):
    pass
"""


def floor_command(sock: str, path: str = "/api/v1/jobs?all=1&ids=1") -> list[str]:
    """The floor's process, asking `path` (by default one job's listing, what a command asks)."""
    return [sys.executable, "-I", "-c", FLOOR, sock, path]


def run_ms(cmd: list[str], env: dict, cwd=None) -> float:
    """One whole process, milliseconds."""
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def median_range(values: list[float], unit: str, digits: int = 2) -> str:
    """`median<unit> (min-max)`: a headline figure with its spread, since single runs here drift."""
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summary(name: str, figure: str) -> None:
    """The bench's last line, `NAME: figure`, which bench/run gathers into its table."""
    print(f"\n{name}: {figure}", flush=True)


def skip(name: str, why: str) -> NoReturn:
    """End a bench whose prerequisite is missing here, with a summary line that says which."""
    summary(name, f"skipped ({why})")
    sys.exit(0)


def docker_missing() -> str | None:
    """Why the Docker sshd cluster (tests/docker-sshd/cluster) cannot come up here, or None."""
    if shutil.which("docker") is None:
        return "no docker command"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers"
    return None if os.geteuid() == 0 else "the cluster needs root: it adds its test users here too"


def table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


__all__ = ["melond", "job_body", "pct", "table", "statistics", "submit_concurrently", "BIN", "FLOOR", "floor_command",
           "run_ms", "median_range", "summary", "skip", "docker_missing"]
