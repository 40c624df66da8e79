"""`melond`: the daemon's command line."""
from __future__ import annotations

import asyncio
import os
import sys

import rich_click as click

from melond.logs import FORMATS
from melond.paths import CONFIG_ENV, SYSTEM_CONFIG, SYSTEMD_UNIT, default_state_dir
from melond.version import HELP, __version__, version_line


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Database, socket and node spool. Default: /var/lib/melon as root, else ~/.local/state/melon.")
@click.option("--inventory", type=click.Path(dir_okay=False), default=None,
              help=f"TOML inventory of partitions, operators and nodes. Default: ${CONFIG_ENV} if set, else "
                   f"{SYSTEM_CONFIG} (root) or ~/.config/melon/melon.toml (others) where it exists, "
                   "else this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the API over TCP on this port; callers need a token (mtoken create).")
@click.option("--host", "hosts", multiple=True, metavar="ADDR",
              help="An address for --port (repeatable). Default: both loopbacks, 127.0.0.1 and ::1.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="Serve --port over TLS with this PEM certificate (overrides the inventory's [tls]).")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="The private key for --tls-cert.")
@click.option("--kill-wait", type=click.FloatRange(0), default=None,
              help="Seconds between SIGTERM and SIGKILL at a time limit or cancel (Slurm's KillWait). Default 30.")
@click.option("--backup", "backup_to", type=click.Path(dir_okay=False), default=None,
              help="Copy the database, consistently, to this file (works while melond runs) and exit.")
@click.option("--check", "check_only", is_flag=True,
              help="Validate the inventory, probe every node, print a table and exit (non-zero if any node fails).")
@click.option("--print-node-setup", "setup_node", default=None, metavar="NODE",
              help="Probe NODE and print the one-time root commands that give it per-job limits when melond "
                   "logs in as an account that is not root (exit 1 until none are needed).")
@click.option("--gen-cert", "gen_cert", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write a self-signed TLS certificate and key (0600) to DIR, print how to use them, and exit.")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="A name or address clients use for melond, for --gen-cert (repeatable). Default: this host's.")
@click.option("--init-keys", "init_keys", is_flag=False, flag_value="", default=None, metavar="[DIR]",
              help="Write the ed25519 SSH key pair melond uses for nodes (default DIR: STATE_DIR/keys), "
                   "print where it goes, and exit.")
@click.option("--print-systemd-unit", "print_unit", is_flag=True,
              help="Print the systemd unit that runs this melond as a service, and exit.")
@click.option("--install-systemd-unit", "install_unit", is_flag=False, flag_value=SYSTEMD_UNIT, default=None,
              metavar="[PATH]", help=f"Write that unit to PATH (default {SYSTEMD_UNIT}), make "
                                     f"{os.path.dirname(SYSTEM_CONFIG)}, print the systemctl command that "
                                     "starts it, and exit.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", type=click.Choice(FORMATS), default=None,
              help="Default: text on a terminal, else JSON lines (one event per line, for the journal).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Append the log to this file instead of stderr; SIGHUP reopens it (logrotate).")
@click.version_option(__version__, "--version", message=version_line("melond"), help=HELP)
def main(state_dir: str | None, inventory: str | None, port: int | None, hosts: tuple[str, ...], tls_cert: str | None,
         tls_key: str | None, kill_wait: float | None, backup_to: str | None, check_only: bool, setup_node: str | None,
         gen_cert: str | None, hostnames: tuple[str, ...], init_keys: str | None, print_unit: bool,
         install_unit: str | None, log_level: str, log_format: str | None, log_file: str | None) -> None:
    """Run the Melon scheduler daemon.

    With no inventory it runs jobs on this machine. Example:

        melond &  then  mbatch --wrap 'hostname'   (state in ~/.local/state/melon; as root, /var/lib/melon)
    """
    from melond import config, logs
    from melond.daemon import Daemon, Options
    from melond.errors import MelonError

    try:
        if print_unit or install_unit is not None:
            return _systemd_unit(install_unit)
        logs.setup(log_level.upper(), log_format, log_file)
        if backup_to:
            from melond.state.store import backup
            url = config.load(_inventory_path(inventory)[0]).store.url
            if url is not None:
                raise MelonError("the state is in PostgreSQL ([store] url), not in a file of the state directory: "
                                 "back it up with PostgreSQL's own tools (pg_dump, or the server's base backups)")
            pages = backup(os.path.join(state_dir or default_state_dir(), "melon.db"), backup_to)
            click.echo(f"melond: copied the database to {backup_to} ({pages} pages)")
            return
        if gen_cert is not None:
            return _gen_cert(gen_cert, hostnames)
        if init_keys is not None:
            return _init_keys(init_keys or os.path.join(state_dir or default_state_dir(), "keys"))
        if bool(tls_cert) != bool(tls_key):
            raise click.UsageError("give both --tls-cert and --tls-key, or neither")
        inventory, source = _inventory_path(inventory)
        inv = config.load(inventory)
        if check_only:
            sys.exit(_check(inv, state_dir or default_state_dir()))
        if setup_node is not None:
            sys.exit(_print_setup(inv, state_dir or default_state_dir(), setup_node))
        daemon = Daemon(Options(state_dir=state_dir or default_state_dir(), inventory=inv, port=port, hosts=hosts,
                                kill_wait=kill_wait, tls_cert=tls_cert and os.path.abspath(tls_cert),
                                tls_key=tls_key and os.path.abspath(tls_key),
                                inventory_file=inventory and os.path.abspath(inventory), inventory_source=source))
        asyncio.run(daemon.run())
    except MelonError as exc:
        click.echo(f"melond: {exc}", err=True)
        sys.exit(1)


def _inventory_path(given: str | None) -> tuple[str | None, str]:
    """--inventory, else the default lookup (melond.paths); a MELON_CONFIG naming no file is an
    error rather than a silent fall back to this machine alone."""
    from melond.errors import MelonError
    from melond.paths import default_config

    if given is not None:
        return given, "--inventory"
    path, source = default_config()
    if source == CONFIG_ENV and not os.path.exists(path):
        raise MelonError(f"{CONFIG_ENV}={path}: no such file; point {CONFIG_ENV} at an existing TOML inventory "
                         "or unset it")
    return path, source


def _systemd_unit(install_to: str | None) -> None:
    from melond.service import install, this_melond, unit_text

    if install_to is None:
        click.echo(unit_text(this_melond()), nl=False)
    else:
        click.echo(install(install_to, os.path.dirname(SYSTEM_CONFIG), this_melond()))


def _print_setup(inv, state_dir: str, name: str) -> int:
    from melond.errors import MelonError
    from melond.nodes.check import probe_info
    from melond.nodes.setup import setup_text

    links = inv.links()  # a personal node's are user@node: NODE names them all, user@NODE one
    chosen = {link: entry for link, entry in links.items() if name in (link, entry[0])}
    if not chosen:
        raise MelonError(f"no node {name!r} in the inventory; nodes: {', '.join(inv.node_table())}")
    texts, ready = [], True
    for link, (_, _, node) in chosen.items():
        text, link_ready = setup_text(link, asyncio.run(probe_info(node, state_dir)))
        texts.append(text)
        ready = ready and link_ready
    click.echo("\n\n".join(texts))
    return 0 if ready else 1


def _check(inv, state_dir: str) -> int:
    from melond.display import table
    from melond.nodes.check import check

    headers, rows = asyncio.run(check(inv, state_dir))
    click.echo(table(headers, rows))
    failed = [r[0] for r in rows if r[2] != "yes"]
    if failed:
        click.echo(f"melond: {len(failed)} node(s) failed the check: {', '.join(failed)}", err=True)
    return 1 if failed else 0


def _gen_cert(directory: str, hostnames: tuple[str, ...]) -> None:
    from melond.keys import CERT_DAYS, cert_names, write_cert

    names = cert_names(hostnames)
    cert, key = write_cert(directory, names)
    click.echo(f"""melond: wrote {cert} (public) and {key} (private, mode 0600),
self-signed, valid {CERT_DAYS} days, for: {', '.join(names)}

Serve the TCP API over TLS:
  melond --port 8443 --tls-cert {cert} --tls-key {key}
  (or in the inventory: [tls] cert = "{cert}", key = "{key}")
Clients (copy {cert} to them; it holds no secret):
  MELON_API=https://{names[0]}:8443 MELON_CA_FILE={cert} mqueue""")


def _init_keys(directory: str) -> None:
    import socket

    from melond.paths import current_user
    from melond.keys import write_ssh_keys

    private, public = write_ssh_keys(directory, f"melond@{socket.gethostname()}")
    click.echo(f"""melond: wrote {private} (private, mode 0600) and {private}.pub

Append this line to ~/.ssh/authorized_keys of the SSH login melond uses on every node
(the inventory's `user`; default {current_user()}):
  {public}

Then point the inventory at the private key:
  [defaults]
  identity_file = "{private}"
and trust the nodes' host keys (ssh-keyscan NODE >> known_hosts; the inventory's `known_hosts`),
then run `melond --check --inventory FILE`.""")
