"""`melon-slurm env`: the line that puts Slurm's command names, backed by melond, on PATH.

    eval "$(melon-slurm env)"

Their launchers live in `<prefix>/slurm/bin` (beside the venv's or the installation's `bin`), written here on
first use, so a Melon install never shadows a real Slurm's commands unless this line is run.
"""
from __future__ import annotations

import os
import sys

COMMANDS = {"sbatch": "cli.slurm.sbatch", "squeue": "cli.slurm.squeue", "scancel": "cli.slurm.scancel", "sacct": "cli.slurm.sacct",
            "scontrol": "cli.slurm.scontrol", "sinfo": "cli.slurm.sinfo", "srun": "cli.slurm.srun",
            "sdiag": "cli.slurm.sdiag"}
LAUNCHER = """#!{python} -S
import sys
sys.path.insert(0, {root!r})
from {module} import main
sys.exit(main())
"""


def bin_dir() -> str:
    """Beside the interpreter's own bin folder (sys.prefix is not the venv's under -S)."""
    return os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "slurm", "bin")


def ensure_launchers(directory: str) -> None:
    """Write (or rewrite, when stale) one launcher per command: Python with -S, as the fast
    commands start, and this package's folder on sys.path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["env"]:
        sys.stderr.write('usage: eval "$(melon-slurm env)"   (puts squeue, scancel, ... backed by melond on PATH)\n')
        sys.exit(2)
    directory = bin_dir()
    try:
        ensure_launchers(directory)
    except OSError as exc:
        sys.stderr.write(f"melon-slurm: error: cannot write the commands in {directory}: {exc.strerror}; "
                         f"ask whoever installed Melon to run `melon-slurm env` once\n")
        sys.exit(1)
    sys.stdout.write(f'export PATH="{directory}:$PATH"\n')
