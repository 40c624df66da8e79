"""`mhold` and `mrelease`: keep a pending job from starting, and let it go (scontrol hold/release)."""
from __future__ import annotations

import sys

import rich_click as click

from cli.common import CONTEXT, client, each_job, endpoint_option, handle_errors, job_ids
from melond.errors import MelonError


def _apply(prog: str, action: str, done: str, ids: tuple[str, ...], endpoint: str | None) -> None:
    c = client(endpoint)
    failed = 0
    for jid in job_ids(ids):
        try:
            reply = c.call("POST", f"/jobs/{jid}/{action}")
        except MelonError as exc:
            click.echo(f"{prog}: error: {exc}", err=True)
            failed += 1
            continue
        for r in each_job(reply, jid):
            click.echo(f"{done} job {r['job']}")
        for e in reply.get("errors", []):
            click.echo(f"{prog}: error: {e['message']}", err=True)
            failed += 1
    sys.exit(1 if failed else 0)


@click.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@endpoint_option
@handle_errors("mhold")
def hold(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Hold pending jobs: they stay pending (JobHeldUser) until released."""
    _apply("mhold", "hold", "Held", ids, endpoint)


@click.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@endpoint_option
@handle_errors("mrelease")
def release(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Release held jobs (submitted with -H or held with mhold) so they may start."""
    _apply("mrelease", "release", "Released", ids, endpoint)
