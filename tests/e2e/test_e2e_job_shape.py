"""A job's shape on the embedded node: CPUs for every task, its own CPUs pinned, whole nodes,
and what one node cannot hold refused at submission, never run short of its tasks."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import Melon, slurm_names_env, wait_for

NODE_CPUS = len(os.sched_getaffinity(0))
AFFINITY = "python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))'"


def _run(melon: Melon, *args: str) -> subprocess.CompletedProcess:
    """A command by its Slurm name, or mbatch, as a user with `melon-slurm env` in their shell runs it."""
    return subprocess.run(list(args), capture_output=True, text=True, env=slurm_names_env(melon), cwd=melon.work,
                          timeout=60)


def _cpus(text: str) -> set[int]:
    return {int(c) for c in text.split()}


def test_a_one_cpu_job_sees_one_cpu(melon: Melon) -> None:
    """nproc and os.sched_getaffinity give the job's own CPUs, so thread pools size to them."""
    jid = melon.submit("-c", "1", "-o", "one-%j.out", "--wrap", f"nproc; {AFFINITY}")
    melon.wait_state(jid, {"CD"})
    nproc, ids = (melon.work / f"one-{jid}.out").read_text().splitlines()
    assert nproc == "1" and len(_cpus(ids)) == 1
    assert melon.job(jid)["cpu_ids"] == ids  # as the record keeps it (Slurm's CPU_IDs)


@pytest.mark.skipif(NODE_CPUS < 2, reason="two jobs side by side need a node of 2 CPUs")
def test_two_jobs_on_a_node_never_share_a_cpu(melon: Melon) -> None:
    jids = [melon.submit("-c", "1", "-o", f"pin{i}-%j.out", "--wrap",
                         f"{AFFINITY}; touch ran-$SLURM_JOB_ID; while [ ! -e {melon.work}/go ]; do sleep 0.1; done")
            for i in range(2)]
    wait_for(lambda: all((melon.work / f"ran-{j}").exists() for j in jids), timeout=30)
    (melon.work / "go").touch()
    sets = []
    for i, jid in enumerate(jids):
        melon.wait_state(jid, {"CD"})
        sets.append(_cpus((melon.work / f"pin{i}-{jid}.out").read_text()))
    assert len(sets[0]) == len(sets[1]) == 1 and not sets[0] & sets[1]


@pytest.mark.skipif(NODE_CPUS < 2, reason="needs a node of 2 CPUs")
def test_a_job_of_two_tasks_holds_two_cpus_and_srun_runs_both(melon: Melon) -> None:
    (melon.work / "t.sh").write_text("#!/bin/sh\n#SBATCH -n 2 -c 1 -o tasks-%j.out\n"
                                     "echo cpus=$SLURM_CPUS_ON_NODE per_task=$SLURM_CPUS_PER_TASK nproc=$(nproc)\n"
                                     "srun -l sh -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n")
    r = _run(melon, "sbatch", "--parsable", "t.sh")
    assert r.stderr == ""
    jid = int(r.stdout)
    assert melon.job(jid)["req_res"]["cpu_count"] == 2 and melon.job(jid)["num_tasks"] == 2
    melon.wait_state(jid, {"CD"})
    lines = (melon.work / f"tasks-{jid}.out").read_text().splitlines()
    assert lines[0] == "cpus=2 per_task=1 nproc=2"
    shown = _run(melon, "scontrol", "show", "job", str(jid)).stdout
    assert "   NumNodes=1 NumCPUs=2 NumTasks=2 CPUs/Task=1\n" in shown
    assert "   ReqTRES=cpu=2,mem=" in shown and "   AllocTRES=cpu=2," in shown
    assert f"   CPU_IDs={melon.job(jid)['cpu_ids']}\n" in shown
    assert sorted(lines[1:]) == ["0: task 0 of 2", "1: task 1 of 2"]


def test_an_exclusive_job_gets_the_whole_node(melon: Melon) -> None:
    jid = melon.submit("--exclusive", "-o", "excl-%j.out", "--wrap", "echo $SLURM_CPUS_ON_NODE $(nproc)")
    melon.wait_state(jid, {"CD"})
    node = json.loads(melon.run("minfo", "--json").stdout)[0]
    assert (melon.work / f"excl-{jid}.out").read_text() == f"{node['cpus']} {node['cpus']}\n"
    job = melon.job(jid)
    assert job["req_res"]["cpu_count"] == node["cpus"] and job["req_res"]["memory"] == 0  # all of it: no one shares it


@pytest.mark.parametrize(("args", "fragment"), [
    (["-N", "2"], "-N 2 needs 2 nodes, and partition local has 1; the most it holds is -N 1 -n "),
    (["-n", str(NODE_CPUS * 2)], f"needs 2 nodes, and partition local has 1; the most it holds is -N 1 -n {NODE_CPUS} "
                                 f"({NODE_CPUS} CPUs)"),
    (["-n", "2", "--ntasks-per-node", "1"], "needs 2 nodes"),
])
def test_what_the_partition_cannot_hold_is_refused_and_nothing_is_stored(melon: Melon, args: list, fragment: str) -> None:
    before = melon.jobs("--all")
    for tool in ("mbatch", "sbatch"):
        r = _run(melon, tool, *args, "--wrap", "true")
        assert r.returncode == 1 and fragment in r.stderr, r.stderr
    assert melon.jobs("--all") == before


def test_minfo_says_how_jobs_are_pinned(melon: Melon) -> None:
    node = json.loads(melon.run("minfo", "--json").stdout)[0]
    assert node["pinned"] is True and "each job's own CPUs" in node["pinning"]
    assert "does not pin" not in melon.run("minfo").stdout


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isfile("/sys/fs/cgroup/cpuset/cpuset.cpus"),
                    reason="a v1 cpuset needs root and the cgroup v1 cpuset hierarchy")
def test_a_job_in_a_cpuset_cannot_widen_its_cpus(melon: Melon) -> None:
    """Affinity alone a job may undo; its cgroup cpuset it may not."""
    widen = "python3 -c 'import os; os.sched_setaffinity(0, range(os.cpu_count())); print(*sorted(os.sched_getaffinity(0)))'"
    jid = melon.submit("-c", "1", "-o", "widen-%j.out", "--wrap", f"{widen}; cat /proc/self/cpuset")
    melon.wait_state(jid, {"CD"})
    ids, where = (melon.work / f"widen-{jid}.out").read_text().splitlines()
    assert ids == melon.job(jid)["cpu_ids"] and where.endswith(f"/job-{jid}")
    assert not os.path.exists(f"/sys/fs/cgroup/cpuset{where}")  # removed with the job
    node = json.loads(melon.run("minfo", "--json").stdout)[0]
    assert "cpuset" in node["pinning"]
