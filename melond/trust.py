"""Which paths melond may trust: OpenSSH's StrictModes, in one place.

melond runs the jobs its database holds as their users (as root: as anyone) and logs in to
nodes with the keys its inventory names. A file another user may write is a way for them to
choose what melond runs, so melond refuses:

- its state directory, database (with its -wal and -shm) and lock file, unless they are its own
  user's, not writable by group or others, and not reached through a symbolic link;
- a file it reads (inventory, SSH identity and known_hosts files, TLS certificate and key),
  unless it is its own user's or root's and not writable by group or others;
- any directory on the way to either, or symbolic link followed there, that another user owns
  or may write (a directory writable by all is fine when it is sticky and root's, as /tmp).

Every refusal names the path, what is wrong and the command that fixes it. Standard library only.
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

from melond.errors import MelonError
from melond.files import mode_problem

ROOT = 0
MAX_LINKS = 40  # symbolic links followed in one path, as Linux's own limit


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _me() -> tuple[str, str]:
    """melond's user and its primary group, as `chown` spells them."""
    uid = os.geteuid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return str(uid), str(os.getegid())
    try:
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        return entry.pw_name, str(entry.pw_gid)


def problem(st: os.stat_result, owners: tuple[int, ...], *, sticky_ok: bool = False) -> str | None:
    """Why an inode with this stat may be changed by someone melond does not trust, or None.

    `sticky_ok`: a directory everyone may write is still safe when it is sticky and root's (as
    /tmp): others may add entries there but not replace melond's.
    """
    if st.st_uid not in owners:
        return f"is owned by {_name(st.st_uid)}, not {' or '.join(_name(o) for o in owners)}"
    mode = stat.S_IMODE(st.st_mode)
    who = mode_problem(mode, mask=0o022)  # the write bits of group and others
    if not who:
        return None
    if sticky_ok and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX and st.st_uid == ROOT:
        return None
    return f"may be written by {who} (mode {mode:04o})"


def _trusted_owners() -> tuple[int, ...]:
    me = os.geteuid()
    return (me,) if me == ROOT else (me, ROOT)


def _walk(path: str, what: str, *, follow_last: bool, missing_last_ok: bool = False) -> str:
    """Resolve `path` as the kernel does, refusing any directory searched on the way, or link
    followed, that someone melond does not trust could change; the path it leads to."""
    owners = _trusted_owners()
    original = path
    todo = [p for p in os.path.abspath(path).split("/") if p][::-1]  # a stack: the next name last
    current, links = "/", 0
    _check_dir(current, os.lstat(current), owners, what, original)
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        here = os.path.join(current, name)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if todo or not missing_last_ok:
                raise
            return here
        if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            if st.st_uid not in owners:
                raise MelonError(f"{what} {original}: the symbolic link {here} on its way is owned by "
                                 f"{_name(st.st_uid)}, who may point it anywhere; replace it with a link of "
                                 f"{_name(owners[0])}'s or give the real path")
            links += 1
            if links > MAX_LINKS:
                raise MelonError(f"{what} {original}: too many symbolic links; give the real path")
            target = os.readlink(here)
            if target.startswith("/"):
                current = "/"
            todo.extend(p for p in reversed(target.split("/")) if p)
            continue
        if todo:
            _check_dir(here, st, owners, what, original)
        current = here
    return current


def _check_dir(directory: str, st: os.stat_result, owners: tuple[int, ...], what: str, original: str) -> None:
    why = problem(st, owners, sticky_ok=True)
    if why:
        fix = (f"chown {_name(owners[0])} {directory}" if st.st_uid not in owners else f"chmod go-w {directory}")
        raise MelonError(f"{what} {original}: the directory {directory} on its way {why}, so another user could "
                         f"swap what melond reads there; run `{fix}` or choose a path only {_name(owners[0])} "
                         f"can change")


def check_input(path: str, what: str) -> None:
    """Refuse a file melond reads (inventory, key, certificate, known_hosts) that another user
    owns or may write, or that lies where another user could swap it. A missing file passes:
    reading it says so."""
    try:
        real = _walk(path, what, follow_last=True)
        st = os.stat(real)
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise MelonError(f"{what} {path}: cannot look at {exc.filename or path}: permission denied") from None
    owners = _trusted_owners()
    why = problem(st, owners)
    if why:
        fix = f"chown {_name(ROOT)} {real} && chmod go-w {real}" if st.st_uid not in owners else f"chmod go-w {real}"
        shown = path if real == os.path.abspath(path) else f"{path} (that is {real})"
        raise MelonError(f"{what} {shown} {why}, so another user could change what melond reads; "
                         f"check its content, then run `{fix}`")


def _own_fix(path: str, directory: bool) -> str:
    user, group = _me()
    mode = ("755" if os.geteuid() == ROOT else "700") if directory else "600"
    return f"chown {user}:{group} {path} && chmod {mode} {path}"


def _refuse_own(path: str, what: str, st: os.stat_result, hint: str) -> None:
    """Refuse one of melond's own state files that is not melond's user's alone."""
    if stat.S_ISLNK(st.st_mode):
        raise MelonError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); melond does not follow "
                         f"links in its state: {hint}")
    why = problem(st, (os.geteuid(),))
    if why:
        raise MelonError(f"{what} {path} {why}: another user could have written it; check it, then run "
                         f"`{_own_fix(path, stat.S_ISDIR(st.st_mode))}`, or {hint}")


def check_own(path: str, what: str, hint: str = "move it away") -> None:
    """Refuse an existing state file (or folder) that is a link, or not melond's user's alone.
    A missing one passes: melond makes it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    _refuse_own(path, what, st, hint)


def open_state_dir(path: str) -> int:
    """Make (if missing) and open melond's state directory; an O_DIRECTORY descriptor of it.

    The directories above it must pass as for any file melond reads; the directory itself must
    be melond's user's alone, and not a symbolic link (opened with O_NOFOLLOW, checked by fstat).
    """
    path = os.path.abspath(path)
    what = "state directory"
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        _walk(path, what, follow_last=False, missing_last_ok=True)
        try:
            os.mkdir(path, 0o755 if os.geteuid() == ROOT else 0o700)
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except MelonError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise MelonError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); melond does not follow "
                             f"links to its state: pass the real directory to --state-dir, once you have "
                             f"checked that only {_me()[0]} can write it") from None
        raise MelonError(f"{what} {path}: cannot use it: {exc.strerror} ({exc.filename or path}); "
                         f"pass a directory melond's user ({_me()[0]}) may create and write, "
                         f"with --state-dir") from None
    try:
        st = os.fstat(fd)
        why = problem(st, (os.geteuid(),))
        if why:
            raise MelonError(f"{what} {path} {why}: another user could plant jobs there for melond to run, "
                             f"or swap its files; check what it holds, then run `{_own_fix(path, True)}`, "
                             f"or choose another --state-dir")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_own_file(dir_fd: int, directory: str, name: str, what: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open (or make, 0600) a file of the state directory without following a link; refuse it
    unless it is a regular file of melond's user's alone."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse_own(path, what, os.lstat(path), f"remove it (`rm {path}`); melond makes a new one")
        raise MelonError(f"{what} {path}: cannot open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MelonError(f"{what} {path} is not a regular file; move it away, melond makes a new one")
        _refuse_own(path, what, st, f"remove it (`rm {path}`); melond makes a new one")
    except BaseException:
        os.close(fd)
        raise
    return fd
