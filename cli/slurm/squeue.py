"""`squeue`, as Slurm prints it: the default layout, -l/--long, -o/--format, -O/--Format, -h, -t, -j,
-u, --me, -p, -n, -r, --only-job-state.

Tools parse what it prints (see SLURM-CLIENTS.md): fields without a width are not padded, the
header is the fields' titles with the format's literal text, an array's pending tasks share one
line, and `-j` with an id melond no longer holds says `slurm_load_jobs error: Invalid job id
specified` and exits 1. "Holds" is Slurm's: pending and running jobs, and those that ended within
MinJobAge (300 s), the jobs `-t all` shows.
"""
from __future__ import annotations

import os
import sys
import time

from melon_cli import queue_format
from melon_cli.args import Opt
from melon_cli.common import client, current_user, echo, job_label, ref_names
from melon_cli.mqueue import LABEL_FIELDS, fold_pending_tasks
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SlurmCommand
from melond.spec.jobids import parse_job_refs

PROG = "squeue"
DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"  # Slurm's own default
#: -l/--long (squeue.c _print_job): the state spelled out and the time limit added.
LONG_FORMAT = ("jobarrayid:.18 ,partition:.9 ,name:.8 ,username:.8 ,state:.8 ,timeused:.10 ,timelimit:.9 ,"
               "numnodes:.6 ,reasonlist:0")
MIN_JOB_AGE = 300  # seconds a finished job stays in squeue's view, as Slurm's default MinJobAge
INVALID_ID = "slurm_load_jobs error: Invalid job id specified"


STEPS_FORMAT = "%.15i %.8j %.9P %.8u %.9M %N"  # squeue.c's default for -s


def show(noheader: bool, fmt: str | None, long_fmt: str | None, long_view: bool, states: str | None,
         ids: tuple[str, ...], users: str | None, me: bool, partitions: str | None, names: str | None, array: bool,
         only_state: bool, steps: str | None, endpoint: str | None) -> None:
    """View information about jobs located in the Melon scheduling queue."""
    if steps is not None:
        _steps(steps, noheader, fmt, users or (current_user() if me else None), partitions, endpoint)
        return
    spec = _layout(fmt, long_fmt, long_view)
    refs = parse_job_refs([i for part in ids for i in part.split()]) if ids else None
    everything = states is not None and states.strip().lower() == "all"
    now = time.time()
    query = {"fields": ",".join(dict.fromkeys([*LABEL_FIELDS, *queue_format.fields_needed(spec), "partition",
                                               "end_time"]))}
    if refs or everything:
        query |= {"all": 1, "ended_since": f"{now - MIN_JOB_AGE:.3f}"}
        if refs:
            query["ids"] = ",".join(dict.fromkeys(str(r.job_id) for r in refs))
    elif states:  # finished states: those ended within MinJobAge, as Slurm still holds them
        query |= {"state": states, "ended_since": f"{now - MIN_JOB_AGE:.3f}"}
    jobs = client(endpoint).call("GET", "/jobs", query=query)["jobs"]
    if refs:
        jobs = [j for j in jobs if any(ref_names(r, j) for r in refs)]
        if not jobs and len(refs) == 1:
            sys.stderr.write(INVALID_ID + "\n")
            sys.exit(1)
        if states and not everything:
            from melond.spec.states import SHORT, parse_states
            wanted = {SHORT[s] for s in parse_states(states)}
            jobs = [j for j in jobs if j["state"] in wanted]
        elif not everything:
            jobs = [j for j in jobs if j["state"] in ("PD", "R")]
    for key, value in (("user", users or (current_user() if me else None)), ("partition", partitions),
                       ("name", names)):
        if value:
            jobs = [j for j in jobs if j[key] in set(value.split(","))]
    labelled = [(job_label(j), j) for j in jobs] if array else fold_pending_tasks(jobs)
    lines = [] if noheader else [queue_format.header(spec)]
    if long_view and not noheader:  # squeue.c main: print_date() before a long listing
        lines.insert(0, time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)))
    lines += [queue_format.render(spec, {**j, "label": label}, now) for label, j in labelled]
    if lines:
        echo("\n".join(lines))


