"""`melond`: the daemon's command line."""
from __future__ import annotations

import asyncio
import os
import sys

import rich_click as click

from melond.paths import default_state_dir


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Database, socket and node spool. Default: /var/lib/melon as root, else ~/.local/state/melon.")
@click.option("--inventory", type=click.Path(dir_okay=False), default=None,
              help="TOML inventory of partitions, operators and nodes. Default: this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the API over TCP on this port; callers need a token (mtoken create).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --port.")
@click.option("--kill-wait", type=click.FloatRange(0), default=None,
              help="Seconds between SIGTERM and SIGKILL at a time limit or cancel (Slurm's KillWait). Default 30.")
@click.option("--backup", "backup_to", type=click.Path(dir_okay=False), default=None,
              help="Copy the database, consistently, to this file (works while melond runs) and exit.")
@click.option("--check", "check_only", is_flag=True,
              help="Validate the inventory, probe every node, print a table and exit (non-zero if any node fails).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(state_dir: str | None, inventory: str | None, port: int | None, host: str,
         kill_wait: float | None, backup_to: str | None, check_only: bool, log_level: str) -> None:
    """Run the Melon scheduler daemon.

    With no inventory it runs jobs on this machine. Example:

        melond --state-dir /tmp/melon &  then  MELON_API=unix:/tmp/melon/melond.sock mbatch --wrap 'hostname'
    """
    from melond import config, logs
    from melond.daemon import Daemon, Options
    from melond.errors import MelonError

    logs.setup(log_level.upper())
    try:
        if backup_to:
            from melond.store import backup
            pages = backup(os.path.join(state_dir or default_state_dir(), "melon.db"), backup_to)
            click.echo(f"melond: copied the database to {backup_to} ({pages} pages)")
            return
        inv = config.load(inventory)
        if check_only:
            sys.exit(_check(inv, state_dir or default_state_dir()))
        daemon = Daemon(Options(state_dir=state_dir or default_state_dir(), inventory=inv, port=port, host=host,
                                kill_wait=kill_wait))
        asyncio.run(daemon.run())
    except MelonError as exc:
        click.echo(f"melond: {exc}", err=True)
        sys.exit(1)


def _check(inv, state_dir: str) -> int:
    from cli.common import table
    from melond.check import check

    headers, rows = asyncio.run(check(inv, state_dir))
    click.echo(table(headers, rows))
    failed = [r[0] for r in rows if r[2] != "yes"]
    if failed:
        click.echo(f"melond: {len(failed)} node(s) failed the check: {', '.join(failed)}", err=True)
    return 1 if failed else 0
