"""`mcancel`: cancel jobs, as scancel does."""
from __future__ import annotations

import sys

from cli.args import Arg, Command, error
from cli.common import client, each_job, echo, job_ids
from melond.errors import MelonError

PROG = "mcancel"


def cancel(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Cancel pending or running jobs: IDS are 12, 12,13, an array task 10_3 or tasks 10_[1-3]; an
    array's id cancels all its tasks. A running job gets SIGTERM, then SIGKILL after KillWait."""
    c = client(endpoint)
    failed = 0
    for jid in job_ids(ids):
        try:
            reply = c.call("POST", f"/jobs/{jid}/cancel")
        except MelonError as exc:
            error(PROG, str(exc))
            failed += 1
            continue
        for r in each_job(reply, jid):
            echo(f"Cancelling job {r['job']}" if r.get("cancelling") else f"Cancelled job {r['job']}")
        for e in reply.get("errors", []):
            error(PROG, e["message"])
            failed += 1
    sys.exit(1 if failed else 0)


COMMAND = Command(PROG, cancel, [], args=[Arg("ids", "+")])
main = COMMAND.main
