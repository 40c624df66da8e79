"""User lookups reused for a few seconds: NSS reads /etc/passwd (or asks a directory service)
on every call, and melond makes several per submission and one per job start."""
from __future__ import annotations

import pwd
import time

CACHE_SECONDS = 5.0  # a renamed or moved user is seen this much later (slurmctld caches uids too)
_MAX = 4096

_by_uid: dict[int, tuple[float, pwd.struct_passwd | None]] = {}
_by_name: dict[str, tuple[float, pwd.struct_passwd | None]] = {}


def by_uid(uid: int) -> pwd.struct_passwd | None:
    """The passwd entry of a uid, or None."""
    return _lookup(_by_uid, uid, pwd.getpwuid)


def by_name(user: str) -> pwd.struct_passwd | None:
    """The passwd entry of a user name, or None."""
    return _lookup(_by_name, user, pwd.getpwnam)


def user_name(uid: int) -> str:
    """The name of a uid, or the number as text for a uid with no passwd entry."""
    entry = by_uid(uid)
    return entry.pw_name if entry is not None else str(uid)


def home(user: str) -> str | None:
    entry = by_name(user)
    return entry.pw_dir if entry is not None else None


def _lookup(cache: dict, key, fetch) -> pwd.struct_passwd | None:
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        entry = fetch(key)
    except KeyError:
        entry = None
    if len(cache) >= _MAX:
        cache.clear()
    cache[key] = (now, entry)
    return entry
