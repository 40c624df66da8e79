"""The node's side of leadership fencing: the highest epoch of a melond it has heard, kept in
its spool, and every act from an older one refused.

Two melonds may lead one after the other over one database; the newer one's epoch (a fencing
token the database hands out with the lease) is larger. A paused old leader that wakes up still
holds open connections to the nodes: its requests carry its old epoch, and a node that has heard
the newer one refuses them, so it can neither start, kill nor extend anything. The epoch lives
in the spool, not in one helper, because each melond's connection has a helper (and a job
supervisor) of its own.

A request's epoch is checked and, when it is the highest yet, recorded under an exclusive lock;
an act is made under a shared one (a start's: the claim of its run, which a listing shows from
then on; the supervisor then launches what was claimed). So an older melond's act is either done
before the newer one's first request is admitted (and that melond sees it when it lists the
node's runs) or refused. The locks are held for a file's write or a directory's creation only:
the helper takes them in its event loop. Epoch 0 is a melond that fences nothing (SQLite: one
melond): it neither raises nor is refused while no epoch has been heard.

Standard library only: shipped to the node with the helper.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

FILE, LOCK = "epoch", "epoch.lock"


class Stale(Exception):
    """A request from a melond older than the one that leads the node now."""

    def __init__(self, epoch: int, seen: int) -> None:
        super().__init__(f"this request comes from a melond of epoch {epoch}, but one of epoch {seen} leads this node "
                         f"now: the older melond no longer leads, and may not act here")
        self.epoch, self.seen = epoch, seen


class Fence:
    """The spool's epoch: `with fence.admit(epoch):` around an act."""

    def __init__(self, spool: str) -> None:
        self.path = os.path.join(spool, FILE)
        self.lock = os.path.join(spool, LOCK)

    def seen(self) -> int:
        """The highest epoch heard (0: none)."""
        try:
            with open(self.path, "rb") as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @contextmanager
    def admit(self, epoch: int) -> Iterator[None]:
        """Raise Stale if a newer melond has been heard; record `epoch` if it is the newest; hold
        the shared lock for the act within, so that no newer epoch is recorded meanwhile."""
        if not epoch and not self.seen():  # no melond here has ever led by an epoch: nothing to order
            yield
            return
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            seen = self.seen()
            if epoch > seen:
                fcntl.flock(fd, fcntl.LOCK_EX)  # (not atomic: the shared lock goes first, so look again)
                if epoch > self.seen():
                    self._record(epoch)
                fcntl.flock(fd, fcntl.LOCK_SH)  # (nor is this: a newer one may have been recorded between)
                seen = self.seen()
            if epoch < seen:
                raise Stale(epoch, seen)
            yield
        finally:
            os.close(fd)

    def _record(self, epoch: int) -> None:
        """Write-rename and sync: an epoch once heard is never forgotten, a power cut included
        (the older melond's connection may outlive the node's reboot in its own eyes)."""
        part = f"{self.path}.{os.getpid()}"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{epoch}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, self.path)
        dirfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
