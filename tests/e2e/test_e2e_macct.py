"""macct (sacct) with the real melond, and what a job used: CPU time and peak memory, measured."""
from __future__ import annotations

import json
import time

from conftest import Melon

BURN = ("python3 -c \"import time; b = b'x' * ({mib} * 1024 * 1024); t = time.process_time()\n"
        "while time.process_time() - t < {cpu}: pass\"")


def _acct(melon: Melon, *args: str) -> list[dict]:
    return json.loads(melon.run("macct", "--json", *args).stdout)


def test_a_job_that_burns_known_cpu_and_memory_reports_them(melon: Melon) -> None:
    jid = melon.submit("-t", "1:00", "--mem", "1G", "--wrap", BURN.format(mib=300, cpu=1.5))
    job = melon.wait_state(jid, {"CD", "F"}, timeout=60)
    assert job["state"] == "CD", job
    assert 1.4 <= job["cpu_time"] <= 4.0, job["cpu_time"]
    assert 300 * 1024 ** 2 <= job["max_rss"] <= 700 * 1024 ** 2, job["max_rss"]
    row = _acct(melon, "-j", str(jid))[0]
    assert row["cpu_time"] == job["cpu_time"] and row["max_rss"] == job["max_rss"]
    line, batch = melon.run("macct", "-j", str(jid), "-n", "-P", "-o", "JobID,TotalCPU,MaxRSS,State").stdout.split()
    assert batch.startswith(f"{jid}.batch|")  # the batch step: the job's own figures
    jobid, total, rss, state = line.split("|")
    assert jobid == str(jid) and state == "COMPLETED" and total.startswith("00:0") and rss.endswith("K")
    assert int(rss[:-1]) * 1024 == job["max_rss"] // 1024 * 1024
    assert "TotalCPU" in melon.run("mshow", str(jid)).stdout


def test_window_users_states_and_arrays(melon: Melon) -> None:
    ok = melon.submit("--wrap", "true")
    bad = melon.submit("-J", "bad", "--wrap", "exit 3")
    arr = melon.submit("--array", "1-3", "--wrap", "true")
    held = melon.submit("-H", "--wrap", "true")
    for jid in (ok, bad):
        melon.wait_state(jid, {"CD", "F"})
    for _ in range(100):
        if all(j["state"] == "CD" for j in _acct(melon, "-j", str(arr))):
            break
        time.sleep(0.1)
    ids = {j["id"] for j in _acct(melon)}
    assert {ok, bad, held, arr} <= ids  # since midnight: ended today, and pending now
    assert [j["id"] for j in _acct(melon, "-s", "F")] == [bad]
    assert sorted(j["array_task_id"] for j in _acct(melon, "-j", str(arr))) == [1, 2, 3]
    assert [j["array_task_id"] for j in _acct(melon, "-j", f"{arr}_2")] == [2]
    assert _acct(melon, "-S", "2020-01-01", "-E", "2020-01-02") == []  # none existed yet
    assert _acct(melon, "-u", "nobody-at-all") == []
    lines = melon.run("macct", "-j", str(bad)).stdout.splitlines()
    assert lines[0].split() == ["JobID", "JobName", "Partition", "User", "AllocCPUS", "State", "ExitCode"]
    assert set(lines[1]) == {"-", " "} and lines[2].split()[5:] == ["FAILED", "3:0"]
    parsable = melon.run("macct", "-j", str(bad), "-p", "-o", "jobid,jobname%3,state").stdout.splitlines()
    assert parsable == ["JobID|JobName|State|", f"{bad}|bad|FAILED|", f"{bad}.batch|batch|FAILED|"]
    cut = melon.run("macct", "-X", "-j", str(bad), "-n", "-o", "JobID,State%4").stdout.split()
    assert cut == [str(bad), "FAI+"]
    melon.run("mcancel", str(held))


def test_bad_input_names_the_value_and_exits_1(melon: Melon) -> None:
    for args, says in ((["-S", "yesterday"], "'yesterday'"), (["-E", "13/40"], "'13/40'"),
                       (["-o", "JobID,Nope"], "'Nope'"), (["-o", "JobID%x"], "'x'"), (["-s", "DONE"], "'DONE'"),
                       (["-j", "1_"], "'1_'"), (["-S", "now", "-E", "now-1hour"], "start is after end")):
        r = melon.run("macct", *args, check=False)
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_the_api_refuses_private_or_unknown_fields(melon: Melon) -> None:
    from melon_cli.client import Client
    from melond.errors import BadRequest
    c = Client(melon.endpoint)
    for query in ({"fields": "id,environment"}, {"start": "x"}, {"state": "DONE"}):
        try:
            c.call("GET", "/accounting", query=query)
            raise AssertionError(f"{query} was accepted")
        except BadRequest as exc:
            assert "environment" in str(exc) or "x" in str(exc) or "DONE" in str(exc)
