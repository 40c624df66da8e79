"""`mextend`: extend the time limit of your own pending or running job."""
from __future__ import annotations

from cli.args import Command, Opt
from cli.common import client, each_job, echo, fmt_time, job_ids, print_json, warn
from melond.errors import ParseError
from melond.spec.timespec import format_limit, parse_extension, parse_time_limit

PROG = "mextend"


def extend(job_id: str, add: str | None, to: str | None, as_json: bool, endpoint: str | None) -> None:
    """Extend job ID's time limit, within your partition's MaxTime.

        mextend -j 42 -t +1:00:00      (one more hour)
        mextend -j 42 --to 8:00:00     (a total of eight hours)
    """
    if (add is None) == (to is None):
        raise ParseError("give either -t TIME (to add) or --to LIMIT (a new total)")
    body = {"add": parse_extension(add)} if add is not None else {"to": parse_time_limit(to)}
    c = client(endpoint)
    replies = []
    for jid in job_ids([job_id]):
        reply = c.call("POST", f"/jobs/{jid}/extend", body)
        for e in reply.get("errors", []):
            warn(PROG, e["message"])
        replies += each_job(reply, jid)
    if as_json:
        print_json(replies[0] if len(replies) == 1 else replies)
        return
    for r in replies:
        job = r["job"]
        echo(f"Job {job}: time limit {format_limit(r['old_limit'])} -> {format_limit(r['new_limit'])}")
        if r.get("new_deadline"):
            echo(f"Job {job} now ends at the latest at {fmt_time(r['new_deadline'])}")
        elif r["state"] == "PENDING":
            echo(f"Job {job} is pending; the new limit counts from its start")


COMMAND = Command(PROG, extend, [
    Opt("-j", "--job", dest="job_id", value=True, required=True, complete="jobs",
        help="The job to extend: 12, an array task 10_3, tasks 10_[1-3], or an array's id (all its tasks)."),
    Opt("-t", "--time", dest="add", value=True, help="Time to add: +1:00:00, 30, 1-00:00:00, or 0-01-00."),
    Opt("--to", dest="to", value=True, help="Set a new total limit instead of adding."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