def _steps(wanted: str, noheader: bool, fmt: str | None, users: str | None, partitions: str | None,
           endpoint: str | None) -> None:
    """`squeue -s[STEPS]`: the running steps (each running job's `batch` step, then srun's), in
    squeue's step layout; STEPS (`12.0,13`) names steps, or jobs for all their steps."""
    rows = client(endpoint).call("GET", "/steps")["steps"]
    now = time.time()
    named = {w for w in wanted.split(",") if w}
    out = []
    for st in rows:
        parent = job_label({"id": st["job_id"], "array_job_id": st["array_job_id"],
                            "array_task_id": st["array_task_id"]})
        label = f"{parent}.{st['step_id']}"
        if named and not named & {label, parent, str(st["job_id"])}:
            continue
        if (users and st["user"] not in users.split(",")) or (partitions and st["partition"] not in
                                                              partitions.split(",")):
            continue
        out.append({"label": label, "id": st["job_id"], "name": st["name"], "partition": st["partition"],
                    "user": st["user"], "elapsed": max(0.0, now - st["start_time"]), "node": st["node"] or "",
                    "state": "R", "cpus": st["cpus"], "state_name": "RUNNING"})
    spec = queue_format.parse_format(fmt or STEPS_FORMAT)
    codes = {**queue_format.CODES, "i": ("STEPID", (), lambda j, now: j["label"])}
    lines = [] if noheader else [queue_format.header(spec, codes)]
    lines += [queue_format.render(spec, row, now, codes) for row in out]
    if lines:
        echo("\n".join(lines))


def _layout(fmt: str | None, long_fmt: str | None, long_view: bool) -> list:
    """opts.c's order: -o, then -O, then -l; with none of them SQUEUE_FORMAT, then SQUEUE_FORMAT2."""
    if long_view and fmt:
        sys.stderr.write(f"{PROG}: fatal: Options -o(--format) and -l(--long) are mutually exclusive. "
                         f"Please remove one and retry.\n")
        sys.exit(1)
    if fmt or long_fmt or long_view:
        return queue_format.parse_format(fmt) if fmt else queue_format.parse_long_format(long_fmt or LONG_FORMAT)
    if os.environ.get("SQUEUE_FORMAT"):
        return queue_format.parse_format(os.environ["SQUEUE_FORMAT"])
    if os.environ.get("SQUEUE_FORMAT2"):
        return queue_format.parse_long_format(os.environ["SQUEUE_FORMAT2"])
    return queue_format.parse_format(DEFAULT_FORMAT)


COMMAND = SlurmCommand(PROG, show, [
    Opt("-h", "--noheader", dest="noheader", help="No header."),
    Opt("-o", "--format", dest="fmt", value=True, help="Fields: %[.][width]CODE, e.g. \"%i %t\"."),
    Opt("-t", "--states", dest="states", value=True, help="States: PD,R,CD,... or all."),
    Opt("-j", "--jobs", dest="ids", multiple=True, complete="jobs",
        help="Job ids (comma-separated); `-j ID` as well as `-jID` and `--jobs=ID`."),
    Opt("-u", "--user", "--users", dest="users", value=True, help="Users (comma-separated)."),
    Opt("--me", dest="me", help="My jobs."),
    Opt("-p", "--partitions", dest="partitions", value=True, help="Partitions (comma-separated)."),
    Opt("-n", "--name", dest="names", value=True, help="Job names (comma-separated)."),
    Opt("-r", "--array", dest="array", help="One line per array task."),
    Opt("-O", "--Format", dest="long_fmt", value=True, help="Fields by name: jobid:10,state:.12,name (20 wide)."),
    Opt("-l", "--long", dest="long_view", help="The state spelled out, the time limit, and the date first."),
    Opt("--only-job-state", dest="only_state", help="Accepted (Slurm's fast path): every listing here is fast."),
    Opt("-s", "--steps", dest="steps", value=True, metavar="[STEPS]",
        help="Running steps instead of jobs (-s12.0 for some: steps, or jobs' ids for all of theirs)."),
], table=tables.SQUEUE,
    ignored=frozenset({"all", "federation", "hide", "local", "noconvert", "sib", "sibling", "verbose", "cluster",
                       "clusters", "priority"}),
    strays=lambda words: [f"Unrecognized option: {words[0]}"])  # src/squeue/opts.c, after getopt_long
main = COMMAND.main
