"""`minfo`: nodes and what runs on them, as sinfo does."""
from __future__ import annotations

import rich_click as click

from melon_cli.click_common import CONTEXT, endpoint_option, handle_errors, version_option
from melon_cli.common import client, print_json, table

PROG = "minfo"
HEADERS = ["NODE", "PARTITION", "STATE", "CPUS(A/T)", "MEMORY_MB(A/T)", "JOBS", "LIMITS"]


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@click.option("--stats", is_flag=True,
              help="melond's figures since it started, as sdiag's: jobs submitted, started and ended, scheduling "
                   "passes and their time, commits, requests by route, and their rates per minute.")
@endpoint_option
@version_option(PROG)
@handle_errors(PROG)
def main(as_json: bool, stats: bool, endpoint: str | None) -> None:
    """Show every node: state (idle, mixed, allocated, draining, drained, down), CPUs and memory, and how limits are enforced.

    With --stats, melond's own figures instead (what Prometheus reads from /metrics, summed)."""
    if stats:
        figures = client(endpoint).call("GET", "/stats")
        if as_json:
            print_json(figures)
        else:
            from melon_cli.stats_format import render
            click.echo("\n".join(render(figures)))
        return
    reply = client(endpoint).call("GET", "/nodes")
    nodes = reply["nodes"]
    if as_json:
        print_json(nodes)
        return
    rows = [[n["name"], n["partition"], n["state"], f"{n['cpus_used']}/{n['cpus']}",
             f"{n['memory_used']}/{n['memory']}", str(n["jobs"]), n["backend"]] for n in nodes]
    headers = HEADERS
    if any(n.get("gres") for n in nodes):  # a column of its own only where some node has GPUs or the like
        headers = [*HEADERS, "GRES"]
        rows = [[*row, n.get("gres") or "-"] for row, n in zip(rows, nodes)]
    click.echo(table(headers, rows))
    for n in nodes:
        if not n["enforcement"] and n["state"] != "down":
            click.echo(f"note: node {n['name']} does not enforce CPU or memory limits: {n['backend_reason']}")
        if not n.get("pinned", True) and n["state"] != "down":
            click.echo(f"note: node {n['name']} does not pin jobs to CPUs of their own: {n['pinning']}")
        if n.get("gpus_busy"):
            busy = ", ".join(f"{i} (pids {', '.join(map(str, pids))})" for i, pids in n["gpus_busy"].items())
            click.echo(f"note: node {n['name']}'s GPU {busy} ran processes melond did not start when it last reached "
                       f"the node: not handed out to jobs")
        if (n.get("device_isolation") or "").startswith("NOT") and n["state"] != "down":
            click.echo(f"note: node {n['name']}'s devices are not isolated: {n['device_isolation'].partition(': ')[2]}")
        if n["state"] in ("down", "draining", "drained") and n.get("reason"):
            click.echo(f"note: node {n['name']} is {n['state']}: {n['reason']}")
        if n.get("runs_as"):
            click.echo(f"note: node {n['name']} runs only the jobs of {_accounts(n['runs_as'])}")
    if reply.get("leader"):
        click.echo(_leader(reply["leader"]))


def _leader(info: dict) -> str:
    """Two melonds over one database: which leads (this one, as it answered), since when."""
    from melon_cli.common import fmt_time
    return (f"leader: {info.get('holder')} at {info.get('address')}, epoch {info['epoch']}, "
            f"since {fmt_time(info.get('since'))}")


def _accounts(runs_as: dict) -> str:
    """alice (as alice, limits cgroup-v1-user), carol (as cs123, limits none, not connected)."""
    return ", ".join(f"{user} (as {a['account']}, limits {a['backend']}{'' if a['up'] else ', not connected'})"
                     for user, a in runs_as.items())
