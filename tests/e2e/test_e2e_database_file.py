"""A database file that is not whole, or that melond may not read: refused in one line naming the
file and what to do, never a traceback, never taken for a new install. Real melond processes."""
from __future__ import annotations

import os
import pwd
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import Melon, needs_root, refusing_melond
from conftest import refused_in_one_line as one_line


def melond(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
    return refusing_melond(*args, user=user, timeout=15)


@pytest.fixture
def stored(short_tmp: Path) -> Path:
    """A state dir whose database holds jobs (a few pages' worth), melond stopped."""
    melon = Melon(short_tmp)
    melon.start()
    for _ in range(30):
        melon.submit("-H", "--wrap", "echo " + "x" * 2000)
    melon.stop(signal.SIGTERM)
    return melon.state


def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:60])


def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(8192))


def _damaged_page(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[3 * page:4 * page] = b"\xff" * page  # a b-tree page of the jobs' rows, overwritten
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, says", [(_empty, "is empty (0 bytes)"), (_truncated, "truncated"),
                                          (_garbage, "not an SQLite database"), (_damaged_page, "damaged")],
                         ids=["empty", "truncated", "garbage", "damaged-page"])
def test_a_database_that_is_not_whole_is_refused_naming_it_and_the_backup(stored: Path, short_tmp: Path,
                                                                          damage, says: str) -> None:
    db = stored / "melon.db"
    damage(db)
    before = db.read_bytes()
    r = melond("--state-dir", str(stored))
    one_line(r, str(db), says, "melond --backup FILE")
    assert db.read_bytes() == before, "a refused database was changed"
    if damage is not _damaged_page:  # a copy of damaged pages is still a copy, for whoever salvages them
        one_line(melond("--state-dir", str(stored), "--backup", str(short_tmp / "copy.db")), str(db), says)
        assert not (short_tmp / "copy.db").exists()


def test_a_missing_database_is_a_new_install_and_made_whole(short_tmp: Path) -> None:
    melon = Melon(short_tmp)
    melon.start()
    try:
        assert [n for n in os.listdir(melon.state) if n.startswith("melon.db.new")] == []
        db = sqlite3.connect(f"file:{melon.state / 'melon.db'}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
        finally:
            db.close()
    finally:
        melon.stop()


@needs_root
def test_a_state_dir_or_database_melond_may_not_read_is_one_line(short_tmp: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    closed = short_tmp / "closed"
    closed.mkdir(mode=0o700)  # root's: nobody may not even look inside
    one_line(melond("--state-dir", str(closed / "state"), user="nobody"), str(closed), "ermission denied")
    mine = short_tmp / "mine"
    mine.mkdir(mode=0o700)
    os.chown(mine, nobody.pw_uid, nobody.pw_gid)
    db = mine / "melon.db"
    db.write_bytes(b"SQLite format 3\0" + bytes(4096))
    os.chown(db, nobody.pw_uid, nobody.pw_gid)
    db.chmod(0)
    one_line(melond("--state-dir", str(mine), user="nobody"), str(db), "ermission denied")
    db.chmod(0o600)
    os.chown(db, 0, 0)
    one_line(melond("--state-dir", str(mine), user="nobody"), str(db), "owned by root")


def test_a_database_from_a_newer_melond_is_one_line(stored: Path) -> None:
    db = sqlite3.connect(stored / "melon.db")
    db.execute("PRAGMA user_version = 999")
    db.commit()
    db.close()
    one_line(melond("--state-dir", str(stored)), str(stored / "melon.db"), "schema version 999", "newer")
