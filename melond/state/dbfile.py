"""The database file itself: made whole or not at all, checked before melond trusts it, and
every SQLite failure told to an operator as one line that says what to do.

A missing database is a new install. Anything else that is not a whole SQLite database of
melond's user's alone (empty, truncated, another kind of file, damaged pages, another user's)
is refused rather than taken for a new install: starting empty would silently forget every job.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from melond.errors import DiskFull, MelonError
from melond.trust import check_own

MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100  # SQLite's file header; a real database is at least one page past it
LOW_SPACE = 1 << 20  # bytes: below this, an I/O error of SQLite's is taken for a full disk
COMPANIONS = ("-wal", "-shm")  # SQLite's write-ahead log and its index, beside the database
RESTORE = "restore the copy made by `melond --backup FILE` (stop melond, then cp FILE {path})"


def _restore(path: str) -> str:
    return RESTORE.format(path=path)


def check(path: str) -> bool:
    """Whether a database exists at `path`, refusing one melond must not open: a link, another
    user's (or its -wal or -shm), or a file that cannot be a whole database."""
    for suffix in ("", *COMPANIONS):
        hint = f"remove it while melond is stopped (`rm {path}{suffix}`)" if suffix else _restore(path)
        check_own(path + suffix, f"the database's {suffix[1:]} file" if suffix else "the database", hint)
    try:
        size = os.path.getsize(path)
        if not size:
            raise MelonError(f"the database {path} is empty (0 bytes): it was truncated, so it has lost every job; "
                             f"{_restore(path)}. For a new install with nothing to keep, remove it instead")
        with open(path, "rb") as f:
            header = f.read(HEADER_SIZE)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise MelonError(f"the database {path}: cannot read it: {exc.strerror}; check its owner and mode "
                         f"(melond's user must read and write it)") from None
    if not header.startswith(MAGIC):
        raise MelonError(f"{path} is not an SQLite database (its first bytes are {header[:16]!r}); {_restore(path)}")
    if size <= HEADER_SIZE:
        raise MelonError(f"the database {path} is truncated ({size} bytes); {_restore(path)}")
    return True


def check_companions(path: str) -> None:
    """Refuse a -wal or -shm beside the database that is a link or another user's, by lstat alone.
    Once melond's connections are open the database must not be opened and closed by anything
    but SQLite: closing any descriptor of a file drops every POSIX lock the process holds on it,
    SQLite's included, and the next other program to close its connection would then take itself
    for the last one and delete the log melond is still writing to."""
    for suffix in COMPANIONS:
        check_own(path + suffix, f"the database's {suffix[1:]} file",
                  f"remove it while melond is stopped (`rm {path}{suffix}`)")


def create(path: str, init: Callable[[sqlite3.Connection], None]) -> None:
    """A new database at `path`, built beside it and renamed into place once whole, so a crash
    while it is made never leaves an empty file behind to be taken for a database."""
    partial = f"{path}.new"
    for leftover in (partial, *(partial + s for s in COMPANIONS)):
        if os.path.lexists(leftover):
            os.unlink(leftover)  # a crash's half-made database: nothing was ever acknowledged from it
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # scripts and environments inside: melond's user's alone, whatever the umask
    os.close(fd)
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        init(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()  # the last connection: SQLite folds the log into the file and removes it
    fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(partial, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def verify(conn: sqlite3.Connection, path: str) -> None:
    """SQLite's quick check of every page: a damaged database is refused at start, not met
    later by whichever request reads the damaged part."""
    found = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if found != ["ok"]:
        what = " ".join("; ".join(found).split())  # one line, however SQLite lays its findings out
        raise MelonError(f"the database {path} is damaged ({what[:300]}); {_restore(path)}")


def explain(exc: BaseException, path: str) -> MelonError:
    """What an operator reads when opening the database failed: the file, what is wrong, what to do."""
    if isinstance(exc, MelonError):
        return exc
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _no_room(path)):
            return disk_full(path)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return MelonError(f"the database {path} is locked by another program (an sqlite3 shell, a copy tool?); "
                              f"close it, then start melond again")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return MelonError(f"the database {path} is damaged ({exc}); {_restore(path)}")
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH")):
            return MelonError(f"the database {path}: cannot open it for writing ({exc}); its folder and files must "
                              f"be writable by melond's user, on a file system mounted read-write")
        return MelonError(f"the database {path}: {exc} ({name or type(exc).__name__}); check the file system "
                          f"it is on, or {_restore(path)}")
    if isinstance(exc, OSError):
        return MelonError(f"the database {path}: {exc.strerror or exc} ({exc.filename or path}); check the owner and "
                          f"mode of the file and its folder")
    return MelonError(f"the database {path}: {exc}")


def _free(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of the database's folder."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _no_room(path: str) -> bool:
    """Too little room for SQLite's shared-memory index and a few pages of its log."""
    free = _free(path)
    return free is not None and free < LOW_SPACE


def disk_full(path: str) -> DiskFull:
    """The refusal for a write the state directory's file system has no room for."""
    directory = os.path.dirname(os.path.abspath(path))
    free = _free(path)
    shown = "free space unknown" if free is None else f"{free // 1024} KiB free"
    return DiskFull(f"melond cannot write to its state directory {directory}: the file system is full ({shown}); "
                    f"nothing was changed. Free space there (jobs already accepted are kept)")


def failure(exc: Exception, path: str) -> Exception:
    """A write's failure as its caller sees it: a full disk becomes DiskFull, the rest as raised."""
    name = getattr(exc, "sqlite_errorname", "") if isinstance(exc, sqlite3.Error) else ""
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _no_room(path)):
        return disk_full(path)
    return exc
