"""`melon-slurm env`: the lines that put Slurm's command names, backed by melond, on PATH and their
manual pages on MANPATH.

    eval "$(melon-slurm env)"

Their launchers live in `<prefix>/slurm/bin` (beside the venv's or the installation's `bin`), written here on
first use; where the user running this cannot write there (a site's read-only install), in a folder
of the user's own, `$XDG_DATA_HOME/melon/slurm/<install>/bin`. Their pages are in
`<prefix>/share/melon/slurm/man` (pyproject's data-files), so a Melon install never shadows a real
Slurm's commands or its sbatch(1) unless these lines are run.
"""
from __future__ import annotations

import os
import sys

PROG = "melon-slurm"
HELP = """usage: eval "$(melon-slurm env)"

Prints the shell lines that put Slurm's command names (sbatch, squeue, scancel, sacct, scontrol,
sinfo, srun, salloc, sattach, sprio, sshare, sacctmgr), backed by melond, first on PATH, and their
manual pages first on MANPATH, so that `man sbatch` shows Melon's. Nothing changes until a shell runs them: a Melon install never shadows
a real Slurm unasked.
"""
COMMANDS = {"sbatch": "melon_cli.slurm.sbatch", "squeue": "melon_cli.slurm.squeue", "scancel": "melon_cli.slurm.scancel", "sacct": "melon_cli.slurm.sacct",
            "scontrol": "melon_cli.slurm.scontrol", "sinfo": "melon_cli.slurm.sinfo", "srun": "melon_cli.slurm.srun",
            "sdiag": "melon_cli.slurm.sdiag", "salloc": "melon_cli.slurm.salloc", "sattach": "melon_cli.slurm.sattach",
            "sprio": "melon_cli.slurm.sprio", "sshare": "melon_cli.slurm.sshare", "sacctmgr": "melon_cli.slurm.sacctmgr"}
LAUNCHER = """#!{python} -S
import sys
sys.path.insert(0, {root!r})
from {module} import main
sys.exit(main())
"""


def bin_dir() -> str:
    """Beside the interpreter's own bin folder (sys.prefix is not the venv's under -S)."""
    return os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "slurm", "bin")


def user_bin_dir() -> str:
    """The user's own folder for this install's launchers, named by the install (its interpreter
    and package folder), so two installs never share launchers that name the other's."""
    import hashlib
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    key = hashlib.sha256(f"{sys.executable}\0{_root()}".encode()).hexdigest()[:12]
    return os.path.join(base, "melon", "slurm", key, "bin")


def _root() -> str:
    """The folder that holds melon_cli (site-packages, or a checkout's link folder)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ensure_launchers(directory: str) -> None:
    """Write (or rewrite, when stale) one launcher per command: Python with -S, as the fast
    commands start, and this package's folder on sys.path."""
    root = _root()
    os.makedirs(directory, exist_ok=True)
    for name, module in COMMANDS.items():
        text = LAUNCHER.format(python=sys.executable, root=root, module=module)
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                if f.read() == text:
                    continue
        except OSError:
            pass
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chmod(path + ".new", 0o755)
        os.replace(path + ".new", path)


def man_dir() -> str:
    """Where the Slurm names' pages are installed: a venv's or prefix's share/melon/slurm/man, else
    (a source checkout installed in place, which installs no data files) the checkout's man/slurm."""
    installed = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "share", "melon", "slurm", "man")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # through setup.sh's links
    checkout = os.path.join(root, "man", "slurm")
    return installed if os.path.isdir(installed) or not os.path.isdir(checkout) else checkout


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        sys.stdout.write(HELP)
        return
    if argv == ["--version"]:
        from melond.version import version_line
        sys.stdout.write(version_line(PROG) + "\n")
        return
    if argv != ["env"]:
        sys.stderr.write(HELP.partition("\n")[0] + "   (puts squeue, scancel, ... backed by melond on PATH)\n")
        sys.exit(2)
    directory = bin_dir()
    try:
        ensure_launchers(directory)
    except OSError:  # a read-only install: the user's own copy, as good (the launchers are three lines)
        directory = user_bin_dir()
        try:
            ensure_launchers(directory)
        except OSError as exc:
            sys.stderr.write(f"melon-slurm: error: cannot write the commands in {bin_dir()} or in {directory}: "
                             f"{exc.strerror}; set XDG_DATA_HOME to a folder you can write\n")
            sys.exit(1)
    sys.stdout.write(f'export PATH="{directory}:$PATH"\n')
    # An empty element of MANPATH stands for man's own search path, so `DIR:` (MANPATH unset or
    # empty) keeps the system's pages after Melon's, and a MANPATH the user set keeps its meaning.
    sys.stdout.write(f'export MANPATH="{man_dir()}:${{MANPATH-}}"\n')
