"""What 1,000,000 finished jobs in the history cost the commands that do not ask for them: each
command on a melond over 1,000,000 stored jobs (bench_acct.py's: 100 days, 10,000 a day) against
the same command on a melond over only the jobs the commands show (one day 50 days ago, for
`macct -S`, and today's, for `sacct`; an empty history would answer them with nothing), measured
in the same run (target: within 2x). Also melond's start on each (until it serves) and its
memory once serving.

Commands are whole processes (`mqueue`, `mshow JOB`, `macct -S` over one day, Slurm's `sacct`
of today); the API's paged list (the web UI's first page: 50 jobs, newest first, arrays folded)
and `/metrics` are requests on one kept connection. On each database one job is submitted and
run first, the one `mshow` shows.
"""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench_acct import DAYS, ROWS, fill
from harness import BIN, Client, job_body, median_range, run_ms, summary, table

ROUNDS = 7


class Melond:
    """melond on a state dir prepared beforehand, until closed."""

    def __init__(self, root: Path) -> None:
        self.root, state = root, root / "state"
        began = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(state), "--log-level", "WARNING"],
                                     stderr=open(root / "melond.log", "wb"))
        self.sock = state / "melond.sock"
        self.client = Client(f"unix:{self.sock}", timeout=60)
        while True:
            try:
                self.client.call("GET", "/whoami")
                break
            except Exception:  # noqa: BLE001 - not serving yet
                if self.proc.poll() is not None or time.perf_counter() - began > 120:
                    raise RuntimeError((root / "melond.log").read_text()[-3000:]) from None
                time.sleep(0.02)
        self.start_s = time.perf_counter() - began
        self.rss_mib = psutil.Process(self.proc.pid).memory_info().rss / 2**20
        self.env = {**os.environ, "MELON_API": f"unix:{self.sock}"}
        work = root / "work"
        work.mkdir()
        self.job = self.client.call("POST", "/jobs", job_body(work))["job_ids"][0]
        while self.client.call("GET", f"/jobs/{self.job}")["state"] != "CD":
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


class Kept(http.client.HTTPConnection):
    """One HTTP connection over melond's socket, kept across requests, as the UI's browser keeps one."""

    def __init__(self, sock: Path) -> None:
        super().__init__("melond", timeout=60)
        self.unix = str(sock)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix)

    def ms(self, path: str) -> float:
        t = time.perf_counter()
        self.request("GET", path)
        reply = self.getresponse()
        body = reply.read()
        assert reply.status == 200 and body, (path, reply.status, body[:200])
        return (time.perf_counter() - t) * 1000


def slurm_path() -> str:
    """PATH with Slurm's command names first, as `eval "$(melon-slurm env)"` makes it."""
    line = subprocess.run([str(BIN / "melon-slurm"), "env"], capture_output=True, text=True, check=True).stdout
    first = line.splitlines()[0]
    return first[len('export PATH="'):-len(':$PATH"')] + f":{BIN}:{os.environ['PATH']}"


def measure(m: Melond, day_start: float) -> dict[str, list[float]]:
    stamp = "%Y-%m-%dT%H:%M:%S"
    day = ["-S", time.strftime(stamp, time.localtime(day_start)),
           "-E", time.strftime(stamp, time.localtime(day_start + 86400))]
    commands = {
        "mqueue": [str(BIN / "mqueue")],
        "mshow JOB": [str(BIN / "mshow"), str(m.job)],
        "macct -a -S DAY -E DAY+1": [str(BIN / "macct"), "-a", "-n", "-P", *day],
        "sacct (today's: as root, everyone's)": ["sacct"],
    }
    env = {**m.env, "PATH": slurm_path()}
    out: dict[str, list[float]] = {name: [] for name in [*commands, "API page (UI's first)", "/metrics"]}
    page = "/api/v1/jobs?limit=50&fold=1&sort=-id&fields=id,name,user,state,partition,time_limit,node_list"
    kept = Kept(m.sock)
    try:
        for _ in range(ROUNDS):
            for name, cmd in commands.items():
                out[name].append(run_ms(cmd, env))
            out["API page (UI's first)"].append(kept.ms(page))
            out["/metrics"].append(kept.ms("/metrics"))
    finally:
        kept.close()
    return out


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="mb-hist-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
    now = time.time()
    day_start = now - 50 * 86400
    full, empty = base / "full", base / "empty"
    for root in (full, empty):
        (root / "state").mkdir(parents=True, mode=0o700)
    t = time.perf_counter()
    fill(full / "state" / "melon.db", now)
    print(f"wrote {ROWS:,} jobs over {DAYS} days in {time.perf_counter() - t:.1f} s", flush=True)
    midnight = time.mktime(time.localtime(now)[:3] + (0, 0, 0, 0, 0, -1))
    shown = fill(empty / "state" / "melon.db", now, lambda end: day_start <= end < day_start + 86400 or end >= midnight)
    print(f"wrote the {shown:,} of them the commands show, alone", flush=True)
    figures: dict[str, dict[str, list[float]]] = {}
    starts: dict[str, tuple[float, float]] = {}
    try:
        for label, root in (("shown", empty), ("1,000,000", full)):
            m = Melond(root)
            try:
                starts[label] = (m.start_s, m.rss_mib)
                figures[label] = measure(m, day_start)
            finally:
                m.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows, worst = [], []
    for name in figures["shown"]:
        e, f = figures["shown"][name], figures["1,000,000"][name]
        ratio = statistics.median(f) / statistics.median(e)
        worst.append((ratio, name))
        rows.append([name, median_range(e, "", 1), median_range(f, "", 1), f"{ratio:.2f}x",
                     "yes" if ratio <= 2 else "NO"])
    (s0, r0), (s1, r1) = starts["shown"], starts["1,000,000"]
    rows.append(["melond start, until it serves (one run)", f"{s0 * 1000:.0f}", f"{s1 * 1000:.0f}", f"{s1 / s0:.2f}x",
                 ""])
    rows.append(["melond RSS once serving, MiB (one run)", f"{r0:.0f}", f"{r1:.0f}", f"{r1 / r0:.2f}x", ""])
    table(f"The history's cost: {ROWS:,} finished jobs against the {shown:,} shown alone ({ROUNDS} rounds; ms, "
          "median (min-max))", ["command", "shown alone", "1,000,000", "x alone", "<= 2x"], rows)
    ratio, name = max(worst)
    summary("history", f"{ratio:.2f}x at worst ({name}) with 1,000,000 stored against the jobs shown alone; "
                       f"start {s1:.2f} s against {s0:.2f} s")


if __name__ == "__main__":
    main()
