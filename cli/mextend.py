"""`mextend`: extend the time limit of your own pending or running job."""
from __future__ import annotations

import sys

from melon_cli import jobchannel
from melon_cli.args import Command, Opt
from melon_cli.common import client, each_job, echo, fmt_time, job_ids, print_json, table, warn
from melond.errors import ParseError
from melond.spec.timespec import format_duration, format_limit, parse_extension, parse_time_limit

PROG = "mextend"


def extend(job_id: str | None, add: str | None, to: str | None, largest: bool, dry_run: bool, request: bool,
           reason: str | None, requests: bool, approve: str | None, deny: str | None, withdraw: str | None,
           budget: bool, as_json: bool, endpoint: str | None) -> None:
    """Extend job ID's time limit, within your partition's MaxTime. Inside a job, without -j,
    the job extends itself (through its node: no token or network path to melond needed).

        mextend -j 42 -t +1:00:00      (one more hour)
        mextend -j 42 --to 8:00:00     (a total of eight hours)
        mextend -t +30:00              (inside a job: the job itself)
        mextend -j 42 --max            (as much as delays no waiting job, within the caps)
        mextend -j 42 -t +2:00:00 --dry-run   (would it be granted? whom would it delay?)
        mextend -j 42 -t +2-00:00:00 --request --reason "needs two more days to converge"
        mextend --requests             (yours; operators: everyone's)   mextend --approve 3
        mextend --budget               (what your extension budgets have left)
    """
    modes = [m for m, given in (("--requests", requests), ("--approve", approve), ("--deny", deny),
                                ("--withdraw", withdraw), ("--budget", budget)) if given]
    if budget:
        if len(modes) > 1 or add is not None or to is not None or largest or request or job_id:
            raise ParseError("--budget stands alone (with --json)")
        return _budget(client(endpoint), as_json)
    if modes:
        if len(modes) > 1 or add is not None or to is not None or largest or request or job_id:
            raise ParseError(f"{modes[0]} stands alone (with --reason, --json); not with {' '.join(modes[1:]) or '-j/-t'}")
        return _requests(client(endpoint), requests, approve, deny, withdraw, reason, as_json)
    if request:
        if (add is None) == (to is None) or largest or dry_run:
            raise ParseError("--request asks for -t TIME or --to LIMIT, with --reason TEXT")
        if not reason:
            raise ParseError("say why with --reason TEXT: the operator who decides reads it")
        if job_id is None:
            raise ParseError("give the job with -j ID")
        body = {"add": parse_extension(add)} if add is not None else {"to": parse_time_limit(to)}
        filed = client(endpoint).call("POST", f"/jobs/{job_id}/extension-requests", {**body, "reason": reason})
        if as_json:
            print_json(filed)
        else:
            echo(f"Extension request {filed['id']} filed: job {job_id} to {format_limit(filed['new_limit'])}; "
                 f"an operator decides (mextend --requests shows the verdict)")
        return
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
    if jobchannel.usable(job_id, endpoint) and (answer := jobchannel.try_ask({"op": "extend", **body})) is not None:
        replies = [{"job": jobchannel.own_job(), **answer}]
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
        gpu_hours = f" ({r['gpu_hours']} GPU-hours more)" if r.get("gpu_hours") else ""
        echo(f"Job {job}: time limit {format_limit(r['old_limit'])} -> {format_limit(r['new_limit'])}{gpu_hours}")
        if r.get("new_deadline"):
            echo(f"Job {job} now ends at the latest at {fmt_time(r['new_deadline'])}")
        elif r["state"] == "PENDING":
            echo(f"Job {job} is pending; the new limit counts from its start")


REQUEST_HEADERS = ["REQUEST", "JOB", "USER", "ASKED", "STATE", "CREATED", "DECIDED_BY", "REASON / VERDICT"]


def _requests(c, listing: bool, approve: str | None, deny: str | None, withdraw: str | None, reason: str | None,
              as_json: bool) -> None:
    if listing:
        rows = c.call("GET", "/extension-requests")["requests"]
        if as_json:
            print_json(rows)
            return
        echo(table(REQUEST_HEADERS, [[str(r["id"]), str(r["job_id"]), r["user"], _asked(r), r["state"],
                                      fmt_time(r["created"]), r.get("decided_by") or "",
                                      r["reason"] + (f" / {r['verdict']}" if r.get("verdict") else "")]
                                     for r in rows]) if rows else "No extension requests")
        return
    number, action = (approve, "approve") if approve else (deny, "deny") if deny else (withdraw, "withdraw")
    if not number.isdigit():
        raise ParseError(f"--{action} takes a request's number (mextend --requests lists them), not {number!r}")
    body = {"reason": reason} if reason and action != "withdraw" else ({} if action != "withdraw" else None)
    done = c.call("POST", f"/extension-requests/{number}/{action}", body)
    if as_json:
        print_json(done)
        return
    echo(f"Extension request {number}: {done['state']}")
    ext = done.get("extension")
    if ext:
        echo(f"Job {done['job_id']}: time limit {format_limit(ext['old_limit'])} -> {format_limit(ext['new_limit'])}")


def _budget(c, as_json: bool) -> None:
    """Each extension budget that applies to you: how much of it your extensions took in its
    window, and when the oldest of them leaves it."""
    data = c.call("GET", "/extension-budget")
    if as_json:
        print_json(data)
        return
    if not data["budgets"]:
        echo(f"No extension budget applies to {data['user']}: extensions are bounded by the partitions' caps only")
        return
    for b in data["budgets"]:
        owner = f"{'QOS' if b['kind'] == 'qos' else 'Account'} {b['name']}"
        parts = []
        if b["max_count"] is not None:
            parts.append(f"{b['count']} of {b['max_count']} extensions")
        parts += [f"{name}={b['tres_hours'].get(name, 0):g} of {cap} TRES-hours" for name, cap in
                  b["max_tres_hours"].items()]
        frees = f"; the oldest leaves the window at {fmt_time(b['frees_at'])}" if b.get("frees_at") else ""
        echo(f"{owner}: {', '.join(parts)} used in the last {format_duration(int(b['window']))}{frees}")


def _asked(r: dict) -> str:
    return f"+{format_duration(r['add_seconds'])}" if r.get("add_seconds") is not None else \
        f"to {format_limit(r['to_limit'])}"


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
    Opt("--request", dest="request", help="Beyond what policy grants: ask an operator (with --reason)."),
    Opt("--reason", dest="reason", value=True, help="Why: for --request, --approve, --deny."),
    Opt("--requests", dest="requests", help="List extension requests (yours; operators: everyone's)."),
    Opt("--approve", dest="approve", value=True, metavar="N", help="Approve request N (operators; not your own)."),
    Opt("--deny", dest="deny", value=True, metavar="N", help="Deny request N, with --reason (operators)."),
    Opt("--withdraw", dest="withdraw", value=True, metavar="N", help="Withdraw your own request N."),
    Opt("--budget", dest="budget", help="What your extension budgets (per QOS and account) have left."),
    Opt("--json", dest="as_json", help="JSON for scripts."),
])
main = COMMAND.main
