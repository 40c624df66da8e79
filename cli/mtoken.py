"""`mtoken`: bearer tokens for melond's TCP API, issued over the Unix socket to the calling user."""
from __future__ import annotations

import os

import rich_click as click

from melon_cli.click_common import CONTEXT, endpoint_option, handle_errors, version_option
from melon_cli.common import client, fmt_time, print_json, table

PROG = "mtoken"
HEADERS = ["ID", "USER", "CREATED", "EXPIRES", "LAST_USED", "SESSION_OF"]  # a browser's sign-in: its token's id


@click.group(context_settings=CONTEXT)
@version_option(PROG)
def main() -> None:
    """Create, list and revoke your tokens for melond's TCP API (`melond --port`).

    Example, on the machine melond runs on:  mtoken create --save   then, anywhere:
    MELON_API=https://login1:8443 mqueue
    """


@main.command()
@click.option("--expires", default="30d", show_default=True, metavar="DURATION",
              help="Lifetime: a number and a unit s, m, h, d or w (at most 365d; no token lives forever).")
@click.option("--save", is_flag=True,
              help="Write the token to MELON_TOKEN_FILE or ~/.config/melon/token (mode 0600) instead of printing it.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts (with the token).")
@endpoint_option
@handle_errors(PROG)
def create(expires: str, save: bool, as_json: bool, endpoint: str | None) -> None:
    """Make a token for yourself (over the Unix socket only). It is shown once; melond keeps its hash."""
    from melon_cli.client import token_file
    from melond.api.tokens import parse_ttl

    reply = client(endpoint).call("POST", "/tokens", {"ttl": parse_ttl(expires)})
    what = f"token {reply['id']} for {reply['user']}, expires {fmt_time(reply['expires'])}"
    if save:
        path = token_file()
        _save(path, reply["token"])
        click.echo(f"Saved {what} to {path}")
    elif as_json:
        print_json(reply)
    else:
        click.echo(reply["token"])
        click.echo(f"{PROG}: {what}; send it as `Authorization: Bearer ...`, or set MELON_TOKEN for the CLIs",
                   err=True)


@main.command(name="list")
@click.option("--all", "everyone", is_flag=True, help="Every user's tokens (operators).")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@endpoint_option
@handle_errors(PROG)
def list_(everyone: bool, as_json: bool, endpoint: str | None) -> None:
    """Your tokens that are not revoked (never their secrets); expired ones until you revoke them."""
    rows = client(endpoint).call("GET", "/tokens", query={"all": 1 if everyone else None})["tokens"]
    if as_json:
        print_json(rows)
        return
    click.echo(table(HEADERS, [[t["id"], t["user"], fmt_time(t["created"]), fmt_time(t["expires"]),
                                fmt_time(t["last_used"]), t.get("parent") or "-"] for t in rows]))


@main.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="Revoke every user's tokens (operators).")
@endpoint_option
@handle_errors(PROG)
def revoke(ids: tuple[str, ...], everyone: bool, endpoint: str | None) -> None:
    """Revoke tokens by ID (as `mtoken list` shows); they stop working at once."""
    if everyone == bool(ids):
        raise click.UsageError("give token IDs, or --all (operators), not both")
    done = client(endpoint).call("POST", "/tokens/revoke", {"ids": list(ids), "all": everyone})["revoked"]
    for token_id in done:
        click.echo(f"Revoked token {token_id}")
    if everyone and not done:
        click.echo("No tokens to revoke")


def _save(path: str, token: str) -> None:
    from melond.files import write_new

    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    write_new(path, (token + "\n").encode(), 0o600, replace=True)
