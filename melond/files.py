"""Files that hold secrets: created with their final mode, never overwritten by accident, checked on read.

Standard library only: the CLIs import this too.
"""
from __future__ import annotations

import os
import stat

from melond.errors import MelonError


def mode_problem(mode: int, mask: int = 0o077) -> str | None:
    """Who besides the owner may read a file of this mode (within `mask`), or None."""
    who = [name for bits, name in ((0o070, "its group"), (0o007, "other users")) if mode & mask & bits]
    return " and ".join(who) or None


def check_private(path: str, mask: int = 0o077) -> None:
    """Refuse a secret file others may read, as ssh refuses a loose private key."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    who = mode_problem(mode, mask)
    if who:
        raise MelonError(f"{path} holds a secret but {who} may read it (mode {mode:04o}); "
                         f"run `chmod 600 {path}` (or make a new one)")


def refuse_existing(paths: list[str]) -> None:
    """Check every target before writing any, so a refusal leaves nothing half-made behind."""
    for path in paths:
        if os.path.lexists(path):
            raise MelonError(f"{path} exists; refusing to overwrite it (move it away first)")


def write_new(path: str, data: bytes, mode: int, *, replace: bool = False) -> None:
    """Write `path` with exactly `mode`: refuse an existing file unless `replace`, then swap atomically.

    The file is created with its mode (O_EXCL, then fchmod past the umask), so a secret is never
    readable by others, not even for a moment.
    """
    target = f"{path}.new-{os.getpid()}" if replace else path
    if not replace:
        refuse_existing([path])
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # O_EXCL still guards a race
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(target, path)
