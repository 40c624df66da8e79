"""The node helper's entry point: melond's one process on a compute node.

Standard library only. melond streams the `remote` package into `python3` at
connect (remote/bootstrap.py) and this is what runs then: it forks the job
supervisor (remote/supervisor.py) first, while this interpreter has loaded
nothing big, and only then starts the asyncio service (remote/service.py) that
speaks frames with melond.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Serve melond on stdin/stdout; arguments: the spool directory and the limits backend wanted."""
    args = sys.argv[1:] if argv is None else argv
    spool_dir = os.path.expanduser(args[0]) if args else os.path.expanduser("~/.local/state/melon/spool")
    limits = args[1] if len(args) > 1 else "auto"
    from . import supervisor
    pid, sock = supervisor.start(spool_dir)
    from . import service
    service.run(spool_dir, sock, pid, limits)
