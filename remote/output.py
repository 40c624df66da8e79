"""A job's output file read on its node, for the owner's browser: the tail, then what follows.

The helper runs as root and melond names the path, so the file must be what the job wrote:
a regular file owned by the job's user, opened without following a final symlink. A job that
names /etc/shadow as its output cannot open it as its user, and its owner cannot read it here.
"""
from __future__ import annotations

import os
import stat

MAX_READ = 256 * 1024  # one reply's bytes at most: a page tails, it does not download


class Unreadable(Exception):
    """Why the file is not shown (missing, not a regular file, someone else's)."""


def read(path: str, uid: int, offset: int, limit: int) -> dict:
    """Bytes of `path` from `offset` (negative: the last `limit` bytes), at most `limit` of them.
    A file now shorter than `offset` was truncated (a requeued run): it is read from its start
    again, and `offset` and `end` in the reply say where the text begins and ends (in bytes)."""
    limit = max(0, min(limit, MAX_READ))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unreadable(f"{path} does not exist (yet): a job's output appears once it starts") from None
    except OSError as exc:
        raise Unreadable(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{path} is not a regular file, so it is not shown")
        if uid != 0 and st.st_uid != uid:
            raise Unreadable(f"{path} belongs to another user, not the job's: it is not shown")
        size = st.st_size
        start = size - limit if offset < 0 else offset if offset <= size else 0
        start = max(0, start)
        data = os.pread(fd, min(limit, size - start), start)
    finally:
        os.close(fd)
    return {"size": size, "offset": start, "end": start + len(data), "text": data.decode("utf-8", "replace")}
