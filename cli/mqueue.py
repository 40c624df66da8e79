"""`mqueue`: pending and running jobs, as squeue shows them."""
from __future__ import annotations

from cli.args import Command, Opt
from cli.common import client, current_user, echo, job_label, print_json, table
from melond.spec.folding import fold_pending
from melond.spec.jobids import JobRef, parse_job_refs
from melond.spec.timespec import format_duration, format_limit

PROG = "mqueue"
HEADERS = ["JOBID", "NAME", "USER", "ST", "TIME", "TIME_LIMIT", "NODES"]
TABLE_FIELDS = "id,name,user,state,elapsed,time_limit,node,reason,array_job_id,array_task_id,array_throttle"


def show(me: bool, user: str | None, states: str | None, ids: tuple[str, ...], show_all: bool,
         one_per_task: bool, as_json: bool, endpoint: str | None) -> None:
    """Show pending and running jobs (with --all, finished ones too).

    NODES is the node a job runs on, or (Reason) why it is still pending.
    """
    if me:
        user = current_user()
    refs = parse_job_refs(ids) if ids else None
    query = {"state": states, "user": user, "all": 1 if show_all else None,
             "ids": ",".join(dict.fromkeys(str(r.job_id) for r in refs)) if refs else None}
    if not as_json:  # only what the table shows; melond folds arrays itself when no task filter needs them
        query["fields"] = TABLE_FIELDS
        query["fold"] = None if refs or one_per_task else 1
    jobs = client(endpoint).call("GET", "/jobs", query=query)["jobs"]
    if refs:
        jobs = [j for j in jobs if any(_names(r, j) for r in refs)]
    if as_json:
        print_json(jobs)
        return
    if "label" in (jobs[0] if jobs else {}):
        labelled = [(j["label"], j) for j in jobs]
    else:
        labelled = [(job_label(j), j) for j in jobs] if one_per_task else fold_pending_tasks(jobs)
    durations, limits = _Memo(format_duration), _Memo(format_limit)  # a queue repeats the same few values
    rows = [[label, j["name"][:24], j["user"], j["state"], durations[int(j["elapsed"])], limits[j["time_limit"]],
             j["node"] if j.get("node") else f"({j.get('reason') or 'None'})"]
            for label, j in labelled]
    echo(table(HEADERS, rows, right={0, 4, 5}))


class _Memo(dict):
    """`memo[x]` is `fn(x)`, computed once per distinct x."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key):
        self[key] = value = self.fn(key)
        return value


def fold_pending_tasks(jobs: list[dict]) -> list[tuple[str, dict]]:
    """Each job with its label, an array's pending tasks folded as melond folds them (`fold=1`)."""
    folded = fold_pending(jobs, _fold_key, lambda j: j["array_task_id"], lambda j: j["array_job_id"],
                          lambda j: j.get("array_throttle"))
    return [(label or job_label(j), j) for j, label in folded]


def _fold_key(job: dict) -> tuple | None:
    if job["state"] != "PD" or job.get("array_task_id") is None:
        return None
    return job["array_job_id"], job["name"], job["user"], job["time_limit"], job.get("array_throttle")


def _names(ref: JobRef, job: dict) -> bool:
    """Does `13` (the job, or the whole array) or `13_4` (one task) name this job?"""
    if ref.task is None:
        return ref.job_id in (job["id"], job.get("array_job_id"))
    return job.get("array_job_id") == ref.job_id and job.get("array_task_id") == ref.task


COMMAND = Command(PROG, show, [
    Opt("--me", dest="me", help="Only my jobs."),
    Opt("-u", "--user", dest="user", value=True, help="Only this user's jobs."),
    Opt("-t", "--states", dest="states", value=True, help="States, e.g. PD,R or all (default: pending and running)."),
    Opt("-j", "--jobs", dest="ids", multiple=True,
        help="Only these jobs: 12, 12,13, 10_3, 10_[1-3]; an array's id for all its tasks."),
    Opt("--all", dest="show_all", help="Finished jobs too."),
    Opt("-r", "--array", dest="one_per_task",
        help="One line per array task (by default an array's pending tasks share one line, 13_[5-9%3])."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
