"""`mqueue`: pending and running jobs, as squeue shows them."""
from __future__ import annotations

import sys
import time

from melon_cli import queue_format
from melon_cli.args import Command, Opt
from melon_cli.common import client, current_user, echo, job_label, print_json, ref_names, table
from melond.errors import ParseError
from melond.spec.folding import fold_pending
from melond.spec.jobids import parse_job_refs
from melond.spec.timespec import format_duration, format_limit

PROG = "mqueue"
HEADERS = ["JOBID", "NAME", "USER", "ST", "TIME", "TIME_LIMIT", "TIME_LEFT", "NODES"]
TABLE_FIELDS = ("id", "name", "user", "state", "elapsed", "time_limit", "node", "node_list", "reason", "array_job_id",
                "array_task_id", "array_throttle")
LABEL_FIELDS = ("id", "state", "name", "user", "time_limit", "array_job_id", "array_task_id", "array_throttle")
FILTER_FIELDS = {"partitions": "partition", "names": "name", "nodes": "node"}
START_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %R"  # squeue --start's columns
WATCH_SECONDS = 2.0
CLEAR = "\x1b[H\x1b[2J"


def show(me: bool, user: str | None, states: str | None, ids: tuple[str, ...], show_all: bool,
         one_per_task: bool, fmt: str | None, noheader: bool, partitions: str | None, names: str | None,
         nodes: str | None, sort: str | None, start: bool, iterate: str | None, watch: bool, as_json: bool,
         endpoint: str | None) -> None:
    """Show pending and running jobs (with --all, finished ones too).

    NODES is the node a job runs on, or (Reason) why it is still pending. TIME_LEFT ends in `!`
    for a running job in the last 10 % of its limit. -o takes squeue's
    format fields, e.g. mqueue -o "%.10i %.9P %.20j %.8u %.2t %.10M %.10L %R".
    """
    if me:
        user = current_user()
    spec = queue_format.parse_format(START_FORMAT if start and not fmt else fmt) if fmt or start else None
    order = queue_format.parse_sort(sort) if sort else None
    every = _interval(iterate, watch)
    refs = parse_job_refs(ids) if ids else None
    wanted = {key: set(filter(None, value.split(","))) for key, value in
              (("partitions", partitions), ("names", names), ("nodes", nodes)) if value}
    query = {"state": "PD" if start and not states else states, "user": user, "all": 1 if show_all else None,
             "ids": ",".join(dict.fromkeys(str(r.job_id) for r in refs)) if refs else None}
    if not as_json:  # only what is shown; melond folds arrays itself unless a task filter needs them
        needed = queue_format.fields_needed(spec) if spec else list(TABLE_FIELDS)
        extra = [FILTER_FIELDS[k] for k in wanted] + ["node_list"] * ("nodes" in wanted) + \
            [f for code, _ in order or () for f in queue_format.CODES[code][1]]
        query["fields"] = ",".join(dict.fromkeys([*LABEL_FIELDS, *needed, *extra]))
        query["fold"] = None if refs or one_per_task else 1
    c = client(endpoint)
    while True:
        jobs = c.call("GET", "/jobs", query=query)["jobs"]
        if refs:
            jobs = [j for j in jobs if any(ref_names(r, j) for r in refs)]
        for key, values in wanted.items():
            jobs = [j for j in jobs if (_on_any(j, values) if key == "nodes" else j.get(FILTER_FIELDS[key]) in values)]
        if as_json:
            print_json(jobs)
        else:
            text = _render(jobs, spec, noheader, one_per_task, order, start)
            if watch:
                sys.stdout.write(CLEAR)
            elif every:
                echo(time.strftime("%a %b %d %H:%M:%S %Y"))
            if text:  # -h over an empty queue prints nothing, as squeue does
                echo(text)
        if not every:
            return
        sys.stdout.flush()
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            return


def _on_any(job: dict, nodes: set[str]) -> bool:
    """Does the job run on one of `nodes` (any of a spanning job's)?"""
    if job.get("node_list") and job["node_list"] != job.get("node"):
        from melond.spec.timespec import expand_hostlist
        return not nodes.isdisjoint(expand_hostlist(job["node_list"]))
    return job.get("node") in nodes


