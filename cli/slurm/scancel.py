"""`scancel`, as Slurm's (src/scancel/scancel.c and opt.c, 23.11): silent on success, exit 0
for jobs that already ended or are gone when cancelling.

Ids (`12`, `12_3`, `12_[1-3]`), `-s/--signal` (sig_name2num's names, with or without SIG, or a
number; before or after the ids), `-b/--batch`, `-f/--full`, `-Q/--quiet`, `-v/--verbose`,
`--me`, `-u`, `-n`, `-t`, `-p`; `--clusters` is accepted and means this melond.

Where a signal goes is Slurm's: to the job's steps (what srun started), not its batch shell;
with -b only to the batch shell; with -f to everything, the batch shell and its children
included; KILL (and a plain cancel) ends the whole job. As scancel.c does, ids alone take the
quick way (each id as typed); a signal, -b or a filter first loads the active jobs, and an id
none of them is gets "Invalid job id specified" (not with -Q) and exit 1.
"""
from __future__ import annotations

import sys

from melon_cli.args import Arg, Opt
from melon_cli.common import client, current_user, job_ids, job_label, ref_names
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SlurmCommand
from melond.errors import Conflict, MelonError, NotFound

PROG = "scancel"
#: sig_name2num's names (signals_mapping[] in src/common/proc_args.c): scancel knows these only.
SIGNALS = ("HUP", "INT", "QUIT", "ABRT", "KILL", "ALRM", "TERM", "CHLD", "USR1", "USR2", "PIPE", "URG", "CONT",
           "STOP", "TSTP", "TTIN", "TTOU", "XCPU")
#: slurm_strerror's words (src/common/slurm_errno.c) for what scancel reports.
INVALID_JOB_ID = "Invalid job id specified"
ALREADY_DONE = "Job/step already completing or completed"
NOT_NOW = "Job can not be altered now, try again later"
LISTED = "id,name,user,state,partition,array_job_id,array_task_id"


def parse_signal(text: str) -> tuple[str | int, int]:
    """(what melond is sent, the number `-v` prints) as sig_name2num reads TEXT: a number, or a
    name of its table in any case with or without SIG; else scancel's "Unknown job signal"."""
    import _signal as signal  # the numbers without `signal`'s enums, which cost a command ~3 ms
    word = text.strip()
    if word[:1] in "+-" and word[1:].isdigit() or word.isdigit():
        number = int(word)
        if 1 <= number <= 64:
            return number, number
    else:
        name = word[3:] if word[:3].upper() == "SIG" else word
        if name.upper() in SIGNALS:
            return name.upper(), int(getattr(signal, "SIG" + name.upper()))
    sys.stderr.write(f"Unknown job signal: {text}\n")
    sys.exit(1)


def cancel(ids: tuple[str, ...], signal: str | None, me: bool, user: str | None, names: str | None,
           states: str | None, partitions: str | None, clusters: str | None, quiet: bool, verbose: bool,
           batch: bool, full: bool, endpoint: str | None) -> None:
    """Signal or cancel jobs."""
    import os
    sig, number = parse_signal(signal) if signal is not None else (None, 9)
    user = str(os.getuid()) if me else user  # --me is the caller's uid (opt.c)
    filters = {"job_name": names, "partition": partitions, "state": states, "user_name": user}
    filtered = any(v is not None for v in filters.values())
    if not ids and not filtered:
        _error("No job identification provided")
        sys.exit(1)
    loud, quiet = verbose and not quiet, quiet and not verbose
    kill = number == 9
    to = "batch" if batch else "all" if full or kill else "steps"
    kind = "full " if full else "batch " if batch else ""
    c = client(endpoint)
    steps = [i for value in ids for i in value.split(",") if "." in i]
    if steps:  # `scancel 12.0`: that step's tasks alone (KILL unless -s), the job goes on
        ids = tuple(i for value in ids for i in value.split(",") if i and "." not in i)
        failed = _cancel_steps(c, steps, sig or "KILL", loud)
        if not ids and not filtered:
            sys.exit(1 if failed else 0)
    else:
        failed = False
    if sig is None and not batch and not filtered:  # has_default_opt: each id as typed (_signal_job_by_str)
        targets = [(ref, None, None) for ref in job_ids(ids)]
    else:
        targets, bad = _active(c, ids, filters, me, quiet, loud)
        failed = failed or bad
        if sig is None and not batch and targets:  # one request: the pending ones in one transaction
            sys.exit(1 if _cancel_all(c, targets, loud) or failed else 0)
    for ref, state, _ in targets:
        if loud:
            _say(f"Terminating {kind}job {ref}" if sig is None else f"Signal {number} to {kind}job {ref}")
        if state == "PD" and not kill:
            _error(f"Kill job error on job id {ref}: {NOT_NOW}")  # a pending job takes no other signal
            failed = True
            continue
        try:
            if (sig is None and not batch) or state == "PD":
                c.call("POST", f"/jobs/{ref}/cancel")
            else:
                c.call("POST", f"/jobs/{ref}/signal", {"signal": sig or "KILL", "to": to})
        except (Conflict, NotFound) as exc:  # ended or gone: said with -v, no failure for KILL (_cancel_job_id)
            if loud:
                why = ALREADY_DONE if isinstance(exc, Conflict) else INVALID_JOB_ID
                _error(f"Kill job error on job id {ref}: {why}")
            failed = failed or not kill
        except MelonError as exc:
            _error(f"Kill job error on job id {ref}: {exc}")
            failed = True
    sys.exit(1 if failed else 0)


