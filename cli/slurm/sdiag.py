"""`sdiag`, as Slurm's (src/sdiag/sdiag.c `_print_stats`, 23.11), for the parts melond has: the
server's threads, jobs submitted, started and ended since it started, the queue now, the main
scheduler's cycles (Melon's one pass plans and backfills at once) and the API's requests by route
in place of RPCs by message type (each one's id: its place in melond's list, by method and
route). Agents, backfill's own cycles, RPCs by user and pending RPCs have no counterpart and are
left out, as is `--reset` (melond's figures count from its start, as Prometheus's counters do)."""
from __future__ import annotations

import sys
import time

from melon_cli.args import Opt
from melon_cli.common import client
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SlurmCommand

PROG = "sdiag"
RULE = "*" * 55
SORTS = {  # -i, -t, -T; the default: by count, highest first (sdiag.c _sort_rpc)
    "id": lambda r: r["id"],
    "time": lambda r: -r["total_us"],
    "time2": lambda r: -r["mean_us"],
    "count": lambda r: -r["count"],
}


def _when(epoch: float) -> str:
    """slurm_ctime2: ctime's words, no newline, and the epoch seconds after them."""
    return f"{time.ctime(epoch)} ({int(epoch)})"


def _us(seconds: float | None) -> int:
    return int(round((seconds or 0) * 1_000_000))


def render(stats: dict, sort: str = "count") -> list[str]:
    """sdiag's lines from melond's figures (`GET /api/v1/stats`)."""
    sched = stats["scheduler"]
    lines = [RULE, f"sdiag output at {_when(stats['time'])}", f"Data since      {_when(stats['since'])}", RULE,
             f"Server thread count:  {stats['threads']}", "",
             f"Jobs submitted: {stats['jobs_submitted']}", f"Jobs started:   {stats['jobs_started']}",
             f"Jobs completed: {stats['jobs_completed']}", f"Jobs canceled:  {stats['jobs_cancelled']}",
             f"Jobs failed:    {stats['jobs_failed']}", "",
             f"Job states ts:  {_when(stats['time'])}", f"Jobs pending:   {stats['jobs_pending']}",
             f"Jobs running:   {stats['jobs_running']}", "",
             "Main schedule statistics (microseconds):",
             f"\tLast cycle:   {_us(sched['last'])}", f"\tMax cycle:    {_us(sched['max'])}",
             f"\tTotal cycles: {sched['count']}"]
    if sched["count"] > 0:
        lines.append(f"\tMean cycle:   {_us(sched['total']) // sched['count']}")
    up = stats["time"] - stats["since"]
    if up > 60:  # sdiag.c: whole minutes, and only after the first
        lines.append(f"\tCycles per minute: {int(sched['count'] // (up // 60))}")
    lines.append(f"\tLast queue length: {stats['last_queue_length']}")
    rows = [{"id": n, "name": f"{r['method']} {r['route']}", "count": r["count"], "total_us": _us(r["total"]),
             "mean_us": _us(r["total"]) // r["count"] if r["count"] else 0}
            for n, r in enumerate(stats["requests"])]
    rows.sort(key=SORTS[sort])
    lines += ["", "Remote Procedure Call statistics by message type"]
    lines += [f"\t{r['name']:<40}({r['id']:5d}) count:{r['count']:<6d} ave_time:{r['mean_us']:<6d} "
              f"total_time:{r['total_us']}" for r in rows]
    return lines


def show(by_id: bool, by_time: bool, by_mean: bool, endpoint: str | None) -> None:
    """Show melond's scheduling and request statistics since it started."""
    sort = "id" if by_id else "time" if by_time else "time2" if by_mean else "count"
    stats = client(endpoint).call("GET", "/stats")
    sys.stdout.write("".join(line + "\n" for line in render(stats, sort)))


COMMAND = SlurmCommand(PROG, show, [
    Opt("-i", "--sort-by-id", dest="by_id", help="Requests by route id (melond's order of routes)."),
    Opt("-t", "--sort-by-time", dest="by_time", help="Requests by their total time, highest first."),
    Opt("-T", "--sort-by-time2", dest="by_mean", help="Requests by their mean time, highest first."),
], table=tables.SDIAG, ignored=frozenset({"all", "cluster", "clusters"}))
main = COMMAND.main
