"""Array tasks addressed as users type them, with the real melond and CLIs: `13`, `13_4`, `13_[1-3]`."""
from __future__ import annotations

import json

from conftest import Melon, wait_for


def _array(melon: Melon, spec: str, *args: str) -> tuple[int, dict[int, int]]:
    """An array of sleepers; its id and each task's own job id."""
    first = melon.submit("--array", spec, "-t", "30", *args, "--wrap", "sleep 30")
    tasks = {j["array_task_id"]: j["id"] for j in melon.jobs("--all", "-j", str(first))}
    return first, tasks


def _states(melon: Melon, first: int) -> dict[int, str]:
    return {j["array_task_id"]: j["state"] for j in melon.jobs("--all", "-r", "-j", str(first))}


def test_cancel_one_task_then_the_whole_array(melon: Melon) -> None:
    first, tasks = _array(melon, "1-5", "-c", "1")
    other = melon.submit("-t", "0:30", "--wrap", "sleep 30")  # ids next to the array's must stay untouched
    out = melon.run("mcancel", f"{first}_4").stdout
    assert out.strip() == f"Cancelled job {first}_4"
    assert _states(melon, first)[4] == "CA"
    assert [s for t, s in _states(melon, first).items() if t != 4].count("CA") == 0
    out = melon.run("mcancel", str(first)).stdout.splitlines()
    assert {line.split()[-1] for line in out} == {f"{first}_{t}" for t in (1, 2, 3, 5)}
    wait_for(lambda: set(_states(melon, first).values()) == {"CA"}, what="every task to be cancelled")
    assert melon.job(other)["state"] in ("PD", "R")
    melon.run("mcancel", str(other))


def test_task_lists_and_a_missing_task(melon: Melon) -> None:
    first, _ = _array(melon, "1-4", "-H")
    out = melon.run("mcancel", f"{first}_[1-2,4]").stdout.split()
    assert out.count("Cancelled") == 3
    assert _states(melon, first) == {1: "CA", 2: "CA", 3: "PD", 4: "CA"}
    r = melon.run("mcancel", f"{first}_9", check=False)
    assert r.returncode == 1
    assert f"job {first}_9 does not exist: array {first} has no task 9" in r.stderr
    assert _states(melon, first)[3] == "PD"
    melon.run("mcancel", str(first))


def test_show_a_task_never_reads_it_as_a_longer_number(melon: Melon) -> None:
    first, tasks = _array(melon, "1-5", "-H")
    longer = int(f"{first}5")  # the job `int("13_5")` would name: make it exist too
    assert longer - first < 100
    while melon.submit("-H", "--wrap", "true") < longer:
        pass
    job = melon.job(f"{first}_5")  # `mshow -p 13_5`
    assert job["id"] == tasks[5] and job["array_job_id"] == first and job["array_task_id"] == 5
    assert "JobId" in melon.run("mshow", f"{first}_5").stdout.splitlines()[0]
    assert f"{first}_5" in melon.run("mshow", f"{first}_5").stdout.splitlines()[0]
    shown = json.loads(melon.run("mshow", "-p", str(first)).stdout)  # an array's id: all its tasks
    assert [j["array_task_id"] for j in shown] == [1, 2, 3, 4, 5]
    listed = melon.jobs("-r", "-j", f"{first}_4,{first}_[1-2]")
    assert sorted(j["array_task_id"] for j in listed) == [1, 2, 4]
    r = melon.run("mshow", f"{first}_x", check=False)
    assert r.returncode == 1 and f"'{first}_x' is not a job id" in r.stderr and "13_4" in r.stderr
    melon.run("mcancel", *{str(j["array_job_id"] or j["id"]) for j in melon.jobs()})


def test_pending_tasks_fold_into_one_line_unless_r(melon: Melon) -> None:
    first, _ = _array(melon, "1-9%3", "-c", "1")
    wait_for(lambda: sorted(_states(melon, first).values()).count("R") == 2, what="two tasks to run (2 cpus)")
    melon.run("mextend", "-j", f"{first}_9", "-t", "+1")  # no longer alike: a line of its own
    lines = [line.split() for line in melon.run("mqueue").stdout.splitlines()[1:]]
    labels = [line[0] for line in lines]
    assert sorted(labels) == sorted([f"{first}_1", f"{first}_2", f"{first}_[3-8%3]", f"{first}_[9%3]"])
    assert all(line[3] == "PD" for line in lines if "[" in line[0])
    raw = [line.split()[0] for line in melon.run("mqueue", "-r").stdout.splitlines()[1:]]
    assert sorted(raw) == sorted(f"{first}_{t}" for t in range(1, 10))
    assert len(melon.jobs()) == 9  # --json: one object per task, folded or not
    melon.run("mcancel", str(first))


