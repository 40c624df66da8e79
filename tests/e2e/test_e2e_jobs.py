"""The real melond and the real CLIs on the embedded local node: a job's whole life."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from conftest import Melon, needs_root, wait_for


def test_submit_run_complete_with_environment(melon: Melon) -> None:
    script = melon.work / "env.sh"
    script.write_text("#!/bin/bash\n#SBATCH -J envjob\n#MBATCH -c 1\necho args=\"$*\"\n"
                      "env | grep -E '^(MELON|SLURM)_' | sort\n")
    out = melon.run("mbatch", "-t", "1:00", str(script), "a b", "c")
    assert out.stdout.startswith("Submitted batch job ")
    jid = int(out.stdout.split()[-1])
    job = melon.wait_state(jid, {"CD"})
    assert job["name"] == "envjob" and job["exit_code"] == 0 and job["assigned_node"] == "local"
    assert job["req_res"] == {"cpu_count": 1, "memory": job["req_res"]["memory"], "time": 1}
    assert job["time_limit_seconds"] == 60
    text = (melon.work / f"melon-{jid}.out").read_text()
    assert "args=a b c" in text
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("args"))
    assert env["MELON_JOB_ID"] == env["SLURM_JOB_ID"] == str(jid)
    assert env["MELON_JOB_NAME"] == env["SLURM_JOB_NAME"] == "envjob"
    assert env["MELON_CPUS_PER_TASK"] == "1"
    assert env["MELON_SUBMIT_DIR"] == str(melon.work)
    # Melon calls the embedded node `local`; its jobs see the machine's host name, which resolves
    host = socket.gethostname()
    assert env["MELON_NODENAME"] == env["SLURM_NODELIST"] == env["SLURM_JOB_NODELIST"] == host
    socket.getaddrinfo(env["SLURM_JOB_NODELIST"], None)
    on_host = melon.submit("-w", host, "-o", "host.out", "--wrap", "echo $SLURMD_NODENAME")  # either name, one node
    assert melon.wait_state(on_host, {"CD"})["assigned_node"] == "local"
    assert (melon.work / "host.out").read_text() == f"{host}\n"
    assert int(env["MELON_MEM_PER_NODE"]) * 1024 * 1024 == job["req_res"]["memory"]
    kinds = [e["kind"] for e in job["events"]]
    # `launched` (the node's start time and pid) is recorded when the start's reply is read, unless
    # so quick a job's end was read first: then the end carries its start time.
    assert [k for k in kinds if k != "launched"] == ["submitted", "started", "ended"] and kinds.count("launched") <= 1


def test_queue_columns_and_filters(melon: Melon) -> None:
    jid = melon.submit("-t", "0:30", "-J", "sleeper", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    held = melon.submit("-H", "--wrap", "true")
    text = melon.run("mqueue").stdout.splitlines()
    assert text[0].split() == ["JOBID", "NAME", "USER", "ST", "TIME", "TIME_LIMIT", "TIME_LEFT", "NODES"]
    rows = {line.split()[0]: line.split() for line in text[1:]}
    assert rows[str(jid)][1:4] == ["sleeper", "root" if os.geteuid() == 0 else rows[str(jid)][2], "R"]
    assert rows[str(jid)][5] == "0:30" and rows[str(jid)][7] == "local"
    assert 20 <= int(rows[str(jid)][6].split(":")[1]) <= 30 and not rows[str(jid)][6].endswith("!")
    assert rows[str(held)][3] == "PD" and rows[str(held)][7] == "(JobHeldUser)"
    assert rows[str(held)][6] == rows[str(held)][5]  # pending: the whole limit is left, as squeue's %L
    assert [j["id"] for j in melon.jobs("-t", "PD")] == [held]
    assert [j["id"] for j in melon.jobs("-j", str(jid))] == [jid]
    assert {j["id"] for j in melon.jobs("--me")} == {jid, held}
    assert melon.jobs("-u", "nobody-at-all") == []
    melon.run("mcancel", str(jid), str(held))
    melon.wait_state(jid, {"CA"})
    assert melon.jobs() == []
    assert {j["id"] for j in melon.jobs("--all")} >= {jid, held}


def test_time_left_is_shown_and_marked_in_the_last_tenth(melon: Melon) -> None:
    jid = melon.submit("-t", "0:10", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})

    def left() -> str:
        row = next(line.split() for line in melon.run("mqueue").stdout.splitlines() if line.split()[0] == str(jid))
        return row[6]
    assert not left().endswith("!")
    detail = melon.run("mshow", str(jid)).stdout
    assert "TimeLeft: 0:" in detail and "!" not in detail.split("TimeLeft:")[1].splitlines()[0]
    wait_for(lambda: left().endswith("!"), timeout=15, what="the last second of ten to be marked")
    assert left() in ("0:01!", "0:00!")
    assert melon.run("mshow", str(jid)).stdout.split("TimeLeft:")[1].splitlines()[0].strip().endswith("!")
    melon.run("mcancel", str(jid))


def test_timeout_kills_on_time(melon: Melon) -> None:
    jid = melon.submit("-t", "0:02", "--wrap", "trap '' TERM; sleep 30")  # ignores SIGTERM: needs the SIGKILL
    job = melon.wait_state(jid, {"TO"}, timeout=20)
    ended = next(e for e in job["events"] if e["kind"] == "ended")["data"]
    assert 0 <= ended["kill_late_by"] < 1.0, ended
    assert job["signal"] == 9
    assert 2 <= job["stop_time"] - job["start_time"] <= 5


def test_extend_running_job_completes_instead_of_timing_out(melon: Melon) -> None:
    extended = melon.submit("-t", "0:03", "--wrap", "sleep 5; echo finished")
    control = melon.submit("-t", "0:03", "--wrap", "sleep 5; echo finished")
    melon.wait_state(extended, {"R"})
    out = melon.run("mextend", "-j", str(extended), "-t", "+0:05").stdout
    assert "0:03 -> 0:08" in out and "ends at the latest at" in out
    assert melon.wait_state(extended, {"CD", "TO"}, timeout=20)["state"] == "CD"
    assert melon.wait_state(control, {"CD", "TO"}, timeout=20)["state"] == "TO"
    assert "finished" in (melon.work / f"melon-{extended}.out").read_text()
    ext = melon.job(extended)["extensions"]
    assert len(ext) == 1 and ext[0]["data"]["old_limit"] == 3 and ext[0]["data"]["new_limit"] == 8
    assert ext[0]["data"]["new_deadline"] - ext[0]["data"]["old_deadline"] == pytest.approx(5)


def test_extend_pending_job_and_seed_forms(melon: Melon) -> None:
    jid = melon.submit("-H", "-t", "10", "--wrap", "true")
    melon.run("mextend", "-j", str(jid), "-t", "0-01-00")
    assert melon.job(jid)["time_limit_seconds"] == 600 + 3600
    melon.run("mextend", "-j", str(jid), "-t", "1-00:00:00")
    assert melon.job(jid)["time_limit_seconds"] == 600 + 3600 + 86400
    melon.run("mextend", "-j", str(jid), "--to", "2:00:00")
    assert melon.job(jid)["time_limit_seconds"] == 7200
    melon.run("mcancel", str(jid))


def test_cancel_running_job_kills_whole_tree(melon: Melon) -> None:
    pids = melon.work / "pids"
    jid = melon.submit("--wrap", f"sleep 300 & echo $! >> {pids}; (sleep 300 & echo $! >> {pids}; wait) & "
                                 f"echo $$ >> {pids}; wait")
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, what="the job's processes")
    procs = [int(p) for p in pids.read_text().split()]
    assert all(_alive(p) for p in procs)
    assert "Cancelling job" in melon.run("mcancel", str(jid)).stdout
    job = melon.wait_state(jid, {"CA"})
    assert job["stop_time"] is not None
    wait_for(lambda: not any(_alive(p) for p in procs), timeout=5, what="every process of the job to die")
    assert [e["kind"] for e in job["events"]][-2:] == ["cancel_requested", "ended"]


@needs_root
def test_out_of_memory(melon: Melon) -> None:
    if json.loads(melon.run("minfo", "--json").stdout)[0]["backend"] == "none":
        pytest.skip("this machine gives melond no cgroup: memory is not enforced (minfo says so)")
    jid = melon.submit("--mem", "64M", "--wrap",
                       "python3 -c 'import time; b = bytearray(512 * 1024 * 1024); time.sleep(5)'")
    assert melon.wait_state(jid, {"OOM", "F", "CD"}, timeout=30)["state"] == "OOM"


def test_wait_flag_returns_exit_code(melon: Melon) -> None:
    r = melon.run("mbatch", "--wait", "--wrap", "exit 7", check=False)
    assert r.returncode == 7 and "Submitted batch job" in r.stdout
    r = melon.run("mbatch", "--wait", "--wrap", "true", check=False)
    assert r.returncode == 0


def test_scheduler_waits_for_free_cpus(melon: Melon) -> None:
    cpus = json.loads(melon.run("minfo", "--json").stdout)[0]["cpus"]
    big = [melon.submit("-c", str(cpus), "-t", "0:20", "--wrap", "sleep 2") for _ in range(2)]
    first = melon.wait_state(big[0], {"R"})
    second = melon.job(big[1])
    assert second["state"] == "PD" and second["reason"] in ("Resources", "Priority")
    melon.wait_state(big[1], {"R"}, timeout=20)
    assert melon.wait_state(big[0], {"CD"})["stop_time"] <= melon.job(big[1])["start_time"]
    assert first["start_time"]


def test_output_patterns_and_error_file(melon: Melon) -> None:
    jid = melon.submit("-J", "pat", "-o", "out-%x-%j.txt", "-e", "err-%j.txt", "--wrap", "echo out; echo err >&2")
    melon.wait_state(jid, {"CD"})
    assert (melon.work / f"out-pat-{jid}.txt").read_text() == "out\n"
    assert (melon.work / f"err-{jid}.txt").read_text() == "err\n"


def test_script_is_stored_at_submit(melon: Melon) -> None:
    script = melon.work / "edit.sh"
    script.write_text("#!/bin/sh\necho first\n")
    jid = melon.submit("--begin", "now+2", str(script))
    assert melon.job(jid)["reason"] == "BeginTime"
    script.write_text("#!/bin/sh\necho second\n")
    melon.wait_state(jid, {"CD"}, timeout=20)
    assert (melon.work / f"melon-{jid}.out").read_text() == "first\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@needs_root
def test_job_runs_as_its_submitter(melon: Melon) -> None:
    mine = melon.work / "root-only"
    mine.write_text("secret\n")
    mine.chmod(0o600)
    jid = melon.submit("--wrap", f"id -un; id -u; cat {mine} || echo denied", user="nobody")
    melon.wait_state(jid, {"CD"})
    out = (melon.work / f"melon-{jid}.out").read_text().split()
    assert out[:2] == ["nobody", "65534"] and "denied" in out and "secret" not in out
    assert melon.job(jid)["user"] == "nobody"


@needs_root
def test_a_users_job_cannot_regain_root(melon: Melon) -> None:
    """Real, effective, saved and filesystem ids are all the user's; no supplementary root group."""
    jid = melon.submit("--wrap", "grep -E '^(Uid|Gid|Groups):' /proc/self/status", user="nobody")
    melon.wait_state(jid, {"CD"})
    status = dict(line.split(":", 1) for line in (melon.work / f"melon-{jid}.out").read_text().splitlines())
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Gid"].split() == ["65534"] * 4
    assert "0" not in status["Groups"].split()


def test_a_job_that_cannot_start_fails_with_the_reason(melon: Melon) -> None:
    jid = melon.submit("-D", "/nonexistent/dir", "--wrap", "true")
    job = melon.wait_state(jid, {"F"})
    assert "change directory to /nonexistent/dir" in job["detail"]
    assert "Detail: cannot change directory" in melon.run("mshow", str(jid)).stdout
    out = melon.work / "ro"
    out.mkdir()
    out.chmod(0o555)
    jid = melon.submit("-o", str(out / "x.out"), "--wrap", "true", user="nobody") if os.geteuid() == 0 else None
    if jid is not None:
        assert "open output file" in melon.wait_state(jid, {"F"})["detail"]
