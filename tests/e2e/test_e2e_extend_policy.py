"""Extension without breaking the plan: extend_policy = "no-delay", mextend --max and --dry-run."""
from __future__ import annotations

import json
import re

import pytest

from conftest import Melon, needs_root, wait_for

NO_DELAY = '[partitions.p]\ndefault = true\nmax_time = "1:00:00"\nextend_policy = "no-delay"\n'


def _cpus(melon: Melon) -> int:
    return json.loads(melon.run("minfo", "--json").stdout)[0]["cpus"]


@needs_root
def test_no_delay_refuses_what_would_start_a_waiting_job_later_and_says_how_much_fits(melon_factory) -> None:
    melon = melon_factory(inventory=NO_DELAY)
    cpus = _cpus(melon)
    if cpus < 2:
        pytest.skip("needs a node of 2 CPUs or more")
    # Job a (1 CPU, nobody's) ends 20 s from now, job c (the other CPUs) 40 s from now: job b,
    # which needs the whole node, is reserved to start when c ends. Up to +20 s, a delays no one.
    a = melon.submit("-c", "1", "-t", "0:20", "--wrap", "sleep 120", user="nobody")
    melon.wait_state(a, {"R"})
    c = melon.submit("-c", str(cpus - 1), "-t", "0:40", "--wrap", "sleep 120")
    melon.wait_state(c, {"R"})
    b = melon.submit("-c", str(cpus), "-t", "0:10", "--wrap", "true")
    wait_for(lambda: melon.job(b)["reason"] == "Resources", what="b to wait for the whole node")

    r = melon.run("mextend", "-j", str(a), "-t", "+0:30", check=False, user="nobody")
    assert r.returncode == 1
    assert f"would delay job {b}" in r.stderr and "extend_policy = no-delay" in r.stderr, r.stderr
    room = re.search(r"the largest extension that delays no one is \+0:(\d\d)", r.stderr)
    assert room and 18 <= int(room.group(1)) <= 20, r.stderr
    assert melon.job(a)["time_limit_seconds"] == 20  # nothing changed

    dry = melon.run("mextend", "-j", str(a), "-t", "+0:10", "--dry-run", user="nobody")
    assert "would be granted: time limit 0:20 -> 0:30" in dry.stdout and "Nothing was changed" in dry.stdout
    dry = melon.run("mextend", "-j", str(a), "-t", "+0:30", "--dry-run", check=False, user="nobody")
    assert dry.returncode == 1 and "would be refused" in dry.stdout
    assert re.search(rf"it would delay job {b} \(expected to start at .*\) by 0:(0[89]|1[01])", dry.stdout), dry.stdout
    assert melon.job(a)["time_limit_seconds"] == 20

    done = json.loads(melon.run("mextend", "-j", str(a), "--max", "--json", user="nobody").stdout)
    assert 38 <= done["new_limit"] <= 40 and melon.job(a)["time_limit_seconds"] == done["new_limit"]
    r = melon.run("mextend", "-j", str(a), "-t", "+0:05", check=False, user="nobody")
    assert r.returncode == 1 and f"would delay job {b}" in r.stderr

    # Operators are not bound by it; a dry run still shows whom they would delay.
    dry = melon.run("mextend", "-j", str(a), "-t", "+0:30", "--dry-run")
    assert "would be granted" in dry.stdout and f"it would delay job {b}" in dry.stdout
    melon.run("mextend", "-j", str(a), "-t", "+0:30")
    assert melon.job(a)["time_limit_seconds"] == done["new_limit"] + 30
    for jid in (b, a, c):  # b first: it waits for the node a and c hold
        melon.run("mcancel", str(jid))


