"""`mcancel`: cancel jobs, or send them a signal, as scancel does."""
from __future__ import annotations

import sys

from melon_cli.args import Arg, Command, Opt, error
from melon_cli.common import client, current_user, each_job, echo, job_ids, job_label, pick_jobs
from melond.errors import MelonError, ParseError

PROG = "mcancel"


def cancel(ids: tuple[str, ...], user: str | None, me: bool, states: str | None, names: str | None,
           partitions: str | None, signal: str | None, interactive: bool, endpoint: str | None) -> None:
    """Cancel jobs, or with -s send them a signal. IDS are 12, 12,13, an array task 10_3 or tasks
    10_[1-3]; an array's id means all its tasks. Filters (-u, --me, -t, -n, -p) pick jobs, from IDS
    if given; a running job gets SIGTERM, then SIGKILL after KillWait.

        mcancel 12 13          mcancel --me -t PD          mcancel -s USR1 12
    """
    sig = None
    if signal is not None:
        from melond.spec.timespec import signal_name
        sig = signal_name(signal)
    if me:
        user = current_user()
    filtered = any(v is not None for v in (user, states, names, partitions))
    if not ids and not filtered:
        raise ParseError("give job ids, or filters that pick the jobs (-u USER, --me, -t STATES, -n NAME, "
                         "-p PARTITION); `mcancel --me` cancels all your jobs")
    c = client(endpoint)
    targets = job_ids(ids) if ids else []
    if filtered:
        picked = pick_jobs(c, targets, user, states, names, partitions)
        if sig is None and not interactive:  # one request, pending ones cancelled in one transaction
            refused = _report(c.call("POST", "/jobs/cancel", {"ids": [j["id"] for j in picked]}), sig) if picked else 0
            sys.exit(1 if refused else 0)
        targets = [job_label(j) for j in picked]
    failed = 0
    for ref in targets:
        if interactive and not _confirm(ref, "signal" if sig else "cancel"):
            continue
        try:
            if sig is None:
                reply = c.call("POST", f"/jobs/{ref}/cancel")
            else:
                reply = c.call("POST", f"/jobs/{ref}/signal", {"signal": sig})
        except MelonError as exc:
            error(PROG, str(exc))
            failed += 1
            continue
        failed += _report({"jobs": each_job(reply, ref), "errors": reply.get("errors", [])}, sig)
    sys.exit(1 if failed else 0)


def _report(reply: dict, sig: str | int | None) -> int:
    """Say what became of each job; the number refused."""
    for r in reply["jobs"]:
        if sig is not None:
            echo(f"Sent signal {'SIG' + sig if isinstance(sig, str) else sig} to job {r['job']}")
        else:
            echo(f"Cancelling job {r['job']}" if r.get("cancelling") else f"Cancelled job {r['job']}")
    for e in reply["errors"]:
        error(PROG, e["message"])
    return len(reply["errors"])


def _confirm(ref: str, action: str) -> bool:
    sys.stdout.write(f"{action.capitalize()} job {ref} [y/n]? ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


COMMAND = Command(PROG, cancel, [
    Opt("-u", "--user", dest="user", value=True, help="Only this user's jobs."),
    Opt("--me", dest="me", help="Only my jobs."),
    Opt("-t", "--state", dest="states", value=True, help="Only jobs in these states: PD, R or PD,R."),
    Opt("-n", "--name", dest="names", value=True, help="Only jobs with these names (comma-separated)."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Only jobs in these partitions (comma-separated)."),
    Opt("-s", "--signal", dest="signal", value=True, metavar="SIGNAL",
        help="Send this signal (USR1, TERM, 10, ...) to every process of each running job instead of cancelling."),
    Opt("-i", "--interactive", dest="interactive", help="Ask before acting on each job."),
], args=[Arg("ids", "*", complete="jobs")])
main = COMMAND.main
