"""`mcancel`: cancel jobs, as scancel does."""
from __future__ import annotations

import sys

import rich_click as click

from cli.common import CONTEXT, client, each_job, endpoint_option, handle_errors, job_ids
from melond.errors import MelonError

PROG = "mcancel"


@click.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@endpoint_option
@handle_errors(PROG)
def main(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Cancel pending or running jobs: IDS are 12, 12,13, an array task 10_3 or tasks 10_[1-3]; an
    array's id cancels all its tasks. A running job gets SIGTERM, then SIGKILL after KillWait."""
    c = client(endpoint)
    failed = 0
    for jid in job_ids(ids):
        try:
            reply = c.call("POST", f"/jobs/{jid}/cancel")
        except MelonError as exc:
            click.echo(f"{PROG}: error: {exc}", err=True)
            failed += 1
            continue
        for r in each_job(reply, jid):
            click.echo(f"Cancelling job {r['job']}" if r.get("cancelling") else f"Cancelled job {r['job']}")
        for e in reply.get("errors", []):
            click.echo(f"{PROG}: error: {e['message']}", err=True)
            failed += 1
    sys.exit(1 if failed else 0)
