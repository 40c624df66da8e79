"""melond dies or stops while jobs run: nothing is lost, nothing runs twice."""
from __future__ import annotations

import random
import signal
import time

import psutil

from conftest import Melon, wait_for


def _job_script(markers, seconds: float, code: int) -> str:
    return (f"echo $MELON_JOB_ID >> {markers}/$MELON_JOB_ID; sleep {seconds}; "
            f"echo end >> {markers}/$MELON_JOB_ID.end; exit {code}")


def test_kill_9_during_a_run_loses_nothing_and_runs_nothing_twice(melon: Melon) -> None:
    markers = melon.work / "markers"
    markers.mkdir()
    rng = random.Random(7)
    expected_code: dict[int, int] = {}
    for i in range(16):
        code = i % 3
        jid = melon.submit("-t", "1:00", "--wrap", _job_script(markers, rng.choice([0.2, 0.5, 1, 2, 3]), code))
        expected_code[jid] = code
    cancelled = melon.submit("-t", "1:00", "--wrap", _job_script(markers, 30, 0))
    timed_out = melon.submit("-t", "0:03", "--wrap", _job_script(markers, 30, 0))
    extended = melon.submit("-t", "0:03", "--wrap", _job_script(markers, 5, 0))
    for cut in range(3):
        time.sleep(rng.uniform(0.3, 1.5))
        melon.stop(signal.SIGKILL)
        if cut == 0:
            time.sleep(1)
        melon.start()
        if cut == 1:
            melon.run("mcancel", str(cancelled))
            melon.run("mextend", "-j", str(extended), "-t", "+0:30")
    melon.wait_all_done(timeout=120)
    for jid, code in expected_code.items():
        job = melon.job(jid)
        assert job["state"] == ("CD" if code == 0 else "F"), job
        assert job["exit_code"] == code
        kinds = [e["kind"] for e in job["events"]]
        assert kinds.count("started") == 1 and kinds.count("ended") == 1, kinds
        assert (markers / str(jid)).read_text().split() == [str(jid)], f"job {jid} ran more than once"
    assert melon.job(cancelled)["state"] == "CA"
    assert melon.job(timed_out)["state"] == "TO"
    assert melon.job(extended)["state"] == "CD"
    assert (markers / f"{extended}.end").exists()


def test_a_run_whose_supervisor_died_before_starting_it_does_not_stay_running(melon: Melon) -> None:
    """A run's claim with no start behind it (its supervisor killed between the two) ends the job
    NODE_FAIL once the grace for a late start is over; a --requeue job runs again instead."""
    marker = melon.work / "ran"
    plain = melon.submit("-H", "-t", "1:00", "--wrap", f"echo plain >> {marker}")
    again = melon.submit("-H", "-t", "1:00", "--requeue", "--wrap", f"echo requeued $MELON_RESTART_COUNT >> {marker}")
    for jid in (plain, again):
        (melon.state / "spool" / "jobs" / str(jid)).mkdir(mode=0o700, parents=True)
    melon.run("mrelease", str(plain), str(again))
    job = melon.wait_state(plain, {"NF"}, timeout=40)
    assert "supervisor" in job["detail"], job["detail"]
    job = melon.wait_state(again, {"CD"}, timeout=40)
    assert job["restarts"] == 1 and [e["kind"] for e in job["events"]].count("requeued") == 1
    assert marker.read_text().split("\n") == ["requeued 1", ""]


def test_kill_9_of_the_node_supervisor_requeues_without_running_twice(melon: Melon) -> None:
    """The node's job supervisor killed while jobs run: melond reconnects, the node kills what is
    left of them, a plain job ends NODE_FAIL and a --requeue job runs again, never beside its
    first run."""
    marker = melon.work / "runs"
    script = (f"echo $MELON_RESTART_COUNT start >> {marker}; [ $MELON_RESTART_COUNT = 0 ] && sleep 60; "
              f"echo $MELON_RESTART_COUNT end >> {marker}")
    plain = melon.submit("-t", "2:00", "--wrap", f"echo $$ > {melon.work}/plain.pid; sleep 60")
    again = melon.submit("-t", "2:00", "--requeue", "--wrap", script)
    wait_for(lambda: marker.exists() and (melon.work / "plain.pid").exists(), what="both jobs to start")
    plain_pid = int((melon.work / "plain.pid").read_text())
    supervisor = psutil.Process(plain_pid).parent()
    assert supervisor is not None and "python" in supervisor.name()
    supervisor.kill()
    job = melon.wait_state(plain, {"NF"}, timeout=30)
    assert "supervisor died" in job["detail"], job["detail"]
    assert not _alive(plain_pid), "the plain job's process outlived its NODE_FAIL"
    job = melon.wait_state(again, {"CD"}, timeout=30)
    assert job["restarts"] == 1
    assert marker.read_text().split("\n") == ["0 start", "1 start", "1 end", ""]


def test_sigterm_leaves_jobs_running_and_restart_adopts_them(melon: Melon) -> None:
    pidfile = melon.work / "pid"
    jid = melon.submit("-t", "1:00", "--wrap", f"echo $$ > {pidfile}; sleep 3; exit 3")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the job to start")
    melon.stop(signal.SIGTERM)
    pid = int(pidfile.read_text())
    assert _alive(pid), "stopping melond killed a running job"
    wait_for(lambda: not _alive(pid), timeout=10, what="the job to finish while melond is down")
    melon.start()
    job = melon.wait_state(jid, {"F"}, timeout=15)
    assert job["exit_code"] == 3
    assert [e["kind"] for e in job["events"]] == ["submitted", "started", "launched", "ended"]


def test_deadline_holds_while_melond_is_down(melon: Melon) -> None:
    jid = melon.submit("-t", "0:02", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    melon.stop(signal.SIGKILL)
    time.sleep(4)
    melon.start()
    job = melon.wait_state(jid, {"TO"}, timeout=10)
    assert next(e for e in job["events"] if e["kind"] == "ended")["data"]["kill_late_by"] < 1.0


def test_job_ids_only_grow_across_restarts(melon: Melon) -> None:
    first = melon.submit("--wrap", "true")
    melon.wait_state(first, {"CD"})
    melon.stop(signal.SIGKILL)
    melon.start()
    second = melon.submit("--wrap", "true")
    assert second > first
    melon.wait_state(second, {"CD"})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_online_backup_is_a_consistent_copy(melon: Melon) -> None:
    import sqlite3
    import subprocess

    from conftest import BIN
    jobs = [melon.submit("-H", "--wrap", "true") for _ in range(5)]
    target = melon.root / "backup.db"
    r = subprocess.run([str(BIN / "melond"), "--state-dir", str(melon.state), "--backup", str(target)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(target)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY id")] == jobs
    finally:
        db.close()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([str(BIN / "melond"), "--state-dir", str(melon.state), "--backup", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
    for jid in jobs:
        melon.run("mcancel", str(jid))
