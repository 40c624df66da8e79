"""Each command's whole-process time, as a ratio to the Python floor measured in the same rounds.

The floor is a bare `python -I` that sends one HTTP request over melond's Unix socket and reads
the reply: no Python CLI can start and ask melond anything faster. Each round runs the floor and
then every command once, so the machine's drift (2x within an hour on a shared host) hits both
sides alike; the table gives each command's median per-round ratio with its interquartile range.
Targets: each command, Melon's and Slurm's names alike, <= 1.3x the floor; `mqueue` over 10,000
queued jobs <= 2x.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time

from harness import BIN, floor_command, job_body, median_range, melond, run_ms, summary, table

ROUNDS = 30
QUEUE = 10_000



def slurm_bin() -> str:
    """Where `melon-slurm env` puts Slurm's command names (written on first use)."""
    line = subprocess.run([f"{BIN}/melon-slurm", "env"], capture_output=True, text=True, check=True).stdout
    return line.split('"')[1].split(":")[0]


def rounds(commands: dict, floor: list[str], env: dict, cwd, count: int) -> dict[str, list[float]]:
    """Per-round times, floor first: {name: [ms, ...]} with the floor under 'floor'. A command is
    its argv, or a function of the round's number that gives it (for one that uses up a job)."""
    out: dict[str, list[float]] = {"floor": [], **{name: [] for name in commands}}
    for n in range(count):
        out["floor"].append(run_ms(floor, env, cwd))
        for name, cmd in commands.items():
            out[name].append(run_ms(cmd(n) if callable(cmd) else cmd, env, cwd))
    return out


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def report(title: str, times: dict[str, list[float]], target: float) -> list[float]:
    """Print the table; return each command's median ratio to the floor."""
    floor = times["floor"]
    rows = [["floor (python -I, one request)", f"{statistics.median(floor):.1f}", "1.00", "", ""]]
    mids = []
    for name, ms in times.items():
        if name == "floor":
            continue
        lo, mid, hi = quartiles([m / f for m, f in zip(ms, floor)])
        mids.append(mid)
        rows.append([name, f"{statistics.median(ms):.1f}", f"{mid:.2f}", f"{lo:.2f}-{hi:.2f}",
                     "yes" if mid <= target else "NO"])
    table(title, ["command", "median ms", "ratio to floor", "ratio IQR", f"<= {target}x"], rows)
    return mids


def main() -> None:
    with melond() as (client, state, work, _):
        sock = f"{state}/melond.sock"
        env = {**os.environ, "MELON_API": f"unix:{sock}"}
        floor = floor_command(sock)
        (work / "job.sh").write_text("#!/bin/sh\n#SBATCH -t 1:00\n#SBATCH --mem=10M\ntrue\n")
        later = time.time() + 86400  # pending for its begin time, whether held or released
        held = client.call("POST", "/jobs", job_body(work, begin=later, time_limit=600))["job_ids"][0]
        b = str(BIN)
        commands = {
            "mbatch --parsable -H job.sh": [f"{b}/mbatch", "--parsable", "-H", "job.sh"],
            "mbatch --parsable -H --wrap=true": [f"{b}/mbatch", "--parsable", "-H", "--wrap=true"],
            "mqueue": [f"{b}/mqueue"],
            f"mshow {held}": [f"{b}/mshow", str(held)],
            f"mextend -j {held} -t +1": [f"{b}/mextend", "-j", str(held), "-t", "+1"],
            f"mhold {held}": [f"{b}/mhold", str(held)],
            f"mrelease {held}": [f"{b}/mrelease", str(held)],
        }
        spares = [client.call("POST", "/jobs", job_body(work, hold=True))["job_ids"][0] for _ in range(ROUNDS)]
        commands["mcancel ID (a held job)"] = lambda n: [f"{b}/mcancel", str(spares[n])]
        times = rounds(commands, floor, env, work, ROUNDS)
        ratios = report(f"Whole-process time of each command, {ROUNDS} rounds (a short queue)", times, 1.3)

        s = slurm_bin()
        slurm = {
            "sbatch --parsable -H job.sh": [f"{s}/sbatch", "--parsable", "-H", "job.sh"],
            "sbatch -H --wrap=true": [f"{s}/sbatch", "-H", "--wrap=true"],
            "squeue": [f"{s}/squeue"],
            f"squeue -h -o '%i %t' -j {held}": [f"{s}/squeue", "-h", "-o", "%i %t", "-j", str(held)],
            f"sacct -X -P -n -o JobID,State -j {held}": [f"{s}/sacct", "-X", "-P", "-n", "-o", "JobID,State", "-j",
                                                         str(held)],
            f"scontrol show job {held}": [f"{s}/scontrol", "show", "job", str(held)],
            "sinfo": [f"{s}/sinfo"],
        }
        spares = [client.call("POST", "/jobs", job_body(work, hold=True))["job_ids"][0] for _ in range(ROUNDS)]
        slurm["scancel ID (a held job)"] = lambda n: [f"{s}/scancel", str(spares[n])]
        times = rounds(slurm, floor, env, work, ROUNDS)
        ratios += report(f"Slurm's command names, {ROUNDS} rounds (the same queue)", times, 1.3)

        body = job_body(work, hold=True, time_limit=600, array=f"1-{QUEUE}")
        client.call("POST", "/jobs", body)
        big = rounds({f"mqueue ({QUEUE:,} pending array tasks, folded)": [f"{b}/mqueue"],
                      f"mqueue -r ({QUEUE:,} lines)": [f"{b}/mqueue", "-r"],
                      "mqueue --json": [f"{b}/mqueue", "--json"]}, floor, env, work, 10)
        report(f"mqueue over {QUEUE:,} queued jobs, 10 rounds", big, 2.0)
    # The headline is the short-queue commands' (their target is one, 1.3x): the median of their
    # medians, and the range from the fastest command to the slowest.
    summary("cli", median_range(ratios, "x floor"))


if __name__ == "__main__":
    main()