def test_always_grants_and_max_needs_a_bound(melon: Melon) -> None:
    """The default policy grants within the caps even when someone waits; --max with nothing
    bounding it (no MaxTime, nobody waiting) says so."""
    jid = melon.submit("-t", "0:20", "--wrap", "sleep 60")
    melon.wait_state(jid, {"R"})
    r = melon.run("mextend", "-j", str(jid), "--max", check=False)
    assert r.returncode == 1 and "--max has no largest extension; give -t TIME" in r.stderr
    dry = melon.run("mextend", "-j", str(jid), "-t", "+1:00", "--dry-run", "--json")
    reply = json.loads(dry.stdout)
    assert reply["granted"] is True and reply["new_limit"] == 80 and reply["delays"] == []
    assert melon.job(jid)["time_limit_seconds"] == 20
    held = melon.submit("-H", "--wrap", "true")
    r = melon.run("mextend", "-j", str(held), "--max", check=False)
    assert r.returncode == 1 and "--max extends a running job" in r.stderr
    for j in (jid, held):
        melon.run("mcancel", str(j))


@needs_root
def test_a_shared_melond_by_default_grants_no_extension_that_delays_another_users_job(melon: Melon) -> None:
    """Root's melond with no inventory serves every user of the machine: unset, extend_policy is
    no-delay there. nobody may not push daemon's waiting job back, but may push back their own."""
    cpus = _cpus(melon)
    a = melon.submit("-c", str(cpus), "-t", "0:30", "--wrap", "sleep 120", user="nobody")
    melon.wait_state(a, {"R"})
    b = melon.submit("-c", "1", "-t", "0:10", "--wrap", "true", user="daemon")
    wait_for(lambda: melon.job(b)["reason"] == "Resources", what="daemon's job to wait for nobody's")
    r = melon.run("mextend", "-j", str(a), "-t", "+1:00", check=False, user="nobody")
    assert r.returncode == 1 and f"would delay job {b}" in r.stderr, r.stderr
    assert "delays no other user's job (extend_policy = no-delay)" in r.stderr
    assert melon.job(a)["time_limit_seconds"] == 30
    dry = json.loads(melon.run("mextend", "-j", str(a), "-t", "+1:00", "--dry-run", "--json", check=False,
                               user="nobody").stdout)
    assert dry["granted"] is False and [d["job_id"] for d in dry["delays"]] == [b]

    mine = melon.submit("-c", "1", "-t", "0:10", "--wrap", "true", user="nobody")
    melon.run("mcancel", str(b))
    wait_for(lambda: melon.job(mine)["reason"] == "Resources", what="nobody's own job to wait")
    done = json.loads(melon.run("mextend", "-j", str(a), "-t", "+1:00", "--json", user="nobody").stdout)
    assert done["new_limit"] == 90 and melon.job(a)["time_limit_seconds"] == 90  # only their own job waits longer
    melon.run("mcancel", str(mine), str(a))


@needs_root
def test_no_delay_counts_gpus_and_names_the_gpu_hours(melon_factory, short_tmp) -> None:
    """Plenty of CPUs, two GPUs: a job waiting for both GPUs is what an extension would delay,
    and the refusal and the grant name the extension's GPU-hours."""
    melon = melon_factory(inventory=NO_DELAY + f'[nodes.g]\npartition = "p"\nspool = "{short_tmp}/spool"\ncpus = 8\n'
                                               'gres = [{name = "gpu", count = 2}]\n')
    a = melon.submit("--gres=gpu:1", "--mem=50M", "-t", "0:20", "--wrap", "sleep 120", user="nobody")
    c = melon.submit("--gres=gpu:1", "--mem=50M", "-t", "0:40", "--wrap", "sleep 120")
    for job in (a, c):
        melon.wait_state(job, {"R"})
    b = melon.submit("--gres=gpu:2", "--mem=50M", "-t", "0:10", "--wrap", "true")
    wait_for(lambda: melon.job(b)["reason"] == "Resources", what="b to wait for both GPUs")
    r = melon.run("mextend", "-j", str(a), "-t", "+0:30", check=False, user="nobody")
    assert r.returncode == 1 and f"would delay job {b}" in r.stderr, r.stderr
    assert "(1 GPU for 0:30 more: 0.0 GPU-hours)" in r.stderr, r.stderr
    done = json.loads(melon.run("mextend", "-j", str(a), "-t", "+0:10", "--json", user="nobody").stdout)
    assert done["new_limit"] == 30 and done["gpu_hours"] == round(10 / 3600, 2)
    for job in (a, c):
        melon.run("mcancel", str(job))
