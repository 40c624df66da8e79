"""`mextend`: extend the time limit of your own pending or running job."""
from __future__ import annotations

import rich_click as click

from cli.common import CONTEXT, client, endpoint_option, fmt_time, handle_errors, print_json
from melond.spec.timespec import format_limit, parse_extension, parse_time_limit

PROG = "mextend"


@click.command(context_settings=CONTEXT)
@click.option("-j", "--job", "job_id", type=int, required=True, help="The job to extend.")
@click.option("-t", "--time", "add", default=None, help="Time to add: +1:00:00, 30, 1-00:00:00, or 0-01-00.")
@click.option("--to", "to", default=None, help="Set a new total limit instead of adding.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@endpoint_option
@handle_errors(PROG)
def main(job_id: int, add: str | None, to: str | None, as_json: bool, endpoint: str | None) -> None:
    """Extend job ID's time limit, within your partition's MaxTime.

        mextend -j 42 -t +1:00:00      (one more hour)
        mextend -j 42 --to 8:00:00     (a total of eight hours)
    """
    if (add is None) == (to is None):
        raise click.UsageError("give either -t TIME (to add) or --to LIMIT (a new total)")
    body = {"add": parse_extension(add)} if add is not None else {"to": parse_time_limit(to)}
    reply = client(endpoint).call("POST", f"/jobs/{job_id}/extend", body)
    if as_json:
        print_json(reply)
        return
    click.echo(f"Job {job_id}: time limit {format_limit(reply['old_limit'])} -> {format_limit(reply['new_limit'])}")
    if reply.get("new_deadline"):
        click.echo(f"Job {job_id} now ends at the latest at {fmt_time(reply['new_deadline'])}")
    elif reply["state"] == "PENDING":
        click.echo(f"Job {job_id} is pending; the new limit counts from its start")
