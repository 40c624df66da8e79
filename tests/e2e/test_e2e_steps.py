"""Steps: each srun in a job is numbered (J.0, J.1, ...), recorded with how it ended, listed by
sacct and squeue -s, and ended alone by scancel J.S."""
from __future__ import annotations

import subprocess

from melon_cli.client import Client
from conftest import Melon, slurm_names_env, wait_for


def _run(melon: Melon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=slurm_names_env(melon), cwd=melon.work,
                          timeout=60)


def _steps(melon: Melon, jid: int) -> list[dict]:
    return Client(melon.endpoint).call("GET", f"/jobs/{jid}")["steps"]


def test_each_srun_is_a_numbered_step_with_its_end(melon: Melon) -> None:
    (melon.work / "s.sh").write_text(
        "#!/bin/sh\n#SBATCH -n 2 -o steps-%j.out\n"
        "srun sh -c 'echo step=$SLURM_STEP_ID task=$SLURM_PROCID gtids=$SLURM_GTIDS'\n"
        "srun -n 1 -J second sh -c 'exit 3'\n"
        "srun -n 1 --output=out-%J.txt sh -c 'echo $SLURM_STEP_ID'\n"
        "echo done\n")
    jid = int(_run(melon, "sbatch", "--parsable", "s.sh").stdout)
    melon.wait_state(jid, {"CD"})
    lines = (melon.work / f"steps-{jid}.out").read_text().splitlines()
    assert sorted(lines[:2]) == ["step=0 task=0 gtids=0,1", "step=0 task=1 gtids=0,1"]
    assert (melon.work / f"out-{jid}.2.txt").read_text() == "2\n"
    steps = _steps(melon, jid)
    assert [(s["step_id"], s["name"], s["state"], s["ntasks"], s["exit_code"]) for s in steps] == [
        (0, "sh", "COMPLETED", 2, 0), (1, "second", "FAILED", 1, 3), (2, "sh", "COMPLETED", 1, 0)]
    assert all(s["end_time"] >= s["start_time"] > 0 and s["node"] == "local" for s in steps)
    shown = melon.run("mshow", str(jid)).stdout
    assert f"  {jid}.1 second: FAILED (3:0), 1 task on local, " in shown
    assert [s["step_id"] for s in melon.job(jid)["steps"]] == [0, 1, 2]


def test_sacct_lists_the_batch_step_and_each_srun_step(melon: Melon) -> None:
    (melon.work / "a.sh").write_text("#!/bin/sh\n#SBATCH -J acct\nsrun -J one true\nsrun sh -c 'exit 4'\nexit 1\n")
    jid = int(_run(melon, "sbatch", "--parsable", "a.sh").stdout)
    melon.wait_state(jid, {"F"})
    out = _run(melon, "sacct", "-j", str(jid), "-P", "-n", "-o", "JobID,JobName,Partition,State,ExitCode,NTasks")
    assert out.stdout.splitlines() == [
        f"{jid}|acct|local|FAILED|1:0|", f"{jid}.batch|batch||FAILED|1:0|1",
        f"{jid}.0|one||COMPLETED|0:0|1", f"{jid}.1|sh||FAILED|4:0|1"]
    assert _run(melon, "sacct", "-X", "-j", str(jid), "-P", "-n", "-o", "JobID").stdout == f"{jid}\n"
    assert _run(melon, "sacct", "-j", f"{jid}.1", "-P", "-n", "-o", "JobID,State").stdout == f"{jid}.1|FAILED\n"
    assert _run(melon, "sacct", "-j", f"{jid}.batch,{jid}.0", "-P", "-n", "-o", "JobID").stdout == \
        f"{jid}.batch\n{jid}.0\n"
    macct = melon.run("macct", "-j", str(jid), "-P", "-n", "-o", "JobID,State").stdout
    assert macct.splitlines() == [f"{jid}|FAILED", f"{jid}.batch|FAILED", f"{jid}.0|COMPLETED", f"{jid}.1|FAILED"]


def test_squeue_lists_running_steps_and_scancel_ends_one_alone(melon: Melon) -> None:
    (melon.work / "l.sh").write_text(
        "#!/bin/sh\n#SBATCH -J long -o long-%j.out\n"
        "srun -J stuck sh -c 'touch stuck.go; sleep 300'\necho stuck-ended-$?\n"
        "srun -J next sh -c 'echo next ran'\n")
    jid = int(_run(melon, "sbatch", "--parsable", "l.sh").stdout)
    wait_for(lambda: (melon.work / "stuck.go").exists(), timeout=30, what="the first step to run")
    out = _run(melon, "squeue", "-s").stdout.splitlines()
    assert out[0] == "         STEPID     NAME PARTITION     USER      TIME NODELIST"
    labels = [line.split()[0] for line in out[1:]]
    assert labels == [f"{jid}.batch", f"{jid}.0"]
    assert _run(melon, "squeue", f"-s{jid}.0", "-h").stdout.split()[:2] == [f"{jid}.0", "stuck"]
    r = _run(melon, "scancel", f"{jid}.0")
    assert (r.returncode, r.stderr) == (0, "")
    melon.wait_state(jid, {"CD"})
    text = (melon.work / f"long-{jid}.out").read_text()
    assert "stuck-ended-137" in text and "next ran" in text  # the job went on past the step
    states = [(s["step_id"], s["state"], s["exit_signal"]) for s in _steps(melon, jid)]
    assert states == [(0, "CANCELLED", 9), (1, "COMPLETED", None)]
    r = _run(melon, "scancel", f"{jid}.5")
    assert r.returncode == 1 and r.stderr == f"scancel: error: Kill job error on job step id {jid}.5: " \
                                             f"Invalid job id specified\n"


