"""A job's output file read on its node, for the owner's browser: the tail, then what follows.

The helper runs as root and melond names the path, so the file must be what the job wrote:
a regular file owned by the job's user, opened without following a final symlink. A job that
names /etc/shadow as its output cannot open it as its user, and its owner cannot read it here.
The file is opened with the job user's own ids (in a child that takes them), so an answer
("does not exist", "permission denied", "another user's") tells only what that user could
learn on the node anyway: never whether a file exists in a folder they cannot search.
"""
from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import warnings

MAX_READ = 256 * 1024  # one reply's bytes at most: a page tails, it does not download
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
OPEN_TIMEOUT = 10.0  # seconds the child that opens as the user gets (it may be stopped by that user)
_ERRNO = struct.Struct("i")


class Unreadable(Exception):
    """Why the file is not shown (missing, not a regular file, someone else's)."""


def read(path: str, ids: tuple[int, int, list[int]], offset: int, limit: int) -> dict:
    """Bytes of `path` from `offset` (negative: the last `limit` bytes), at most `limit` of them,
    opened as the job's user, `ids` (uid, gid, groups). A file now shorter than `offset` was
    truncated (a requeued run): it is read from its start again, and `offset` and `end` in the
    reply say where the text begins and ends (in bytes)."""
    limit = max(0, min(limit, MAX_READ))
    uid = ids[0]
    try:
        fd = open_as(path, ids) if os.geteuid() == 0 and uid != 0 else os.open(path, OPEN_FLAGS)
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


def open_as(path: str, ids: tuple[int, int, list[int]]) -> int:
    """`path` opened for reading by a child that has taken `ids` (uid, gid, groups) for good, its
    descriptor passed back; OSError with the child's errno if it could not. Only root calls this.
    Signals stay blocked in the child, so its user can stop it (then it times out) but not make
    it run the helper's handlers."""
    uid, gid, groups = ids
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    every = signal.valid_signals()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, every)
    try:
        with warnings.catch_warnings():  # Python 3.12 warns of fork() beside threads; the child only makes syscalls
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                mine.close()
                os.setgroups(groups)
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                try:
                    fd = os.open(path, OPEN_FLAGS)
                except OSError as exc:
                    theirs.send(_ERRNO.pack(exc.errno or 0))
                else:
                    socket.send_fds(theirs, [_ERRNO.pack(0)], [fd])
            finally:
                os._exit(0)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    theirs.close()
    try:
        mine.settimeout(OPEN_TIMEOUT)
        try:
            data, fds, _, _ = socket.recv_fds(mine, _ERRNO.size, 1)
        except socket.timeout:
            os.kill(pid, signal.SIGKILL)
            data, fds = b"", []
    finally:
        mine.close()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the helper's SIGCHLD handler collected it first
    if fds and data == _ERRNO.pack(0):
        return fds[0]
    for fd in fds:
        os.close(fd)
    code = _ERRNO.unpack(data)[0] if len(data) == _ERRNO.size else 0
    if not code:
        raise OSError(0, "the node could not open it as the job's user")
    raise OSError(code, os.strerror(code))
