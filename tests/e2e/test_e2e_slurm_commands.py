"""Slurm's command names backed by melond (opt-in through `melon-slurm env`), printing what the
tools that parse Slurm's output expect (SLURM-CLIENTS.md)."""
from __future__ import annotations

import subprocess

import pytest

from conftest import BIN, Melon, wait_for


def _with_slurm_names(melon: Melon) -> dict:
    """melon's environment with what `eval "$(melon-slurm env)"` puts on PATH."""
    line = subprocess.run([str(BIN / "melon-slurm"), "env"], capture_output=True, text=True, check=True).stdout
    assert line.startswith('export PATH="') and line.endswith(':$PATH"\n')
    directory = line[len('export PATH="'):-len(':$PATH"\n')]
    return melon.env(PATH=f"{directory}:{melon.env()['PATH']}")


@pytest.fixture
def slurm_env(melon: Melon) -> dict:
    return _with_slurm_names(melon)


def _run(melon: Melon, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=melon.work, timeout=60)


def test_they_are_not_on_path_until_asked_for(melon: Melon) -> None:
    assert not (BIN / "squeue").exists() and not (BIN / "scancel").exists()


def test_squeue_default_layout_formats_and_ids(melon: Melon, slurm_env: dict) -> None:
    run = melon.submit("-t", "5", "-J", "runner", "--wrap", "sleep 60")
    melon.wait_state(run, {"R"})
    arr = melon.submit("-H", "-J", "held", "--array", "1-4", "--wrap", "true")
    done = melon.submit("--wrap", "true")
    melon.wait_state(done, {"CD"})
    out = _run(melon, slurm_env, "squeue").stdout.splitlines()
    assert out[0] == "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
    assert out[1].split()[0] == str(run) and out[1].split()[-1] == "local"
    assert out[2].split()[0] == f"{arr}_[1-4]" and out[2].endswith("(JobHeldUser)")
    assert len(out) == 3  # the finished job is not in the default view
    assert _run(melon, slurm_env, "squeue", "-h", "-o", "%i|%T").stdout == f"{run}|RUNNING\n{arr}_[1-4]|PENDING\n"
    assert _run(melon, slurm_env, "squeue", "--noheader", "--format=%i %t", "--job", f"{run},{arr}").stdout \
        == f"{run} R\n{arr}_[1-4] PD\n"
    assert f"{done} COMPLETED" in _run(melon, slurm_env, "squeue", "-h", "-o", "%i %T", "-t", "all").stdout
    assert _run(melon, slurm_env, "squeue", "-h", "-r", "-o", "%i", "-n", "held").stdout.split() == \
        [f"{arr}_{t}" for t in (1, 2, 3, 4)]
    header = _run(melon, slurm_env, "squeue", "--me", "-o", "%i,%T", "--state=all").stdout.splitlines()[0]
    assert header == "JOBID,STATE"
    melon.run("mcancel", str(run), str(arr))


def test_squeue_unknown_id_is_slurms_error(melon: Melon, slurm_env: dict) -> None:
    r = _run(melon, slurm_env, "squeue", "-j", "987654")
    assert r.returncode == 1 and r.stderr == "slurm_load_jobs error: Invalid job id specified\n" and r.stdout == ""
    jid = melon.submit("--wrap", "true")
    melon.wait_state(jid, {"CD"})
    r = _run(melon, slurm_env, "squeue", "-h", "-j", str(jid))  # known, finished: no line, exit 0
    assert r.returncode == 0 and r.stdout == ""


