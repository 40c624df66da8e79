"""`salloc`: an interactive allocation, with sbatch's resource options, and a command in it (by
default the user's shell), as Slurm's salloc with `LaunchParameters=use_interactive_step`:

    $ salloc -N 2 -t 30
    salloc: Pending job allocation 12
    salloc: job 12 queued and waiting for resources
    salloc: Granted job allocation 12
    n1$ srun hostname
    n1
    n2
    n1$ exit
    salloc: Relinquishing job allocation 12

The command runs on a terminal on the allocation's first node (where most sites run it: their
salloc sets use_interactive_step), with the job's SLURM_* variables, so `srun` inside reaches
every allocated node; a command given runs there too (Melon has no login-node step). Its end
ends the allocation, with its exit code. `--no-shell` allocates and returns; the allocation
holds until `scancel` or its time limit. Ctrl-C while waiting withdraws the request.
"""
from __future__ import annotations

import os
import pwd
import sys

from melon_cli.slurm.argv import read_argv
from melond.errors import MelonError
from melond.spec.getopt import make_grammar
from melond.spec.slurm_options import GRES_OPTIONS, SALLOC_OPTIONS, SAME_OPTION, SLURM_PREFIX, changes_job, unsupported

PROG = "salloc"
GRAMMAR = make_grammar(SALLOC_OPTIONS, strict=True, same=SAME_OPTION)
ACTED_ON = frozenset({
    "cpus-per-task", "mem", "mem-per-cpu", "time", "job-name", "chdir", "export", "nodelist", "exclude",
    "partition", "begin", "hold", "dependency", "signal", "mail-type", "mail-user", "nodes", "ntasks",
    "ntasks-per-node", "exclusive", "distribution",
}) | GRES_OPTIONS
CLIENT_ONLY = frozenset({"no-shell", "immediate", "wait-all-nodes", "bell", "no-bell", "kill-command", "quiet",
                         "verbose", "help", "usage", "version"})
HELP = """Usage: salloc [OPTIONS(0)...] [ : [OPTIONS(N)...]] [command(0) [args(0)...]]
Melon's salloc: an interactive allocation with sbatch's resource options (-N, -n, -c, --mem, -t, -J,
-p, -w, -x, --exclusive, --gres, -G/--gpus, ...), then the command (default: your shell) on a terminal on its first
node, where srun reaches every allocated node. --no-shell: allocate and return. -I/--immediate[=SECONDS]:
give up if not granted at once (or within SECONDS). Exiting the command ends the allocation.
"""


def main(argv: list[str] | None = None) -> None:
    found, command = read_argv(PROG, GRAMMAR, argv, HELP)
    try:
        sys.exit(_salloc(found, command))
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def _salloc(found: list[tuple[str, str | None]], command: list[str]) -> int:
    from melon_cli.slurm.interactive import allocate, login_shell, session
    cli: dict[str, str | bool] = {}
    flags: dict[str, str] = {}
    for name, value in found:
        name = SAME_OPTION.get(name, name)
        if name in ACTED_ON:
            cli[name] = True if value is None else value
        elif name in CLIENT_ONLY:
            flags[name] = value or ""
        else:
            cli[SLURM_PREFIX + name] = value or ""
            if changes_job(name, value) and "quiet" not in flags:
                sys.stderr.write(f"{PROG}: warning: {unsupported(name, value)}\n")
    argv = command or [_shell()]
    cli.setdefault("job-name", os.path.basename(argv[0]) if command else "interactive")
    immediate = None
    if "immediate" in flags:
        text = flags["immediate"] or "0"
        if not text.isdigit():
            raise MelonError(f"Invalid --immediate argument: {text!r}; give a number of seconds")
        immediate = max(int(text), 0.5)
    c, job = allocate(PROG, cli, announce=True, immediate=immediate)
    if "no-shell" in flags:
        return 0
    cwd = str(cli.get("chdir") or os.getcwd())
    where = c.call("GET", f"/jobs/{job['id']}/allocation")
    if where["interactive_step"]:
        code = session(PROG, c, job, argv, cwd)
    else:
        code = login_shell(PROG, c, job, argv, where["environment"], cwd)
    sys.stderr.write(f"{PROG}: Relinquishing job allocation {job['id']}\n")
    return code


def _shell() -> str:
    """The user's login shell, as salloc runs it (SHELL, else the password database's, else sh)."""
    shell = os.environ.get("SHELL")
    if not shell:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell
        except KeyError:
            shell = ""
    return shell or "/bin/sh"


if __name__ == "__main__":
    main()
