"""mcancel as scancel users drive it, with the real melond: filters, -s signals, -i, and refusals."""
from __future__ import annotations

import subprocess
import time

from conftest import BIN, Melon, wait_for


def test_filters_pick_the_jobs_and_nothing_else(melon: Melon) -> None:
    a = melon.submit("-H", "-J", "alpha", "--wrap", "true")
    b = melon.submit("-H", "-J", "beta", "--wrap", "true")
    arr = melon.submit("-H", "-J", "alpha", "--array", "1-3", "--wrap", "true")
    out = melon.run("mcancel", "-n", "alpha").stdout.split("\n")
    assert sorted(line.split()[-1] for line in out if line) == sorted([str(a), f"{arr}_1", f"{arr}_2", f"{arr}_3"])
    assert melon.job(b)["state"] == "PD"
    c = melon.submit("-H", "--wrap", "true")
    melon.run("mcancel", "--me", "-t", "PD", str(c))  # the ids given, within the filters
    assert melon.job(c)["state"] == "CA" and melon.job(b)["state"] == "PD"
    assert melon.run("mcancel", "-p", "nowhere").stdout == ""
    assert melon.job(b)["state"] == "PD"
    melon.run("mcancel", "-u", "root" if melon.job(b)["user"] == "root" else melon.job(b)["user"])
    assert melon.job(b)["state"] == "CA"


def test_signal_reaches_every_process_of_the_job_and_it_runs_on(melon: Melon) -> None:
    script = ("trap 'echo got-usr1 >> sig.log' USR1; "
              "(trap 'echo child-usr1 >> sig.log' USR1; while :; do sleep 0.1; done) & "
              "while :; do sleep 0.1; done")
    jid = melon.submit("-t", "1:00", "--wrap", script)
    melon.wait_state(jid, {"R"})
    log = melon.work / "sig.log"
    time.sleep(1)  # both traps set
    out = melon.run("mcancel", "-s", "USR1", str(jid)).stdout
    assert out.strip() == f"Sent signal SIGUSR1 to job {jid}"
    wait_for(lambda: log.exists() and {"got-usr1", "child-usr1"} <= set(log.read_text().split()),
             what="the signal to reach the script and its child")
    assert melon.job(jid)["state"] == "R"
    melon.run("mcancel", "--signal=SIGUSR1", str(jid))
    wait_for(lambda: log.read_text().split().count("got-usr1") == 2, what="a second signal, once")
    melon.run("mcancel", str(jid))
    assert melon.wait_state(jid, {"CA"})["state"] == "CA"


def test_interactive_asks_for_each(melon: Melon) -> None:
    a, b = melon.submit("-H", "--wrap", "true"), melon.submit("-H", "--wrap", "true")
    r = subprocess.run([str(BIN / "mcancel"), "-i", str(a), str(b)], input="y\nn\n", capture_output=True,
                       text=True, env=melon.env(), cwd=melon.work)
    assert r.returncode == 0 and r.stdout.count("[y/n]?") == 2
    assert melon.job(a)["state"] == "CA" and melon.job(b)["state"] == "PD"
    melon.run("mcancel", str(b))


def test_refusals_exit_1_and_change_nothing(melon: Melon) -> None:
    held = melon.submit("-H", "--wrap", "true")
    for args, says in ((["--"], "give job ids, or filters"), (["-s", "WIBBLE", str(held)], "'WIBBLE'"),
                       (["-s", "99", str(held)], "'99'"), (["-s", "USR1", str(held)], "only a running job"),
                       (["-t", "XX"], "XX")):
        r = melon.run("mcancel", *args, check=False)
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert melon.job(held)["state"] == "PD"
    melon.run("mcancel", str(held))


def test_the_signal_api_refuses_bad_bodies_with_400(melon: Melon) -> None:
    from melon_cli.client import Client
    from melond.errors import BadRequest
    out = melon.work / "armed.out"
    jid = melon.submit("-t", "1:00", "-o", str(out), "--wrap", "trap '' USR1; echo armed; sleep 30")
    # USR1 is ignored once the trap is set, so the job runs on; the signals wait for that point
    wait_for(lambda: out.exists() and "armed" in out.read_text(), what="the job's USR1 trap")
    c = Client(melon.endpoint)
    for body in ({"signal": "WIBBLE"}, {"signal": 0}, {"signal": 65}, {"signal": True}, {"signal": "x" * 20},
                 {"signal": ""}, {"signal": None}, {}, {"signal": 1.5}):
        try:
            c.call("POST", f"/jobs/{jid}/signal", body)
            raise AssertionError(f"{body} was accepted")
        except BadRequest:
            pass
    assert c.call("POST", f"/jobs/{jid}/signal", {"signal": 10})["signal"] == 10
    assert c.call("POST", f"/jobs/{jid}/signal", {"signal": "sigusr1"})["signal"] == "USR1"
    melon.run("mcancel", str(jid))


def test_an_array_and_a_filter_are_each_one_transaction(melon: Melon) -> None:
    """mhold ARRAY, mrelease ARRAY and mcancel by filter change every pending task in one
    transaction: one event time for all of them. A job someone else may not touch is refused,
    and stays as it was."""
    from melon_cli.client import Client
    from melond.errors import BadRequest
    arr = melon.submit("-H", "--begin", "now+1hour", "--array", "1-300", "--wrap", "true")
    other = melon.submit("-H", "-J", "other", "--wrap", "true")
    melon.run("mrelease", str(arr))
    melon.run("mhold", str(arr))
    out = melon.run("mcancel", "--me", "-t", "PD", "-n", "wrap").stdout.splitlines()
    assert len(out) == 300 and out[0] == f"Cancelled job {arr}_1", out[:3]
    tasks = [j for j in melon.jobs("--all", "-t", "all") if j.get("array_job_id") == arr]
    assert len(tasks) == 300 and {t["state"] for t in tasks} == {"CA"}
    c = Client(melon.endpoint)
    for kind in ("released", "held", "cancelled"):
        times = {e["time"] for t in tasks[::50] for e in c.call("GET", f"/jobs/{arr}_{t['array_task_id']}")["events"]
                 if e["kind"] == kind}
        assert len(times) == 1, (kind, times)  # one transaction's time
    gone = c.call("POST", "/jobs/cancel", {"ids": [tasks[0]["id"], other, 2**62]})
    assert [j["job"] for j in gone["jobs"]] == [str(other)]
    assert [e["code"] for e in gone["errors"]] == ["conflict", "not_found"], gone["errors"]
    for body in ({}, {"ids": "1"}, {"ids": [1.5]}, {"ids": [1], "x": 1}):
        try:
            c.call("POST", "/jobs/cancel", body)
            raise AssertionError(f"{body} was accepted")
        except BadRequest:
            pass
