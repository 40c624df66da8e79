"""`mnode`: operators take nodes out of service and back (scontrol update nodename=... state=...)."""
from __future__ import annotations

import rich_click as click

from melon_cli.click_common import CONTEXT, endpoint_option, handle_errors, version_option
from melon_cli.common import client
from melon_cli.completion import nodes

PROG = "mnode"


@click.group(context_settings=CONTEXT)
@version_option(PROG)
def main() -> None:
    """Drain, resume or down a node (operators only). `minfo` shows the result and the reason."""


@main.command()
@click.argument("name", shell_complete=nodes)
@click.option("--reason", required=True, help="Why; shown by minfo.")
@endpoint_option
@handle_errors(PROG)
def drain(name: str, reason: str, endpoint: str | None) -> None:
    """Start no new jobs on NAME; its running jobs finish (DRAINING, then DRAINED)."""
    client(endpoint).call("POST", f"/nodes/{name}/drain", {"reason": reason})
    click.echo(f"Node {name} draining: {reason}")


@main.command()
@click.argument("name", shell_complete=nodes)
@endpoint_option
@handle_errors(PROG)
def resume(name: str, endpoint: str | None) -> None:
    """Return NAME to service."""
    client(endpoint).call("POST", f"/nodes/{name}/resume")
    click.echo(f"Node {name} resumed")


@main.command()
@click.argument("name", shell_complete=nodes)
@click.option("--reason", required=True, help="Why; shown by minfo.")
@endpoint_option
@handle_errors(PROG)
def down(name: str, reason: str, endpoint: str | None) -> None:
    """Take NAME out of service now: its running jobs are killed and end NODE_FAIL (--requeue jobs go back to the queue)."""
    reply = client(endpoint).call("POST", f"/nodes/{name}/down", {"reason": reason})
    killed = ", ".join(map(str, reply["killed"])) or "none"
    click.echo(f"Node {name} down: {reason} (jobs killed: {killed})")
