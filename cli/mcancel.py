"""`mcancel`: cancel jobs, as scancel does."""
from __future__ import annotations

import sys

import rich_click as click

from cli.common import CONTEXT, client, endpoint_option, handle_errors, job_ids
from melond.errors import MelonError

PROG = "mcancel"


@click.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@endpoint_option
@handle_errors(PROG)
def main(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Cancel pending or running jobs by id. A running job gets SIGTERM, then SIGKILL after KillWait."""
    c = client(endpoint)
    failed = 0
    for jid in job_ids(ids):
        try:
            reply = c.call("POST", f"/jobs/{jid}/cancel")
        except MelonError as exc:
            click.echo(f"{PROG}: error: {exc}", err=True)
            failed += 1
            continue
        click.echo(f"Cancelling job {jid}" if reply.get("cancelling") else f"Cancelled job {jid}")
    sys.exit(1 if failed else 0)
