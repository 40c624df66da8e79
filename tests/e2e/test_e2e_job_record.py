"""The job record as clients see it: the node's own start, and nothing internal in the JSON."""
from __future__ import annotations

import json

from conftest import Melon, UnixHTTP, wait_for

# Every field of a listed job: the record's public columns and what the view derives from them.
PUBLIC = {
    "id", "user", "uid", "name", "state", "reason", "priority", "partition", "cpus", "memory", "time_limit",
    "script_path", "script_args", "chdir", "output", "error", "nodelist", "exclude", "begin_time", "hold",
    "dependency", "array_job_id", "array_task_id", "array_throttle", "requeue", "signal", "submit_host",
    "submit_dir", "submit_time", "start_time", "end_time", "node", "exit_code", "exit_signal", "detail", "restarts",
    "cpu_time", "max_rss", "array_spec", "comment", "account", "slurm_options", "time_max", "extend_step",
    "mail_type", "mail_user", "umask", "nodes_min", "nodes_max", "ntasks", "ntasks_per_node", "cpus_per_task",
    "exclusive", "distribution", "cpu_ids", "mem_per_cpu", "parts", "interactive", "gres", "gpus_per_task",
    "gres_ids", "gres_total", "gpu_util", "gpu_mem_peak", "node_list",
    "state_name", "output_path", "error_path", "deadline", "elapsed", "num_tasks", "num_nodes",
}


def _get(melon: Melon, path: str):
    """The API's own JSON (mshow -p reshapes it for the original Melon's scripts)."""
    conn = UnixHTTP(str(melon.state / "melond.sock"))
    try:
        conn.request("GET", "/api/v1" + path)
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def test_the_start_time_is_the_nodes_own_from_the_moment_it_starts(melon: Melon) -> None:
    """The node's start reply carries its start time and pid: StartTime and the deadline users
    see while the job runs are the node's, recorded with a `launched` event, not melond's plan."""
    jid = melon.submit("-t", "5:00", "--wrap", "sleep 30")
    job = wait_for(lambda: (j := _get(melon, f"/jobs/{jid}"))["state"] == "R" and
                   any(e["kind"] == "launched" for e in j["events"]) and j, what="the launched event")
    launched = next(e for e in job["events"] if e["kind"] == "launched")
    started = next(e for e in job["events"] if e["kind"] == "started")
    assert isinstance(launched["data"]["pid"], int) and launched["data"]["pid"] > 1
    assert job["start_time"] == launched["data"]["start"] >= started["time"] - 1
    assert job["deadline"] == job["start_time"] + 300
    listed = next(j for j in _get(melon, "/jobs")["jobs"] if j["id"] == jid)
    assert listed["start_time"] == job["start_time"]  # the listing, from memory, agrees with the store
    melon.run("mcancel", str(jid))
    melon.wait_state(jid, {"CA"})


def test_listings_carry_only_public_fields_even_while_a_cancel_is_in_flight(melon: Melon) -> None:
    """Nothing internal (a cancel asked for, the scheduler's cache) rides in the JSON."""
    held = melon.submit("-H", "--wrap", "true")
    slow = melon.submit("-t", "5:00", "--wrap", "trap 'sleep 2; exit 0' TERM; sleep 60 & wait")
    melon.wait_state(slow, {"R"})
    melon.run("mcancel", str(slow))  # it takes 2 s to end: listed running, a cancel in flight
    listed = _get(melon, "/jobs")["jobs"]
    assert {j["id"] for j in listed} == {held, slow}
    for job in listed:
        assert set(job) == PUBLIC, set(job) ^ PUBLIC
    assert set(_get(melon, f"/jobs/{held}")) == PUBLIC | {"events", "backend", "extension_requests", "steps", "attached",
                                                  "why_waiting"}
    melon.wait_state(slow, {"CA"})
    melon.run("mcancel", str(held))
