"""`mqueue`: list jobs, as squeue does."""
from __future__ import annotations

import rich_click as click

from cli.common import CONTEXT, client, current_user, endpoint_option, handle_errors, job_ids, job_label, print_json, table
from melond.spec.timespec import format_duration, format_limit

PROG = "mqueue"
HEADERS = ["JOBID", "NAME", "USER", "ST", "TIME", "TIME_LIMIT", "NODES"]


@click.command(context_settings=CONTEXT)
@click.option("--me", is_flag=True, help="Only my jobs.")
@click.option("-u", "--user", default=None, help="Only this user's jobs.")
@click.option("-t", "--states", default=None, help="States, e.g. PD,R or all (default: pending and running).")
@click.option("-j", "--jobs", "ids", multiple=True, help="Only these job ids (comma-separated).")
@click.option("--all", "show_all", is_flag=True, help="Finished jobs too.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@endpoint_option
@handle_errors(PROG)
def main(me: bool, user: str | None, states: str | None, ids: tuple[str, ...], show_all: bool, as_json: bool,
         endpoint: str | None) -> None:
    """Show pending and running jobs (with --all, finished ones too).

    NODES is the node a job runs on, or (Reason) why it is still pending.
    """
    if me:
        user = current_user()
    wanted = job_ids(ids) if ids else None
    query = {"state": states, "user": user, "all": 1 if show_all else None,
             "ids": ",".join(map(str, wanted)) if wanted else None}
    jobs = client(endpoint).call("GET", "/jobs", query=query)["jobs"]
    if as_json:
        print_json(jobs)
        return
    rows = [[job_label(j), j["name"][:24], j["user"], j["state"], format_duration(int(j["elapsed"])),
             format_limit(j["time_limit"]), j["node"] if j.get("node") else f"({j.get('reason') or 'None'})"]
            for j in jobs]
    click.echo(table(HEADERS, rows, right={0, 4, 5}))
