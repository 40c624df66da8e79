"""Operators take nodes out of service and back: drain, resume, down (issue: recovery, part 4)."""
from __future__ import annotations

import json
import signal

from conftest import Melon, needs_root, wait_for


def _node(melon: Melon) -> dict:
    return json.loads(melon.run("minfo", "--json").stdout)[0]


def test_drain_lets_jobs_finish_starts_nothing_and_survives_a_restart(melon: Melon) -> None:
    running = melon.submit("-t", "0:30", "--wrap", "sleep 2")
    melon.wait_state(running, {"R"})
    assert melon.run("mnode", "drain", "local", "--reason", "disk swap").stdout.strip() == \
        "Node local draining: disk swap"
    node = _node(melon)
    assert node["state"] == "draining" and node["reason"] == "disk swap"
    assert "note: node local is draining: disk swap" in melon.run("minfo").stdout
    waiting = melon.submit("--wrap", "true")
    assert melon.wait_state(running, {"CD"})["state"] == "CD"
    wait_for(lambda: _node(melon)["state"] == "drained", what="the node to be drained")
    assert melon.job(waiting)["state"] == "PD" and melon.job(waiting)["reason"] == "ReqNodeNotAvail"
    melon.stop(signal.SIGTERM)
    melon.start()
    assert _node(melon)["state"] == "drained" and _node(melon)["reason"] == "disk swap"
    melon.run("mnode", "resume", "local")
    melon.wait_state(waiting, {"CD"})
    assert _node(melon)["state"] == "idle"


def test_down_kills_running_jobs_node_fail(melon: Melon) -> None:
    jid = melon.submit("-t", "1:00", "--wrap", "sleep 60")
    melon.wait_state(jid, {"R"})
    out = melon.run("mnode", "down", "local", "--reason", "fan failure").stdout
    assert f"jobs killed: {jid}" in out
    job = melon.wait_state(jid, {"NF"})
    assert "node_down" in [e["kind"] for e in job["events"]]
    melon.run("mnode", "resume", "local")


@needs_root
def test_only_operators_act_on_nodes(melon: Melon) -> None:
    for args in (["drain", "local", "--reason", "x"], ["resume", "local"], ["down", "local", "--reason", "x"]):
        r = melon.run("mnode", *args, check=False, user="nobody")
        assert r.returncode == 1 and "only operators" in r.stderr
    r = melon.run("mnode", "drain", "nosuch", "--reason", "x", check=False)
    assert r.returncode == 1 and "no node 'nosuch'" in r.stderr
    assert _node(melon)["state"] == "idle"


def test_down_requeues_a_requeue_job_which_runs_again_on_resume(melon: Melon) -> None:
    jid = melon.submit("--requeue", "-t", "1:00", "--wrap", "echo run $MELON_RESTART_COUNT; sleep 60")
    melon.wait_state(jid, {"R"})
    melon.run("mnode", "down", "local", "--reason", "fan failure")
    job = wait_for(lambda: (j := melon.job(jid))["state"] == "PD" and j["restarts"] == 1 and j,
                   what="the job to be requeued")
    assert [e["kind"] for e in job["events"]].count("requeued") == 1
    melon.run("mnode", "resume", "local")
    melon.wait_state(jid, {"R"})
    wait_for(lambda: (melon.work / f"melon-{jid}.out").read_text() == "run 1\n", what="the second run's output")
    melon.run("mcancel", str(jid))
    assert melon.wait_state(jid, {"CA"})["restarts"] == 1


def test_max_batch_requeue_bounds_the_requeues(melon_factory) -> None:
    melon = melon_factory(inventory="max_batch_requeue = 0\n")
    jid = melon.submit("--requeue", "-t", "1:00", "--wrap", "sleep 60")
    melon.wait_state(jid, {"R"})
    melon.run("mnode", "down", "local", "--reason", "fan failure")
    job = melon.wait_state(jid, {"NF"})
    assert "not requeued" in job["detail"] and "max_batch_requeue" in job["detail"]
    assert job["restarts"] == 0
    melon.run("mnode", "resume", "local")