AFFINITY = "python3 aff.py"  # its CPUs, from a file: the commands below are already in single quotes


def test_exact_steps_divide_the_jobs_cpus_and_a_whole_step_waits_its_turn(melon: Melon) -> None:
    """Slurm >= 21.08: --exact (or -c) takes ntasks x c CPUs, disjoint from other running steps;
    a step without it takes all of the job's, so it waits until they are free; --overlap shares."""
    import os
    if len(os.sched_getaffinity(0)) < 2:
        import pytest
        pytest.skip("needs a node of 2 CPUs")
    (melon.work / "aff.py").write_text("import os\nprint(*sorted(os.sched_getaffinity(0)))\n")
    (melon.work / "p.sh").write_text(
        "#!/bin/sh\n#SBATCH -n 2 -o par-%j.out -e par-%j.err\n"
        f"srun --exact -n 1 sh -c 'touch a.go; while [ ! -e b.go ]; do sleep 0.05; done; echo A $({AFFINITY})' &\n"
        f"srun -n 1 -c 1 sh -c 'touch b.go; while [ ! -e a.go ]; do sleep 0.05; done; echo B $({AFFINITY})' &\n"
        "wait\n"
        "srun sh -c 'sleep 1.5; echo first' &\n"
        "sleep 0.5\n"
        "srun --overlap sh -c 'echo overlap'\n"
        "srun sh -c 'echo second'\n"
        f"wait\nsrun -l {AFFINITY}\n")
    jid = int(_run(melon, "sbatch", "--parsable", "p.sh").stdout)
    melon.wait_state(jid, {"CD"}, timeout=60)
    out = (melon.work / f"par-{jid}.out").read_text().splitlines()
    a = next(line for line in out if line.startswith("A ")).split()[1:]
    b = next(line for line in out if line.startswith("B ")).split()[1:]
    assert len(a) == len(b) == 1 and a != b  # both ran at once, each on a CPU of its own
    assert out.index("overlap") < out.index("first") < out.index("second")  # overlap at once; the whole one waited
    assert sorted(line.split(": ")[1] for line in out if ": " in line) == sorted([a[0], b[0]])  # a task per CPU
    err = (melon.work / f"par-{jid}.err").read_text()
    assert f"srun: Job {jid} step creation temporarily disabled, retrying (Requested nodes are busy)" in err
    assert f"srun: Step created for StepId={jid}.4" in err


def test_a_step_larger_than_the_job_is_refused_as_slurm_refuses_it(melon: Melon) -> None:
    (melon.work / "big.sh").write_text("#!/bin/sh\n#SBATCH -n 1 -o big-%j.out\nsrun --exact -n 4 true\necho rc=$?\n")
    jid = int(_run(melon, "sbatch", "--parsable", "big.sh").stdout)
    melon.wait_state(jid, {"CD"})
    text = (melon.work / f"big-{jid}.out").read_text()
    assert f"srun: error: Unable to create step for job {jid}: More processors requested than permitted" in text
    assert "rc=1" in text


def test_kill_on_bad_exit_ends_the_other_tasks_at_the_first_failure(melon: Melon) -> None:
    """srun -K: the first task to fail ends the step's others (they would sleep a minute)."""
    import time
    (melon.work / "k.sh").write_text(
        "#!/bin/sh\n#SBATCH -n 2 -o k-%j.out -e k-%j.out\n"
        "srun -K sh -c 'if [ $SLURM_PROCID = 0 ]; then sleep 0.5; exit 3; fi; exec sleep 60'\necho rc=$?\n")
    began = time.monotonic()
    jid = int(_run(melon, "sbatch", "--parsable", "k.sh").stdout)
    melon.wait_state(jid, {"CD"}, timeout=40)
    assert time.monotonic() - began < 30
    text = (melon.work / f"k-{jid}.out").read_text()
    assert "task 0: Exited with exit code 3" in text and "rc=137" in text, text


def test_srun_refuses_more_nodes_than_the_job_has_in_sruns_words(melon: Melon) -> None:
    (melon.work / "n.sh").write_text("#!/bin/sh\n#SBATCH -o n-%j.out -e n-%j.out\nsrun -N 2 true; echo rc=$?\n"
                                     "srun -w nowhere true; echo rc=$?\nsrun -r 0 -n 1 sh -c 'echo relative ok'\n")
    jid = int(_run(melon, "sbatch", "--parsable", "n.sh").stdout)
    melon.wait_state(jid, {"CD"})
    text = (melon.work / f"n-{jid}.out").read_text()
    assert "srun: error: Minimum node count > allocated node count (2 > 1)\nrc=1" in text
    assert "srun: error: Requested nodes nowhere not in the job's allocation" in text
    assert "relative ok" in text
