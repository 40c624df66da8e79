"""The command line of sbatch and srun: glibc getopt_long over their option tables, and what
both do before anything else (a bad option, --help, --version)."""
from __future__ import annotations

import sys

from melond.spec.slurm_options import GetoptError, Grammar, getopt_long

VERSION = "slurm 23.11.0 (Melon)"  # the interface these commands speak; tools that read it see Slurm's


def read_argv(prog: str, grammar: Grammar, argv: list[str] | None, help_text: str
              ) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(options in order, the words after them); exits as Slurm's command does for a bad option
    (glibc's message, then `Try "PROG --help"`, exit 1), and after printing help or the version."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        found, rest = getopt_long(argv, grammar)
    except GetoptError as exc:
        sys.stderr.write(f'{prog}: {exc}\nTry "{prog} --help" for more information\n')
        sys.exit(1)
    given = {name for name, _ in found}
    if given & {"help", "usage"}:
        sys.stdout.write(help_text)
        sys.exit(0)
    if "version" in given:
        sys.stdout.write(VERSION + "\n")
        sys.exit(0)
    return found, rest
