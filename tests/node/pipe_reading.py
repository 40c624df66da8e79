"""Reading a child's stdout without Python buffering, so no byte of a frame hides in a buffer."""
from __future__ import annotations

import os
import select
import time

CHUNK = 1 << 16


def read_some(fd: int, deadline: float) -> bytes | None:
    """Up to 64 KiB; b"" at end of file; None if nothing came before the deadline."""
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        return None
    return os.read(fd, CHUNK)


def read_exact(fd: int, n: int, timeout: float) -> bytes:
    """Exactly n bytes, or fewer if the stream ends or the time runs out."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n:
        chunk = read_some(fd, deadline)
        if not chunk:
            break
        data += chunk
    return data
