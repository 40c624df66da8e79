"""What every command shares: the client, output helpers and job labels. Standard library only,
and cheap to import: every command loads it on its common path."""
from __future__ import annotations

import time

from melon_cli.args import echo, warn  # noqa: F401 - re-exported for the CLIs
from melond.display import table  # noqa: F401 - the CLIs' table, shared with melond --check
from melond.paths import current_user  # noqa: F401 - re-exported for the CLIs


def client(endpoint: str | None):
    from melon_cli.client import Client
    if endpoint:
        return Client.from_environment(endpoint)
    from melond.paths import default_endpoints
    first, *then = default_endpoints()
    return Client(first, fallback=then[0] if then else None)


def print_json(value: object) -> None:
    import json  # pretty output for people and scripts; the wire itself uses cli.wirejson
    echo(json.dumps(value, indent=2, sort_keys=False))


def fmt_time(epoch: float | None, none: str = "N/A") -> str:
    """Local time as Slurm prints it (2026-11-26T06:03:18), `none` for no time."""
    from melond.spec.timespec import format_clock
    return format_clock(epoch) if epoch else none


def iso(epoch: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch)) if epoch else None


def job_label(job: dict) -> str:
    """`12` or, for an array task, `10_3` as squeue shows it."""
    if job.get("array_task_id") is not None:
        return f"{job['array_job_id']}_{job['array_task_id']}"
    return str(job["id"])


def job_ids(values: tuple[str, ...] | list[str]) -> list[str]:
    """Job ids as typed (`12`, `12,13`, `10_3`, `10_[1-3,5]`), one API path segment each."""
    from melond.spec.jobids import parse_job_refs
    return [str(ref) for ref in parse_job_refs(values)]


def ref_names(ref, job: dict) -> bool:
    """Does `13` (the job, or the whole array) or `13_4` (one task) name this listed job?"""
    if ref.task is None:
        return ref.job_id in (job["id"], job.get("array_job_id"))
    return job.get("array_job_id") == ref.job_id and job.get("array_task_id") == ref.task


def pick_jobs(c, typed: list[str], user: str | None, states: str | None, names: str | None,
              partitions: str | None) -> list[dict]:
    """The pending and running jobs that filters pick (mcancel's and scancel's -u/-t/-n/-p), within
    the ids typed: each with its own id (a task's own, never its array's) and `job_label`."""
    listed = "id,name,user,state,partition,array_job_id,array_task_id"
    jobs = c.call("GET", "/jobs", query={"user": user, "state": states or "PD,R", "fields": listed})["jobs"]
    for key, value in (("name", names), ("partition", partitions)):
        if value:
            jobs = [j for j in jobs if j[key] in set(value.split(","))]
    if typed:
        from melond.spec.jobids import parse_job_refs
        refs = parse_job_refs(typed)
        jobs = [j for j in jobs if any(ref_names(r, j) for r in refs)]
    return jobs


def each_job(reply: dict, typed: str) -> list[dict]:
    """The per-job outcomes of an action on `typed`: one job's reply, or an array's list."""
    return reply["jobs"] if "jobs" in reply else [{"job": typed, **reply}]
