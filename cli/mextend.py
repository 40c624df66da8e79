"""`mextend`: extend the time limit of your own pending or running job."""
from __future__ import annotations

from cli import jobchannel
from cli.args import Command, Opt
from cli.common import client, each_job, echo, fmt_time, job_ids, print_json, warn
from melond.errors import ParseError
from melond.spec.timespec import format_limit, parse_extension, parse_time_limit

PROG = "mextend"


def extend(job_id: str | None, add: str | None, to: str | None, as_json: bool, endpoint: str | None) -> None:
    """Extend job ID's time limit, within your partition's MaxTime. Inside a job, without -j,
    the job extends itself (through its node: no token or network path to melond needed).

        mextend -j 42 -t +1:00:00      (one more hour)
        mextend -j 42 --to 8:00:00     (a total of eight hours)
        mextend -t +30:00              (inside a job: the job itself)
    """
    if (add is None) == (to is None):
        raise ParseError("give either -t TIME (to add) or --to LIMIT (a new total)")
    if job_id is None and jobchannel.own_job() is None:
        raise ParseError("give the job with -j ID (only inside a job may -j be left out: it is then that job)")
    body = {"add": parse_extension(add)} if add is not None else {"to": parse_time_limit(to)}
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
        return
    for r in replies:
        job = r["job"]
        echo(f"Job {job}: time limit {format_limit(r['old_limit'])} -> {format_limit(r['new_limit'])}")
        if r.get("new_deadline"):
            echo(f"Job {job} now ends at the latest at {fmt_time(r['new_deadline'])}")
        elif r["state"] == "PENDING":
            echo(f"Job {job} is pending; the new limit counts from its start")


COMMAND = Command(PROG, extend, [
    Opt("-j", "--job", dest="job_id", value=True, complete="jobs",
        help="The job to extend: 12, an array task 10_3, tasks 10_[1-3], or an array's id (all its tasks); "
             "inside a job, the job itself by default."),
    Opt("-t", "--time", dest="add", value=True, help="Time to add: +1:00:00, 30, 1-00:00:00, or 0-01-00."),
    Opt("--to", dest="to", value=True, help="Set a new total limit instead of adding."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
