"""An upgrade: the database Melon 0.1.0 wrote (tests/data/upgrade, made by that release's own melond
and CLIs; make-0.1.0.sh says how) opens in this melond, which keeps a copy first, migrates it, and
still has every job, with its events, and goes on numbering after them."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from melon_cli.client import Client
from conftest import REPO, Melon

OLD_DB = REPO / "tests" / "data" / "upgrade" / "melon-0.1.0.db"
OLD_STATES = {1: "CD", 2: "F", 3: "CD", 4: "PD", 5: "CD", 6: "CD", 7: "CD", 8: "CA"}  # job 9 waits for a time now past


def _schema(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0], db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    finally:
        db.close()


def test_a_database_from_the_previous_release_is_kept_then_migrated_with_every_job(short_tmp: Path) -> None:
    melon = Melon(short_tmp)
    melon.state.mkdir(mode=0o755)
    shutil.copyfile(OLD_DB, melon.state / "melon.db")
    (melon.state / "melon.db").chmod(0o600)
    try:
        melon.start()
        kept = list(melon.state.glob("melon.db.schema11-*.bak"))
        assert len(kept) == 1 and _schema(kept[0]) == (11, 9), kept  # the copy is the old database, untouched
        assert oct(kept[0].stat().st_mode & 0o777) == "0o600"
        assert "database upgrade: schema 11 to" in melon.log.read_text()
        version, jobs = _schema(melon.state / "melon.db")
        assert version > 11 and jobs == 9

        listed = {j["id"]: j for j in json.loads(melon.run("mqueue", "--all", "--json").stdout)}
        assert set(listed) >= set(range(1, 10))
        assert {jid: listed[jid]["state"] for jid in OLD_STATES} == OLD_STATES
        assert listed[4]["reason"] == "JobHeldUser"
        extended = melon.job(3)
        assert extended["time_limit_seconds"] == 90
        assert [e["data"]["new_limit"] for e in extended["events"] if e["kind"] == "extended"] == [90]
        failed = json.loads(melon.run("macct", "-j", "2", "--json").stdout)
        assert failed[0]["exit_code"] == 3 and failed[0]["name"] == "failed"

        # held under 0.1.0, it runs under this melond, in the folder it was submitted from (made
        # again here: make-0.1.0.sh made it on the machine that wrote the database)
        workdir = Path(Client(melon.endpoint).call("GET", "/jobs/4")["chdir"])
        made = not workdir.exists()
        workdir.mkdir(mode=0o755, exist_ok=True)
        melon.run("mrelease", "4")
        melon.wait_state(4, {"CD"})
        new = melon.submit("--wrap", "true")
        assert new == 10  # ids go on after the old ones, never reused
        melon.wait_state(new, {"CD"})
        melon.stop()
        melon.start()  # the next start finds nothing to migrate, and keeps no second copy
        assert len(list(melon.state.glob("melon.db.schema*.bak"))) == 1
    finally:
        melon.cleanup()
        if "made" in locals() and made:
            shutil.rmtree(workdir, ignore_errors=True)
