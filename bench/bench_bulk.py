"""Bulk operations over 100,000 pending jobs (10 arrays of 10,000 held tasks, the embedded local
node): `mhold`/`mrelease`/`mextend` of one array, `mcancel ARRAY`, and `mcancel --me -t PD` over all of
them, each one transaction in melond; and, meanwhile, how long another request (`GET /nodes`,
as another user's squeue would ask) waits.

Every round submits the queue afresh, lets melond settle, and times each operation as one
whole CLI process (the list a filter needs included), beside the CLI floor measured in the same round (a bare Python
process asking melond once): the ratios are taken at the same moment.
"""
from __future__ import annotations

import os
import statistics
import threading
import time

from harness import BIN, floor_command, job_body, melond, pct, run_ms, table

ARRAYS, TASKS = 10, 10_000
ROUNDS = 3
PING = 0.02  # seconds between the other user's requests


class Pinger(threading.Thread):
    """Another client asking melond every PING seconds while an operation runs: each wait, ms."""

    def __init__(self, client) -> None:
        super().__init__(daemon=True)
        self.client, self.waits, self.stop = client, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            self.client.call("GET", "/nodes")
            self.waits.append((time.perf_counter() - t) * 1000)
            time.sleep(PING)


def timed(cmd: list[str], env: dict, client) -> tuple[float, list[float]]:
    pinger = Pinger(client)
    pinger.start()
    try:
        return run_ms(cmd, env), pinger.waits
    finally:
        pinger.stop.set()
        pinger.join()


def main() -> None:
    figures: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    floors: list[float] = []
    with melond() as (client, state, work, _):
        sock = f"{state}/melond.sock"
        env = {**os.environ, "MELON_API": f"unix:{sock}"}
        for _ in range(ROUNDS):
            later = time.time() + 86400  # released, they still wait (BeginTime): nothing runs
            arrays = [client.call("POST", "/jobs", job_body(work, hold=True, begin=later, time_limit=3600,
                                                             array=f"0-{TASKS - 1}"))["job_ids"][0]
                      for _ in range(ARRAYS)]
            time.sleep(5)  # the scheduling passes the submissions bring are over
            floors.append(statistics.median(run_ms(floor_command(sock, "/api/v1/whoami"), env) for _ in range(5)))
            for name, cmd in ((f"mrelease ARRAY ({TASKS:,})", ["mrelease", str(arrays[0])]),
                              (f"mhold ARRAY ({TASKS:,})", ["mhold", str(arrays[0])]),
                              (f"mextend ARRAY ({TASKS:,})", ["mextend", "-j", str(arrays[1]), "-t", "+1:00:00"]),
                              (f"mcancel ARRAY ({TASKS:,})", ["mcancel", str(arrays[-1])]),
                              (f"mcancel --me -t PD ({(ARRAYS - 1) * TASKS:,})", ["mcancel", "--me", "-t", "PD"])):
                ms, seen = timed([str(BIN / cmd[0]), *cmd[1:]], env, client)
                figures.setdefault(name, []).append(ms)
                waits.setdefault(name, []).extend(seen)
            left = client.call("GET", "/jobs", query={"state": "PD"})["jobs"]
            assert not left, f"{len(left)} jobs still pending"
    floor = statistics.median(floors)
    rows = []
    for name, values in figures.items():
        median = statistics.median(values)
        rows.append([name, f"{median / 1000:.3f} s", f"{min(values) / 1000:.3f}-{max(values) / 1000:.3f}",
                     f"{median / floor:.1f}x", f"{pct(waits[name], 0.5):.1f}", f"{max(waits[name]):.0f}"])
    table(f"Bulk operations, {ROUNDS} rounds (CLI floor {floor:.0f} ms)",
          ["operation", "median", "spread", "x floor", "other request p50 ms", "max ms"], rows)
    worst = max(statistics.median(v) for v in figures.values()) / 1000
    print(f"\nbulk: {worst:.2f} s")


if __name__ == "__main__":
    main()