def test_extend_hold_and_release_tasks(melon: Melon) -> None:
    first, tasks = _array(melon, "1-3", "-H")
    out = melon.run("mextend", "-j", f"{first}_2", "-t", "+10").stdout
    assert f"Job {first}_2: time limit 30:00 -> 40:00" in out
    limits = {j["array_task_id"]: j["time_limit"] for j in melon.jobs("-r", "-j", str(first))}
    assert limits == {1: 1800, 2: 2400, 3: 1800}
    replies = json.loads(melon.run("mextend", "-j", str(first), "-t", "+5", "--json").stdout)
    assert sorted(r["job"] for r in replies) == [f"{first}_{t}" for t in (1, 2, 3)]
    limits = {j["array_task_id"]: j["time_limit"] for j in melon.jobs("-r", "-j", str(first))}
    assert limits == {1: 2100, 2: 2700, 3: 2100}
    melon.run("mrelease", f"{first}_1")
    wait_for(lambda: _states(melon, first)[1] == "R", what="the released task to run")
    assert {j["reason"] for j in melon.jobs("-r", "-j", f"{first}_[2-3]")} == {"JobHeldUser"}
    melon.run("mrelease", str(first))
    wait_for(lambda: all(j["state"] == "R" or j["reason"] not in ("JobHeldUser", None)
                         for j in melon.jobs("-j", str(first))), what="every task to run or wait for cpus")
    assert "JobHeldUser" not in {j["reason"] for j in melon.jobs("-j", str(first))}
    melon.run("mcancel", str(first))


def test_an_arrays_pending_tasks_are_extended_in_one_transaction_a_running_one_as_itself(melon: Melon) -> None:
    """`mextend -j ARRAY`: its pending tasks' new limits are one transaction (one time on every
    event), a running task's reaches its node as a single job's does, and each task says so."""
    first, tasks = _array(melon, "1-4", "-H")
    melon.run("mrelease", f"{first}_1")
    wait_for(lambda: _states(melon, first)[1] == "R", what="the released task to run")
    replies = json.loads(melon.run("mextend", "-j", str(first), "-t", "+10", "--json").stdout)
    assert [(r["job"], r["state"], r["old_limit"], r["new_limit"]) for r in replies] == \
        [(f"{first}_{t}", "RUNNING" if t == 1 else "PENDING", 1800, 2400) for t in (1, 2, 3, 4)]
    running, *pending = (json.loads(melon.run("mshow", "-p", f"{first}_{t}").stdout) for t in (1, 2, 3, 4))
    assert abs(replies[0]["new_deadline"] - (running["start_time"] + 2400)) < 1 and running["time_limit_seconds"] == 2400
    times = {e["time"] for job in pending for e in job["events"] if e["kind"] == "extended"}
    assert len(times) == 1 and all(job["time_limit_seconds"] == 2400 for job in pending)
    assert [e["data"]["added"] for e in pending[0]["events"] if e["kind"] == "extended"] == [600]
    melon.run("mcancel", str(first))


def test_bad_ids_are_refused_everywhere_and_change_nothing(melon: Melon) -> None:
    jid = melon.submit("-H", "-t", "30", "--wrap", "true")
    for tool, args in [("mcancel", ["12a"]), ("mshow", ["１２"]), ("mextend", ["-j", "1_[3-1]", "-t", "5"]),
                       ("mhold", ["1x"]), ("mrelease", ["1_"]), ("mqueue", ["-j", "x"])]:
        r = melon.run(tool, *args, check=False)
        assert r.returncode == 1, (tool, r)
        assert "job id" in r.stderr or "backwards" in r.stderr, (tool, r.stderr)
        assert "Traceback" not in r.stderr
    job = melon.job(jid)
    assert job["state"] == "PD" and job["reason"] == "JobHeldUser" and job["time_limit_seconds"] == 1800
    melon.run("mcancel", str(jid))


def test_the_api_folds_and_trims_a_listing_on_request(melon: Melon) -> None:
    from melon_cli.client import Client
    from melond.errors import BadRequest
    first, _ = _array(melon, "1-6%2", "-H")
    single = melon.submit("-H", "--wrap", "true")
    c = Client(melon.endpoint)
    folded = c.call("GET", "/jobs", query={"fold": 1, "fields": "id,state"})["jobs"]
    assert folded == [{"id": first, "state": "PD", "label": f"{first}_[1-6%2]", "folded": 6},
                      {"id": single, "state": "PD", "label": str(single), "folded": 1}]
    plain = c.call("GET", "/jobs", query={"fields": "array_task_id"})["jobs"]
    assert plain == [{"array_task_id": t} for t in range(1, 7)] + [{"array_task_id": None}]
    try:
        c.call("GET", "/jobs", query={"fields": "id,script"})
        raise AssertionError("a private or unknown field was listed")
    except BadRequest as exc:
        assert "'script'" in str(exc) and "known:" in str(exc)
    melon.run("mcancel", str(first), str(single))


def test_an_array_larger_than_one_batch_is_acted_on_whole(melon: Melon) -> None:
    """melond acts on an array's tasks in concurrent batches (their writes share group commits);
    every task of an array larger than one batch gets its outcome, in order."""
    from melond.api.routes import EACH_AT_ONCE
    count = EACH_AT_ONCE + 37
    first = melon.submit("-H", "-t", "10", "--array", f"1-{count}", "--wrap", "true")
    replies = json.loads(melon.run("mextend", "-j", str(first), "-t", "+1", "--json").stdout)
    assert [r["job"] for r in replies] == [f"{first}_{t}" for t in range(1, count + 1)]
    out = melon.run("mcancel", str(first)).stdout.splitlines()
    assert out == [f"Cancelled job {first}_{t}" for t in range(1, count + 1)]
    assert set(_states(melon, first).values()) == {"CA"}
