"""Elastic jobs: a short limit to start, grown by melond step by step while it delays no one."""
from __future__ import annotations

import json

import pytest

from conftest import Melon, wait_for


def _auto_steps(job: dict) -> list[int]:
    return [e["data"]["new_limit"] for e in job["events"]
            if e["kind"] == "extended" and e["actor"] == "melond" and e["data"].get("via") == "auto"]


def test_an_elastic_job_grows_while_no_one_waits(melon: Melon) -> None:
    jid = melon.submit("-t", "0:06", "--time-max", "0:20", "--extend-auto", "0:05", "--wrap", "sleep 13")
    job = melon.wait_state(jid, {"CD", "TO", "F"}, timeout=40)
    assert job["state"] == "CD", job
    assert _auto_steps(job) == [11, 16] and job["time_limit_seconds"] == 16
    assert "Elastic: +0:05 at a time, up to 0:20" in melon.run("mshow", str(jid)).stdout


def test_an_elastic_job_that_would_delay_a_waiting_job_runs_to_its_limit(melon: Melon) -> None:
    cpus = json.loads(melon.run("minfo", "--json").stdout)[0]["cpus"]
    if cpus < 2:
        pytest.skip("needs a node of 2 CPUs or more")
    jid = melon.submit("-c", "1", "-t", "0:06", "--time-max", "1:00", "--extend-auto", "0:10", "--signal", "B:USR1@3",
                       "--wrap", "trap 'echo warned' USR1; sleep 60 & wait; sleep 60")
    melon.wait_state(jid, {"R"})
    waiting = melon.submit("-c", str(cpus), "-t", "0:05", "--wrap", "true")
    wait_for(lambda: melon.job(waiting)["reason"] == "Resources", what="the whole-node job to wait")
    job = melon.wait_state(jid, {"CD", "TO", "F"}, timeout=30)
    assert job["state"] == "TO" and job["time_limit_seconds"] == 6 and _auto_steps(job) == []
    assert "warned" in (melon.work / f"melon-{jid}.out").read_text()
    assert melon.wait_state(waiting, {"CD"}, timeout=20)["state"] == "CD"


def test_elastic_limits_are_checked_at_submission(melon_factory) -> None:
    melon = melon_factory(inventory='[partitions.p]\ndefault = true\nmax_time = "0:30"\n')
    r = melon.run("mbatch", "-t", "0:10", "--time-max", "2:00", "--wrap", "true", check=False)
    assert r.returncode == 0 and "grows to that at most" in r.stderr
    r = melon.run("mbatch", "-t", "0:10", "--extend-auto", "0:05", "--wrap", "true", check=False)
    assert r.returncode != 0 and "needs --time-max" in r.stderr
    melon.wait_all_done()