def _cancel_all(c, targets: list[tuple[str, str, int]], loud: bool) -> bool:
    """Cancel the jobs a filter picked in one request; True if one failed other than by having
    ended (which a cancel does not count, as _cancel_job_id)."""
    if loud:
        for ref, _, _ in targets:
            _say(f"Terminating job {ref}")
    reply = c.call("POST", "/jobs/cancel", {"ids": [jid for _, _, jid in targets]})
    failed = False
    for e in reply["errors"]:
        if e["code"] in ("conflict", "not_found"):
            if loud:
                why = ALREADY_DONE if e["code"] == "conflict" else INVALID_JOB_ID
                _error(f"Kill job error on job id {e['job']}: {why}")
        else:
            _error(f"Kill job error on job id {e['job']}: {e['message']}")
            failed = True
    return failed


def _cancel_steps(c, steps: list[str], sig: str | int, loud: bool) -> bool:
    """Signal each `J.S` step's tasks (`J.batch`: the batch shell alone); True if one failed."""
    failed = False
    for ref in steps:
        job, _, step = ref.partition(".")
        if loud:
            _say(f"Terminating step {ref}")
        body = {"signal": sig, "to": "batch"} if step == "batch" else {"signal": sig, "step": int(step)} \
            if step.isdigit() else None
        try:
            if body is None or not job.replace("_", "").isdigit():
                raise NotFound(INVALID_JOB_ID)
            c.call("POST", f"/jobs/{job}/signal", body)
        except (Conflict, NotFound):
            _error(f"Kill job error on job step id {ref}: {INVALID_JOB_ID}")
            failed = True
        except MelonError as exc:
            _error(f"Kill job error on job step id {ref}: {exc}")
            failed = True
    return failed


def _active(c, ids: tuple[str, ...], filters: dict, me: bool, quiet: bool, loud: bool
            ) -> tuple[list[tuple[str, str, int]], bool]:
    """The pending and running jobs the ids and filters name, as (label, state, id), and whether an id
    named none of them (_verify_job_ids and _filter_job_records in scancel.c)."""
    from melond.spec.jobids import parse_job_refs
    jobs = c.call("GET", "/jobs", query={"state": "PD,R", "fields": LISTED})["jobs"]
    refs = parse_job_refs(ids) if ids else []
    failed = False
    for ref in refs:
        if not any(ref_names(ref, j) for j in jobs):
            if not quiet:
                _error(f"Kill job error on job id {ref}: {INVALID_JOB_ID}")
            failed = True
    jobs = [j for j in jobs if not refs or any(ref_names(r, j) for r in refs)]
    wanted = _wanted_states(filters["state"])
    user = filters["user_name"]
    for key, value in (("name", filters["job_name"]), ("partition", filters["partition"])):
        if value:
            jobs = [j for j in jobs if j[key] in set(value.split(","))]
    if user:
        mine = current_user() if me else user
        jobs = [j for j in jobs if j["user"] == mine]
    jobs = [j for j in jobs if wanted is None or j["state"] in wanted]
    if not jobs and loud and any(v is not None for v in filters.values()):
        shown = "".join(f"{k}={_state_name(v) if k == 'state' else v} " for k, v in filters.items() if v is not None)
        _error(f"No active jobs match ALL job filters, including: {shown}")
    return [(job_label(j), j["state"], j["id"]) for j in jobs], failed


def _wanted_states(states: str | None) -> set[str] | None:
    if states is None:
        return None
    from melond.spec.states import SHORT, parse_states
    return {SHORT[s] for s in parse_states(states)}


def _state_name(states: str) -> str:
    from melond.spec.states import parse_states
    return ",".join(sorted(s.value for s in parse_states(states)))


def _say(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")  # verbose(): the program's name, no level (src/common/log.c)


def _error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{PROG}: error: {message}\n")


COMMAND = SlurmCommand(PROG, cancel, [
    Opt("-s", "--signal", dest="signal", value=True, metavar="SIGNAL",
        help="Send this signal (USR1, SIGUSR1, 10) to the job's steps instead of cancelling it."),
    Opt("-b", "--batch", dest="batch", help="Signal the batch shell only (KILL unless -s)."),
    Opt("-f", "--full", dest="full", help="Signal the batch shell, its children and the steps."),
    Opt("-Q", "--quiet", dest="quiet", help="Say nothing of ids that name no active job."),
    Opt("-v", "--verbose", dest="verbose", help="Say what is sent to each job, and why a job was passed over."),
    Opt("--me", dest="me", help="My jobs."),
    Opt("-u", "--user", dest="user", value=True, help="This user's jobs."),
    Opt("-n", "--name", "--jobname", dest="names", value=True, help="Jobs with these names."),
    Opt("-t", "--state", dest="states", value=True, help="Jobs in these states (PENDING, RUNNING)."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Jobs in these partitions."),
    Opt("-M", "--clusters", "--cluster", dest="clusters", value=True,
        help="Accepted; there is one cluster, this melond's."),
], args=[Arg("ids", "*", complete="jobs")], table=tables.SCANCEL,
    ignored=frozenset({"ctld", "cron", "hurry", "sibling"}))
main = COMMAND.main
