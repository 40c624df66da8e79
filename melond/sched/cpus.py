"""Which CPUs of a node a job is pinned to: none shared with another job, and close together.

Pure. A node's helper reports its CPU ids in locality order (socket, then core, then the core's
hyperthreads: remote/service.py), so CPUs next to each other in that order share a core or a
socket. A job gets the free CPUs of the socket that fits it most tightly (best fit, as a job of
2 CPUs should not split a socket that a job of 8 could have had), in order; a job larger than any
socket's free CPUs takes them in order across sockets.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def pick(order: Sequence[int], taken: Iterable[int], n: int,
         socket: Mapping[int, int] | None = None) -> list[int] | None:
    """`n` CPUs of `order` that are not `taken`; None when fewer are free."""
    used = set(taken)
    free = [c for c in order if c not in used]
    if len(free) < n:
        return None
    if socket:
        by_socket: dict[int, list[int]] = {}
        for c in free:
            by_socket.setdefault(socket.get(c, 0), []).append(c)
        fitting = [ids for ids in by_socket.values() if len(ids) >= n]
        if fitting:
            return min(fitting, key=len)[:n]
    return free[:n]
