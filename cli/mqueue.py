"""`mqueue`: list jobs, as squeue does."""
from __future__ import annotations

import rich_click as click

from cli.common import CONTEXT, client, current_user, endpoint_option, handle_errors, job_label, print_json, table
from melond.spec.jobids import JobRef, folded_label, parse_job_refs
from melond.spec.timespec import format_duration, format_limit

PROG = "mqueue"
HEADERS = ["JOBID", "NAME", "USER", "ST", "TIME", "TIME_LIMIT", "NODES"]


@click.command(context_settings=CONTEXT)
@click.option("--me", is_flag=True, help="Only my jobs.")
@click.option("-u", "--user", default=None, help="Only this user's jobs.")
@click.option("-t", "--states", default=None, help="States, e.g. PD,R or all (default: pending and running).")
@click.option("-j", "--jobs", "ids", multiple=True, help="Only these jobs: 12, 12,13, 10_3, 10_[1-3]; an array's id for all its tasks.")
@click.option("--all", "show_all", is_flag=True, help="Finished jobs too.")
@click.option("-r", "--array", "one_per_task", is_flag=True,
              help="One line per array task (by default an array's pending tasks share one line, 13_[5-9%3]).")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@endpoint_option
@handle_errors(PROG)
def main(me: bool, user: str | None, states: str | None, ids: tuple[str, ...], show_all: bool,
         one_per_task: bool, as_json: bool, endpoint: str | None) -> None:
    """Show pending and running jobs (with --all, finished ones too).

    NODES is the node a job runs on, or (Reason) why it is still pending.
    """
    if me:
        user = current_user()
    refs = parse_job_refs(ids) if ids else None
    query = {"state": states, "user": user, "all": 1 if show_all else None,
             "ids": ",".join(dict.fromkeys(str(r.job_id) for r in refs)) if refs else None}
    jobs = client(endpoint).call("GET", "/jobs", query=query)["jobs"]
    if refs:
        jobs = [j for j in jobs if any(_names(r, j) for r in refs)]
    if as_json:
        print_json(jobs)
        return
    labelled = [(job_label(j), j) for j in jobs] if one_per_task else fold_pending_tasks(jobs)
    rows = [[label, j["name"][:24], j["user"], j["state"], format_duration(int(j["elapsed"])),
             format_limit(j["time_limit"]), j["node"] if j.get("node") else f"({j.get('reason') or 'None'})"]
            for label, j in labelled]
    click.echo(table(HEADERS, rows, right={0, 4, 5}))


def fold_pending_tasks(jobs: list[dict]) -> list[tuple[str, dict]]:
    """Each job with its label, an array's pending tasks alike in all but index and reason on one line
    at the first one's place (with its reason, the next to run's), as squeue shows an array's
    pending part: `13_[5-9%3]`. A task given its own limit gets its own line, as in Slurm."""
    groups: dict[tuple, list[int]] = {}
    for j in jobs:
        if (key := _fold_key(j)) is not None:
            groups.setdefault(key, []).append(j["array_task_id"])
    out = []
    for j in jobs:
        key = _fold_key(j)
        if key is None:
            out.append((job_label(j), j))
        elif (tasks := groups.pop(key, None)) is not None:
            out.append((folded_label(j["array_job_id"], tasks, j.get("array_throttle")), j))
    return out


def _fold_key(job: dict) -> tuple | None:
    if job["state"] != "PD" or job.get("array_task_id") is None:
        return None
    return job["array_job_id"], job["name"], job["user"], job["time_limit"], job.get("array_throttle")


def _names(ref: JobRef, job: dict) -> bool:
    """Does `13` (the job, or the whole array) or `13_4` (one task) name this job?"""
    if ref.task is None:
        return ref.job_id in (job["id"], job.get("array_job_id"))
    return job.get("array_job_id") == ref.job_id and job.get("array_task_id") == ref.task