def _render(jobs: list[dict], spec, noheader: bool, one_per_task: bool, order, start: bool) -> str:
    if "label" in (jobs[0] if jobs else {}):
        labelled = [(j["label"], j) for j in jobs]
    else:
        labelled = [(job_label(j), j) for j in jobs] if one_per_task else fold_pending_tasks(jobs)
    if order:
        now = time.time()
        for code, descending in reversed(order):
            labelled.sort(key=lambda lj: _sort_value(code, lj[1], now), reverse=descending)
    elif start:
        labelled.sort(key=lambda lj: (lj[1].get("expected_start") is None, lj[1].get("expected_start") or 0))
    if spec is not None:
        now = time.time()
        lines = [] if noheader else [queue_format.header(spec)]
        lines += [queue_format.render(spec, {**j, "label": label}, now) for label, j in labelled]
        return "\n".join(lines)
    durations, limits = _Memo(format_duration), _Memo(format_limit)  # a queue repeats the same few values
    rows = [[label, j["name"][:24], j["user"], j["state"], durations[int(j["elapsed"])], limits[j["time_limit"]],
             queue_format.time_left(j), j.get("node_list") or j.get("node") or f"({j.get('reason') or 'None'})"]
            for label, j in labelled]
    text = table(HEADERS, rows, right={0, 4, 5, 6})
    return text.partition("\n")[2] if noheader else text


_RAW = {"i": lambda j: (j.get("array_job_id") or j["id"], j.get("array_task_id") or 0),
        "A": lambda j: j.get("array_job_id") or j["id"], "M": lambda j: j["elapsed"],
        "l": lambda j: j["time_limit"] or float("inf"), "C": lambda j: j["cpus"], "m": lambda j: j["memory"],
        "V": lambda j: j["submit_time"], "S": lambda j: j.get("start_time") or j.get("expected_start") or 0}


def _sort_value(code: str, job: dict, now: float):
    raw = _RAW.get(code)
    return raw(job) if raw else queue_format.CODES[code][2](job, now)


def _interval(iterate: str | None, watch: bool) -> float | None:
    if iterate is None:
        return WATCH_SECONDS if watch else None
    try:
        seconds = float(iterate)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds > 86400:
        raise ParseError(f"-i/--iterate {iterate!r} is not a number of seconds between 0 and 86400 (e.g. 5)")
    return seconds


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


COMMAND = Command(PROG, show, [
    Opt("--me", dest="me", help="Only my jobs."),
    Opt("-u", "--user", dest="user", value=True, help="Only this user's jobs."),
    Opt("-t", "--states", dest="states", value=True, help="States, e.g. PD,R or all (default: pending and running)."),
    Opt("-j", "--jobs", dest="ids", multiple=True, complete="jobs",
        help="Only these jobs: 12, 12,13, 10_3, 10_[1-3]; an array's id for all its tasks."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Only jobs in these partitions (comma-separated)."),
    Opt("-n", "--name", dest="names", value=True, help="Only jobs with these names (comma-separated)."),
    Opt("-w", "--nodelist", dest="nodes", value=True, help="Only jobs running on these nodes (comma-separated)."),
    Opt("--all", dest="show_all", help="Finished jobs too."),
    Opt("-r", "--array", dest="one_per_task",
        help="One line per array task (by default an array's pending tasks share one line, 13_[5-9%3])."),
    Opt("-o", "--format", dest="fmt", value=True,
        help="squeue's format: %[.][width]CODE fields, e.g. \"%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R\"."),
    Opt("-h", "--noheader", dest="noheader", help="No header line."),
    Opt("-S", "--sort", dest="sort", value=True, help="Sort by format codes, - for descending: -S -t,i."),
    Opt("--start", dest="start", help="Pending jobs with the scheduler's expected start time (START_TIME)."),
    Opt("-i", "--iterate", dest="iterate", value=True, metavar="SECONDS", help="Print again every SECONDS."),
    Opt("--watch", dest="watch", help="A live table, redrawn in place every 2 s (or -i SECONDS); Ctrl-C ends it."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
], help_flags=("--help",))
main = COMMAND.main
