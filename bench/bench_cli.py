"""Whole-process latency of `mbatch --parsable` and `mqueue` (target: median <= 150 ms)."""
from __future__ import annotations

import os
import statistics
import subprocess
import time

from harness import BIN, melond, pct, table

RUNS = 30


def timed(cmd: list[str], env: dict, cwd) -> list[float]:
    out = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    with melond() as (client, state, work, _):
        env = {**os.environ, "MELON_API": f"unix:{state}/melond.sock"}
        (work / "job.sh").write_text("#!/bin/sh\n#SBATCH -t 1:00\n#SBATCH --mem=10M\ntrue\n")
        rows = []
        for name, cmd in (("mbatch --parsable job.sh", [str(BIN / "mbatch"), "--parsable", "-H", "job.sh"]),
                          ("mqueue", [str(BIN / "mqueue")]),
                          ("mqueue --all (with the jobs above)", [str(BIN / "mqueue"), "--all"])):
            ms = timed(cmd, env, work)
            rows.append([name, RUNS, f"{statistics.median(ms):.1f}", f"{pct(ms, 0.9):.1f}", f"{min(ms):.1f}"])
        table("CLI whole-process latency (ms)", ["command", "runs", "median", "p90", "min"], rows)


if __name__ == "__main__":
    main()
