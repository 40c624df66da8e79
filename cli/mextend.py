"""`mextend`: extend the time limit of your own pending or running job."""
from __future__ import annotations

import sys

from cli import jobchannel
from cli.args import Command, Opt
from cli.common import client, each_job, echo, fmt_time, job_ids, print_json, warn
from melond.errors import ParseError
from melond.spec.timespec import format_duration, format_limit, parse_extension, parse_time_limit

PROG = "mextend"


def extend(job_id: str | None, add: str | None, to: str | None, largest: bool, dry_run: bool, as_json: bool,
           endpoint: str | None) -> None:
    """Extend job ID's time limit, within your partition's MaxTime. Inside a job, without -j,
    the job extends itself (through its node: no token or network path to melond needed).

        mextend -j 42 -t +1:00:00      (one more hour)
        mextend -j 42 --to 8:00:00     (a total of eight hours)
        mextend -t +30:00              (inside a job: the job itself)
        mextend -j 42 --max            (as much as delays no waiting job, within the caps)
        mextend -j 42 -t +2:00:00 --dry-run   (would it be granted? whom would it delay?)
    """
    if (add is not None) + (to is not None) + largest != 1:
        raise ParseError("give one of -t TIME (to add), --to LIMIT (a new total) or --max (as much as delays "
                         "no waiting job)")
    if job_id is None and jobchannel.own_job() is None:
        raise ParseError("give the job with -j ID (only inside a job may -j be left out: it is then that job)")
    body: dict = {"max": True} if largest else \
        {"add": parse_extension(add)} if add is not None else {"to": parse_time_limit(to)}
    if dry_run:
        body["dry_run"] = True
    replies = []
    if jobchannel.usable(job_id, endpoint):
        try:
            replies = [{"job": jobchannel.own_job(), **jobchannel.ask({"op": "extend", **body})}]
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # no job channel on this node (an older helper): melond's API, if it is reachable
    if not replies:
        c = client(endpoint)
        for jid in job_ids([job_id or jobchannel.own_job()]):
            reply = c.call("POST", f"/jobs/{jid}/extend", body)
            for e in reply.get("errors", []):
                warn(PROG, e["message"])
            replies += each_job(reply, jid)
    if as_json:
        print_json(replies[0] if len(replies) == 1 else replies)
        if dry_run and any(not r.get("granted") for r in replies):
            sys.exit(1)
        return
    if dry_run:
        sys.exit(_dry_run(replies))
    for r in replies:
        job = r["job"]
        echo(f"Job {job}: time limit {format_limit(r['old_limit'])} -> {format_limit(r['new_limit'])}")
        if r.get("new_deadline"):
            echo(f"Job {job} now ends at the latest at {fmt_time(r['new_deadline'])}")
        elif r["state"] == "PENDING":
            echo(f"Job {job} is pending; the new limit counts from its start")


def _dry_run(replies: list[dict]) -> int:
    """What would happen, changing nothing: exit 1 if any of it would be refused."""
    refused = 0
    for r in replies:
        job = r["job"]
        if r.get("granted"):
            ends = f", ends at the latest at {fmt_time(r['new_deadline'])}" if r.get("new_deadline") else ""
            echo(f"Job {job}: would be granted: time limit {format_limit(r['old_limit'])} -> "
                 f"{format_limit(r['new_limit'])}{ends}")
        else:
            refused += 1
            echo(f"Job {job}: would be refused: {r['refused']}")
        for d in r.get("delays") or []:
            by = format_duration(int(d["by"])) if d.get("by") is not None else "indefinitely (no start in sight)"
            echo(f"  it would delay job {d['job_id']} (expected to start at {fmt_time(d['before'])}) by {by}")
    echo("Nothing was changed (--dry-run)")
    return 1 if refused else 0


COMMAND = Command(PROG, extend, [
    Opt("-j", "--job", dest="job_id", value=True, complete="jobs",
        help="The job to extend: 12, an array task 10_3, tasks 10_[1-3], or an array's id (all its tasks); "
             "inside a job, the job itself by default."),
    Opt("-t", "--time", dest="add", value=True, help="Time to add: +1:00:00, 30, 1-00:00:00, or 0-01-00."),
    Opt("--to", dest="to", value=True, help="Set a new total limit instead of adding."),
    Opt("--max", dest="largest", help="As much as delays no waiting job, within MaxTime and the caps."),
    Opt("--dry-run", dest="dry_run", help="Say what would happen (granted or refused, whom it would delay); change nothing."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
