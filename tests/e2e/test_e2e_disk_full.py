"""melond's state directory on a file system that fills up: a real tmpfs, filled with a file."""
from __future__ import annotations

import errno
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, Melon, UnixHTTP, is_root

SIZE = "4m"


@pytest.fixture
def small_fs(short_tmp: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, mounted for the test and unmounted after it."""
    if not is_root():
        pytest.skip("the disk-full tests mount a small tmpfs as the state dir, which needs root")
    mnt = short_tmp / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "melon-test", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # a straggler's open file: detach


def fill(mnt: Path) -> None:
    """Write to the file system until it has no room left."""
    with open(mnt / "filler", "ab", buffering=0) as f:
        block = b"\0" * 65536
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                block = block[:len(block) // 2]
                if not block:
                    return


def submit_raw(melon: Melon) -> tuple[int, dict]:
    body = {"script": "#!/bin/sh\ntrue\n", "name": "full", "chdir": str(melon.work)}
    conn = UnixHTTP(str(melon.state / "melond.sock"))
    try:
        conn.request("POST", "/api/v1/jobs", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_a_full_disk_refuses_submissions_clearly_keeps_jobs_and_the_node_does_not_flap(small_fs: Path,
                                                                                        short_tmp: Path) -> None:
    melon = Melon(short_tmp, work=short_tmp / "work")  # its log and the jobs' output stay off the small disk
    melon.state = small_fs / "state"
    melon.endpoint = f"unix:{melon.state}/melond.sock"
    melon.start()
    try:
        held = melon.submit("-H", "--wrap", "true")
        fill(small_fs)
        status, reply = submit_raw(melon)
        assert status == 507, reply
        assert reply["error"]["code"] == "disk_full"
        assert "full" in reply["error"]["message"] and str(melon.state) in reply["error"]["message"]
        r = melon.run("mbatch", "--wrap", "true", check=False)
        assert r.returncode == 1 and r.stderr.startswith("mbatch: error: ") and "internal error" not in r.stderr
        assert "is full" in r.stderr and "Free space" in r.stderr, r.stderr
        assert [j["id"] for j in melon.jobs("--all")] == [held]

        # Stopped cleanly, melond folds SQLite's log into the database and removes it; with no
        # room to make it again, it cannot open the database, and says so in one line.
        melon.stop()
        fill(small_fs)
        r = subprocess.run([str(BIN / "melond"), "--state-dir", str(melon.state)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("melond: ") and "is full" in r.stderr and str(melon.state) in r.stderr, r.stderr

        # Killed (or its stop could not fold the log back), the log is still there: melond opens
        # the database but can write nothing; the local node comes up once and stays up.
        (small_fs / "filler").unlink()
        melon.start()
        melon.stop(signal.SIGKILL)
        fill(small_fs)
        mark = melon.log.stat().st_size
        melon.start()
        time.sleep(6)  # a flapping node came up and went down several times a second
        log = melon.log.read_text()[mark:]
        ups, downs = len(re.findall(r'"node up"', log)), len(re.findall(r'"node down"', log))
        assert (ups, downs) == (1, 0), log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert [n["state"] for n in json.loads(melon.run("minfo", "--json").stdout)] == ["idle"]
        assert [(j["id"], j["state"]) for j in melon.jobs("--all")] == [(held, "PD")]

        (small_fs / "filler").unlink()
        job = melon.submit("--wrap", "true")
        assert melon.wait_state(job, {"CD", "F"})["state"] == "CD"
        melon.run("mcancel", str(held))
    finally:
        melon.cleanup()