def test_scancel_is_silent_and_forgiving_as_slurms(melon: Melon, slurm_env: dict) -> None:
    held = melon.submit("-H", "--wrap", "true")
    arr = melon.submit("-H", "--array", "1-3", "--wrap", "true")
    r = _run(melon, slurm_env, "scancel", str(held), f"{arr}_2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert melon.job(held)["state"] == "CA"
    assert {j["array_task_id"]: j["state"] for j in melon.jobs("--all", "-r", "-j", str(arr))} == \
        {1: "PD", 2: "CA", 3: "PD"}
    r = _run(melon, slurm_env, "scancel", str(held), "987654")  # ended, and unknown: still exit 0
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = _run(melon, slurm_env, "scancel", "--me", "--clusters=all")
    assert r.returncode == 0
    wait_for(lambda: {j["state"] for j in melon.jobs("--all", "-r", "-j", str(arr))} == {"CA"},
             what="--me to cancel the rest")
    r = _run(melon, slurm_env, "scancel")
    assert r.returncode == 1 and "No job identification provided" in r.stderr


def test_scancel_signal_after_the_id(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-t", "1:00", "--wrap", "trap 'echo got-usr2 > sig.txt' USR2; while :; do sleep 0.1; done")
    melon.wait_state(jid, {"R"})
    import time
    time.sleep(1)
    r = _run(melon, slurm_env, "scancel", str(jid), "--signal", "USR2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    wait_for(lambda: (melon.work / "sig.txt").exists(), what="USR2 to reach the job")
    assert melon.job(jid)["state"] == "R"
    r = _run(melon, slurm_env, "scancel", "--signal=SIGTERM", str(jid))
    assert r.returncode == 0
    assert melon.wait_state(jid, {"CD", "F", "CA"})["state"] in ("F", "CD")


def test_sacct_as_the_tools_run_it(melon: Melon, slurm_env: dict) -> None:
    ok = melon.submit("-J", "ok", "--wrap", "true")
    bad = melon.submit("-J", "bad", "--wrap", "exit 2")
    held = melon.submit("-H", "--wrap", "true")
    for jid in (ok, bad):
        melon.wait_state(jid, {"CD", "F"})
    melon.run("mcancel", str(held))
    sacct = lambda *args: _run(melon, slurm_env, "sacct", *args)  # noqa: E731
    # submitit: a header it reads the column names from, one -j per id
    assert sacct("-o", "JobID,State,NodeList", "--parsable2", "-j", str(ok), "-j", str(bad)).stdout == \
        f"JobID|State|NodeList\n{ok}|COMPLETED|local\n{bad}|FAILED|local\n"
    # snakemake: no header, raw ids, comma list, -X, --clusters
    assert sacct("-X", "--parsable2", "--clusters", "all", "--noheader", "--format=JobIdRaw,State",
                 "-j", f"{ok},{held}").stdout == f"{ok}|COMPLETED\n{held}|CANCELLED\n"
    # the legacy profile: -P -b
    assert sacct("-P", "-b", "-j", str(bad), "-n").stdout == f"{bad}|FAILED|2:0\n"
    # snakemake's account probe, run without a shell: `|`, `tail` and `-1` arrive as arguments
    r = sacct("-nu", melon.job(ok)["user"], "-o", "Account%256", "|", "tail", "-1")
    assert r.returncode == 0 and r.stdout.strip() == ""
    r = sacct("-j", f"{ok}.batch", "--format=Reason", "--noheader")  # a step: Melon's jobs have none
    assert (r.returncode, r.stdout) == (0, "")
    assert sacct("-X").returncode == 0
    assert sacct("--name=bad", "-P", "-n", "-o", "jobid,state").stdout == f"{bad}|FAILED\n"
    lines = sacct("-o", "JobID%-20,State", "-j", str(ok)).stdout.splitlines()
    assert lines[2] == f"{ok}".ljust(20) + " " + "COMPLETED".rjust(10)


def test_scontrol_extends_a_job_for_its_owner(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-t", "2", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    scontrol = lambda *args: _run(melon, slurm_env, "scontrol", *args)  # noqa: E731
    r = scontrol("update", f"JobId={jid}", "TimeLimit=+10")  # what Slurm allows only its administrators
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert melon.job(jid)["time_limit_seconds"] == 12 * 60
    assert scontrol("update", f"jobid={jid}", "timelimit=1:00:00").returncode == 0
    assert melon.job(jid)["time_limit_seconds"] == 3600
    shown = scontrol("show", "job", str(jid)).stdout
    assert shown.startswith(f"JobId={jid} JobName=wrap\n   UserId=") and "JobState=RUNNING" in shown
    assert "TimeLimit=01:00:00" in shown and "ExitCode=0:0" in shown
    assert "\n" not in scontrol("-o", "show", "job", str(jid)).stdout.strip()
    for args, says in ((["update", f"JobId={jid}", "TimeLimit=-5"], "give the new total"),
                       (["update", "JobId=987654", "TimeLimit=+5"], "does not exist"),
                       (["hold", str(jid)], "only pending jobs"), (["frobnicate"], "not something")):
        r = scontrol(*args)
        assert r.returncode == 1 and says in r.stderr, (args, r.stderr)
    assert melon.job(jid)["time_limit_seconds"] == 3600
    melon.run("mcancel", str(jid))


def test_scontrol_hold_release_and_hostnames(melon: Melon, slurm_env: dict) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    assert _run(melon, slurm_env, "scontrol", "release", str(jid)).returncode == 0
    melon.wait_state(jid, {"CD"})
    out = _run(melon, slurm_env, "scontrol", "show", "hostnames", "node[1-3],gpu01").stdout
    assert out == "node1\nnode2\nnode3\ngpu01\n"
    env = {**slurm_env, "SLURM_JOB_NODELIST": "n[07-08]"}
    assert _run(melon, env, "scontrol", "show", "hostnames").stdout == "n07\nn08\n"


def test_sinfo_default_node_and_summary_views(melon_factory) -> None:
    melon = melon_factory(inventory='[partitions.short]\ndefault = true\nmax_time = "4:00:00"\n'
                                    '[partitions.long]\nmax_time = "2-00:00:00"\n')
    env = _with_slurm_names(melon)
    out = _run(melon, env, "sinfo").stdout.splitlines()
    assert out[0] == "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST"
    assert out[1].split() == ["short*", "up", "4:00:00", "1", "idle", "local"]
    assert len(out) == 2  # `long` has no nodes: no line, as sinfo prints none for an empty partition
    assert _run(melon, env, "sinfo", "-h", "-o", "%P|%l|%c", "-p", "short").stdout.split("|")[:2] == \
        ["short*", "4:00:00"]
    assert _run(melon, env, "sinfo", "-N", "-h").stdout.split() == ["local", "1", "short*", "idle"]
    assert _run(melon, env, "sinfo", "-s", "-h").stdout.split()[3] == "0/1/0/1"
    jid = melon.submit("-t", "1:00", "--wrap", "sleep 30")
    melon.wait_state(jid, {"R"})
    assert _run(melon, env, "sinfo", "-h", "-o", "%t").stdout.strip() in ("mix", "alloc")
    melon.run("mcancel", str(jid))
    r = _run(melon, env, "sinfo", "-o", "%q")
    assert r.returncode == 1 and "'%q'" in r.stderr
