"""`sattach J.S`: attach to a running step's terminal, as Slurm's sattach attaches to a step's I/O.

Melon relays the terminals of interactive sessions (salloc's shell, `srun --pty`) through melond,
so those are the steps sattach reaches: from another login, their output from now on, and what
is typed here goes to them too. Ctrl-\\ detaches (every other key is the session's, Ctrl-C
included); detaching, or the window's closing, leaves the session running in its own client. A batch job's steps
write to their files or to the srun that started them: `sattach` says so and where to look.
"""
from __future__ import annotations

import sys

from melon_cli.slurm.argv import read_argv
from melon_cli.slurm.tables import SATTACH
from melond.errors import MelonError
from melond.spec.getopt import make_grammar

PROG = "sattach"
GRAMMAR = make_grammar(SATTACH, strict=True)
UNSUPPORTED = ("input-filter", "output-filter", "error-filter", "layout")
HELP = """Usage: sattach [options] <jobid.stepid>
Melon's sattach: attach to a running step's terminal (an interactive session: salloc's shell, srun --pty),
from another login. Its output from now on comes here, what is typed here goes to it; Ctrl-\\ detaches, and
the session runs on. -Q/--quiet: no line of sattach's own. --pty is accepted (every such step has one).
"""


def main(argv: list[str] | None = None) -> None:
    found, words = read_argv(PROG, GRAMMAR, argv, HELP)
    given = {name for name, _ in found}
    try:
        for name in UNSUPPORTED:
            if name in given:
                raise MelonError(f"--{name} is not supported by Melon: sattach attaches to a whole session's terminal")
        if len(words) != 1:
            raise MelonError("give one step to attach to, as JOBID.STEPID (squeue -s lists the running ones)")
        sys.exit(_sattach(words[0], quiet="quiet" in given))
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def _sattach(ref: str, quiet: bool) -> int:
    import os

    from melon_cli.common import client
    from melon_cli.terminal import attach
    job, dot, step = ref.partition(".")
    if not (dot and job.isdigit() and step.isdigit()):
        raise MelonError(f"{ref!r} is not a step: give JOBID.STEPID, e.g. 12.0 (squeue -s lists the running ones)")
    c = client(os.environ.get("MELON_API") or None)
    hello = None if quiet else f"{PROG}: attached to step {ref}; Ctrl-\\ detaches, and the session runs on"
    code = attach(c, int(job), [], cwd=None, final=False, prog=PROG, watch=int(step), hello=hello)
    if code is None:
        return 1
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    main()
