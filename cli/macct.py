"""`macct`: accounting for finished and running jobs, as sacct shows it."""
from __future__ import annotations

import os
import time

from melon_cli import acct_format
from melon_cli.args import Command, Opt
from melon_cli.common import client, current_user, echo, job_label, print_json, ref_names
from melond.spec.folding import fold_pending

PROG = "macct"


FOLD_FIELDS = ("state", "array_job_id", "array_task_id", "array_throttle")


def _fold_key(job: dict) -> tuple | None:
    """An array's pending tasks share one row, `13_[2-9%4]`, as in sacct."""
    if job["state"] != "PENDING" or job.get("array_task_id") is None:
        return None
    return job["array_job_id"], job.get("array_throttle")


def account(start: str | None, end: str | None, users: str | None, me: bool, all_users: bool,
            ids: tuple[str, ...], states: str | None, partitions: str | None, fmt: str | None, parsable: bool,
            parsable2: bool, noheader: bool, allocations: bool, as_json: bool, endpoint: str | None,
            names: str | None = None, units: int | None = None, noconvert: bool = False,
            steps_named: frozenset[str] = frozenset(), whole: frozenset[str] = frozenset()) -> None:
    """Jobs that were pending or running between -S and -E (default: since midnight; with -j,
    all time), with their state, exit code, times and what they used. Your own jobs unless -a,
    -u or you are root, as sacct.

        macct -S now-1hour      macct -j 13 -o JobID,State,Elapsed,TotalCPU,MaxRSS      macct -a -P
    """
    from melond.spec.jobids import parse_job_refs
    from melond.spec.timespec import parse_acct_time

    now = time.time()
    columns = acct_format.parse_format(fmt or acct_format.DEFAULT)
    refs = parse_job_refs(ids) if ids else None
    since = parse_acct_time(start, now) if start else (0.0 if refs else _midnight(now))
    until = parse_acct_time(end, now) if end else now
    if me or not (users or all_users or os.geteuid() == 0):
        users = current_user()
    query = {"start": f"{since:.3f}", "end": f"{until:.3f}", "state": states, "user": users if not all_users else None,
             "ids": ",".join(dict.fromkeys(str(r.job_id) for r in refs)) if refs else None}
    if not as_json:
        query["fields"] = ",".join(dict.fromkeys(acct_format.columns_needed(columns) + ["name"] * bool(names)
                                                 + list(FOLD_FIELDS)))
    if not allocations:
        query["steps"] = "1"
        if "fields" in query:  # whether a job ran (its batch step), and its state for that step's
            query["fields"] += ",start_time,state"
    jobs = client(endpoint).call("GET", "/accounting", query=query)["jobs"]
    if refs:
        jobs = [j for j in jobs if any(ref_names(r, j) for r in refs)]
    for key, value in (("partition", partitions), ("name", names)):
        if value:
            jobs = [j for j in jobs if j[key] in set(value.split(","))]
    if as_json:
        print_json(jobs)
        return
    separator = "|" if parsable else "" if parsable2 else None
    jobs = [{**j, "label": label} if label else j for j, label in fold_pending(
        jobs, _fold_key, lambda j: j["array_task_id"], lambda j: j["array_job_id"], lambda j: j.get("array_throttle"))]
    if not allocations:
        jobs = acct_format.with_steps(jobs)
    if steps_named:  # `-j 12.batch`, `-j 12.0`: those steps' rows, beside the jobs asked for `whole`
        jobs = [j for j in jobs if j.get("label") in steps_named or (j.get("parent") or job_label(j)) in whole]
    text = acct_format.render(columns, jobs, now, header=not noheader, parsable=separator, units=units,
                              noconvert=noconvert)
    if text:
        echo(text)


def _midnight(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


COMMAND = Command(PROG, account, [
    Opt("-S", "--starttime", dest="start", value=True, metavar="TIME",
        help="From: now-1hour, 2026-11-30, 2026-11-30T08:00, 11/30, 08:00 (default: midnight)."),
    Opt("-E", "--endtime", dest="end", value=True, metavar="TIME", help="Until (default: now); the same forms."),
    Opt("-u", "--user", dest="users", value=True, help="These users' jobs (comma-separated)."),
    Opt("--me", dest="me", help="Only my jobs."),
    Opt("-a", "--allusers", dest="all_users", help="Every user's jobs."),
    Opt("-j", "--jobs", dest="ids", multiple=True, complete="jobs",
        help="Only these jobs: 12, 12,13, 10_3, 10_[1-3]; an array's id for all its tasks."),
    Opt("-s", "--state", dest="states", value=True, help="Only jobs now in these states: CD,F,CA,TO,OOM,NF,PD,R."),
    Opt("-r", "--partition", dest="partitions", value=True, help="Only jobs in these partitions (comma-separated)."),
    Opt("--name", dest="names", value=True, help="Only jobs with these names (comma-separated)."),
    Opt("-o", "--format", dest="fmt", value=True,
        help=f"sacct fields, e.g. JobID,JobName%30,State,Elapsed,TotalCPU,MaxRSS (default: {acct_format.DEFAULT})."),
    Opt("-p", "--parsable", dest="parsable", help="Fields separated by |, each line ending in |."),
    Opt("-P", "--parsable2", dest="parsable2", help="Fields separated by |, no | at the end."),
    Opt("-n", "--noheader", dest="noheader", help="No header."),
    Opt("-X", "--allocations", dest="allocations", help="Jobs only: no step rows (J.batch, J.0, ...)."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
