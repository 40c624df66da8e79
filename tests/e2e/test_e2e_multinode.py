"""Jobs spanning nodes, on three local nodes (each its own spool and helper, as three machines'
would be): the allocation's environment, srun's tasks on every node with their output and exits
back in srun, sacct's rows, and cancel, timeout, extension and a killed srun reaching every node.
The Docker cluster runs the same across real sshd nodes (tests/cluster)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Melon, slurm_names_env, wait_for
from melond.spec.cpulist import parse_cpuset

NODE_CPUS = len(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(NODE_CPUS < 2, reason="the jobs here hold 2 CPUs on each node")


@pytest.fixture
def three(short_tmp: Path) -> Iterator[Melon]:
    nodes = "".join(f'[nodes.n{i}]\npartition = "p"\nspool = "{short_tmp}/spool{i}"\n' for i in (1, 2, 3))
    melon = Melon(short_tmp / "m", inventory=f"[partitions.p]\ndefault = true\n{nodes}")
    melon.start()
    try:
        yield melon
    finally:
        melon.cleanup()


def _run(melon: Melon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=slurm_names_env(melon), cwd=melon.work,
                          timeout=60)


def _submit(melon: Melon, script: str) -> int:
    (melon.work / "job.sh").write_text(script)
    r = _run(melon, "sbatch", "--parsable", "job.sh")
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _ended(melon: Melon, script: str, out: str, timeout: float = 60) -> tuple[dict, str]:
    """Submit the script, wait for its end: the job and its output file `out-JOBID.out`."""
    jid = _submit(melon, script)
    job = melon.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=timeout)
    return job, (melon.work / f"{out}-{jid}.out").read_text()


def _processes_of(jid: int) -> list[int]:
    """Every process on this machine that belongs to job `jid` (its holders, tasks and batch
    script: each carries the job's id in its environment)."""
    mark = f"SLURM_JOB_ID={jid}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                found.append(int(name))
    return found


def test_a_job_on_three_nodes_runs_srun_tasks_on_each(three: Melon) -> None:
    jid = _submit(three, "#!/bin/bash\n#SBATCH -N 3 -n 6 -o span-%j.out\n"
                         "env | grep -E '^SLURM_(JOB_NODELIST|NNODES|TASKS_PER_NODE|JOB_CPUS_PER_NODE|NODEID)=' | sort\n"
                         "srun -l bash -c 'echo $SLURM_PROCID/$SLURM_NTASKS on $SLURMD_NODENAME node "
                         "$SLURM_NODEID local $SLURM_LOCALID step $SLURM_STEP_NODELIST; echo oops >&2'\n"
                         "srun bash -c 'exit $SLURM_PROCID'; echo srun exited $?\n"
                         "srun -N 2 -n 2 -r 1 hostname >/dev/null; echo relative $?\n")
    job = three.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=60)
    text = (three.work / f"span-{jid}.out").read_text()
    assert job["state"] == "CD", text
    assert job["num_nodes"] == 3 and job["node_list"] == "n[1-3]"
    assert [p["tasks"] for p in job["parts"]] == [2, 2, 2] and [p["node"] for p in job["parts"]] == ["n1", "n2", "n3"]
    lines = text.splitlines()
    assert lines[:5] == ["SLURM_JOB_CPUS_PER_NODE=2(x3)", "SLURM_JOB_NODELIST=n[1-3]", "SLURM_NNODES=3",
                         "SLURM_NODEID=0", "SLURM_TASKS_PER_NODE=2(x3)"], text
    for rank in range(6):  # block layout: ranks 0-1 on n1, 2-3 on n2, 4-5 on n3
        node = rank // 2
        assert f"{rank}: {rank}/6 on n{node + 1} node {node} local {rank % 2} step n[1-3]" in lines, text
        assert f"{rank}: oops" in lines, text
    for rank in range(1, 6):
        assert f"srun: error: n{rank // 2 + 1}: task {rank}: Exited with exit code {rank}" in lines, text
    assert "srun exited 5" in lines and "relative 0" in lines, text
    sacct = _run(three, "sacct", "-j", str(jid), "-n", "-P", "-o", "JobID,NNodes,NodeList,State,ExitCode").stdout
    assert sacct.splitlines() == [f"{jid}|3|n[1-3]|COMPLETED|0:0", f"{jid}.batch|1|n1|COMPLETED|0:0",
                                  f"{jid}.0|3|n[1-3]|COMPLETED|0:0", f"{jid}.1|3|n[1-3]|FAILED|5:0",
                                  f"{jid}.2|2|n[2-3]|COMPLETED|0:0"], sacct
    squeue = _run(three, "squeue", "-h", "-t", "all", "-j", str(jid), "-o", "%D %N").stdout
    assert squeue.strip() in ("", "3 n[1-3]")  # gone from the queue once ended, as Slurm's


def _running_everywhere(melon: Melon, jid: int) -> None:
    """Wait until a task of the job runs on each of the three nodes."""
    wait_for(lambda: len(list(melon.work.glob(f"up-{jid}-*"))) == 3, timeout=30, what="a task on each node")


SPREAD = ("#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -t {limit} -o spread-%j.out\n"
          "srun bash -c 'touch up-$SLURM_JOB_ID-$SLURM_PROCID; exec sleep 300'\n")


def test_cancel_ends_the_job_on_every_node_and_leaves_nothing(three: Melon) -> None:
    jid = _submit(three, SPREAD.format(limit="5:00"))
    _running_everywhere(three, jid)
    assert len(_processes_of(jid)) >= 6  # batch, srun, two holders, three tasks
    assert three.run("mqueue", "-h", "-w", "n3", "-o", "%i %D %N").stdout.split() == [str(jid), "3", "n[1-3]"]
    three.run("mcancel", str(jid))
    three.wait_state(jid, {"CA"}, timeout=30)
    wait_for(lambda: not _processes_of(jid), timeout=20, what="every process of the job gone from every node")


def test_extension_reaches_every_node_and_timeout_ends_them_all(three: Melon) -> None:
    jid = _submit(three, SPREAD.format(limit="0:02"))  # 2 s: extended to 4, then it times out
    _running_everywhere(three, jid)
    three.run("mextend", "-j", str(jid), "-t", "+0:02")
    for i in (1, 2, 3):  # each node holds the job's deadline itself
        spool = three.root.parent / f"spool{i}" / "jobs" / str(jid)
        wait_for(lambda: (spool / "limit").exists() and (spool / "limit").read_text() == "4", timeout=10,
                 what=f"node n{i} to hold the new limit")
    job = three.wait_state(jid, {"TO", "CD", "CA", "F"}, timeout=30)
    assert job["state"] == "TO" and job["time_limit_seconds"] == 4
    wait_for(lambda: not _processes_of(jid), timeout=20, what="every process of the job gone from every node")


def test_a_killed_srun_takes_its_tasks_on_other_nodes_with_it(three: Melon) -> None:
    """srun killed (-9: no word from it) closes its job channel: melond kills what it started
    for it on the other nodes."""
    jid = _submit(three, "#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -o killed-%j.out\n"
                         "srun bash -c 'touch up-$SLURM_JOB_ID-$SLURM_PROCID; exec sleep 300' &\n"
                         f"while [ $(ls {three.work}/up-$SLURM_JOB_ID-* 2>/dev/null | wc -l) -lt 3 ]; do sleep 0.1; done\n"
                         "kill -9 $!; touch killed-$SLURM_JOB_ID; exec sleep 300\n")
    wait_for(lambda: (three.work / f"killed-{jid}").exists(), timeout=40, what="srun killed")

    def remote_tasks() -> list[int]:
        return [pid for pid in _processes_of(jid) if _environ(pid).get("SLURM_NODEID") in ("1", "2")
                and "SLURM_STEP_ID" in _environ(pid)]
    wait_for(lambda: not remote_tasks(), timeout=20, what="the tasks on n2 and n3 killed")
    three.run("mcancel", str(jid))
    three.wait_state(jid, {"CA"}, timeout=30)


def test_a_requeued_spanning_job_runs_again_on_every_node(three: Melon) -> None:
    """`scontrol requeue` from inside a 3-node job: every part of the first run is killed, and the
    next run starts on all three nodes again, its tasks numbered as before."""
    jid = _submit(three, "#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -o rq-%j.out --open-mode=append\n"
                         "srun -l bash -c 'echo run $SLURM_RESTART_COUNT on $SLURMD_NODENAME'\n"
                         "if [ $SLURM_RESTART_COUNT = 0 ]; then scontrol requeue $SLURM_JOB_ID; sleep 30; fi\n")
    job = three.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=60)
    text = (three.work / f"rq-{jid}.out").read_text()
    assert job["state"] == "CD" and job["restarts"] == 1, text
    for run in (0, 1):
        assert sorted(line for line in text.splitlines() if f": run {run} on" in line) == \
            [f"{rank}: run {run} on n{rank + 1}" for rank in range(3)], text
    assert len(job["parts"]) == 3
    wait_for(lambda: not _processes_of(jid), timeout=20, what="every process of the job gone from every node")


def test_kill_9_of_melond_during_a_spanning_step_loses_nothing_and_srun_says_what_happened(three: Melon) -> None:
    """melond killed while a step's tasks run on three nodes: the job runs on and is taken back
    at restart (every part re-adopted, nothing started twice); srun, whose relay went with
    melond, says it lost contact with the tasks on the other nodes (which run on until they or
    the job end) and waits for its own."""
    jid = _submit(three, "#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -t 2:00 -o k9-%j.out\n"
                         "srun -l bash -c 'touch up-$SLURM_JOB_ID-$SLURM_PROCID; for i in $(seq 40); do "
                         "echo tick $i; sleep 0.1; done; touch done-$SLURM_JOB_ID-$SLURM_PROCID'\n"
                         "echo srun exited $?\n")
    _running_everywhere(three, jid)
    three.stop(signal.SIGKILL)
    three.start()
    job = three.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=60)
    text = (three.work / f"k9-{jid}.out").read_text()
    assert job["state"] == "CD", text
    kinds = [e["kind"] for e in job["events"]]
    assert kinds.count("started") == 1 and kinds.count("ended") == 1, kinds
    assert (three.work / f"done-{jid}-0").exists(), "srun's own task ran to its end"
    assert "0: tick 40" in text and "srun exited 1" in text, text
    for rank, node in ((1, "n2"), (2, "n3")):
        assert f"srun: error: {node}: tasks {rank}: lost contact with them: " in text, text
    steps = [(s["step_id"], s["state"], s["exit_code"]) for s in job["steps"]]
    assert steps == [(0, "FAILED", 1)], steps  # one step, numbered once; its end told once melond is back
    wait_for(lambda: not _processes_of(jid), timeout=20, what="every process of the job gone from every node")


def _environ(pid: int) -> dict[str, str]:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").partition("=")[::2] for e in entries if b"=" in e)


PMI_CLIENT = r"""import os, socket, sys, time
host, port = os.environ["PMI_PORT"].rsplit(":", 1)
conn = socket.create_connection((host, int(port)))
stream = conn.makefile("rw")
def ask(text):
    stream.write(text + "\n")
    stream.flush()
    return dict(word.split("=", 1) for word in stream.readline().split())
rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
assert rank == int(os.environ["SLURM_PROCID"])
assert ask("cmd=init pmi_version=1 pmi_subversion=1")["rc"] == "0"
kvs = ask("cmd=get_my_kvsname")["kvsname"]
if sys.argv[1:] == ["abort"]:
    if rank == 1:
        stream.write("cmd=abort exitcode=7 message=rank 1 gave up\n")
        stream.flush()
        sys.exit(7)
    time.sleep(60)
ask(f"cmd=put kvsname={kvs} key=host-{rank} value={os.environ['SLURMD_NODENAME']}")
stream.write("cmd=barrier_in\n")
stream.flush()
assert stream.readline().startswith("cmd=barrier_out")
seen = [ask(f"cmd=get kvsname={kvs} key=host-{r}")["value"] for r in range(size)]
mapping = ask(f"cmd=get kvsname={kvs} key=PMI_process_mapping")["value"]
os.write(1, f"rank {rank} of {size} sees {','.join(seen)} {mapping}\n".encode())  # one write: ranks share a file
ask("cmd=finalize")
"""


def test_srun_serves_pmi1_to_ranks_on_every_node(three: Melon) -> None:
    """`srun ./mpi_program` as MPICH's library starts it: every task reaches srun's PMI-1 port
    over TCP from its node, its key seen by every other after the barrier, with the process
    mapping of the step's layout; MPI_Abort from one rank ends them all; --mpi=none serves none."""
    (three.work / "pmi_client.py").write_text(PMI_CLIENT)
    job, text = _ended(three, "#!/bin/bash\n#SBATCH -N 3 -n 6 -o pmi-%j.out\n"
                              "srun python3 pmi_client.py\n"
                              "srun -m cyclic python3 pmi_client.py\n"
                              "start=$SECONDS; srun python3 pmi_client.py abort; echo abort exited $? in "
                              "$((SECONDS-start))\n"
                              "srun --mpi=none -n 2 bash -c 'echo pmi:${PMI_PORT:-none}'\n", "pmi", timeout=90)
    assert job["state"] == "CD", text
    block = sorted(line for line in text.splitlines() if "(vector,(0,3,2))" in line)
    assert block == [f"rank {r} of 6 sees n1,n1,n2,n2,n3,n3 (vector,(0,3,2))" for r in range(6)], text
    cyclic = sorted(line for line in text.splitlines() if "(vector,(0,3,1),(0,3,1))" in line)
    assert cyclic == [f"rank {r} of 6 sees n1,n2,n3,n1,n2,n3 (vector,(0,3,1),(0,3,1))" for r in range(6)], text
    assert "srun: error: a task called MPI_Abort (exit code 7): rank 1 gave up; killing the step's tasks" in text
    assert "srun: error: n1: task 0: Killed" in text and "srun: error: n3: task 5: Killed" in text, text
    took = int(text.split("abort exited 137 in ")[1].split()[0])
    assert took < 30, text  # the other ranks' 60-second sleep was cut short
    assert text.count("pmi:none") == 2, text


def test_each_task_on_every_node_has_a_cpu_of_its_own(three: Melon) -> None:
    """Tasks are bound as on the first node on the others too: two tasks on a node's two CPUs
    get one each (`nproc` 1, different CPUs); `--cpu-bind=none` leaves each the node's two."""
    job, text = _ended(three, "#!/bin/bash\n#SBATCH -N 3 -n 6 -o bind-%j.out\n"
                              "srun -l python3 -c 'import os; print(sorted(os.sched_getaffinity(0)))'\n"
                              "srun -l --cpu-bind=none python3 -c 'import os; print(\"none\", "
                              "len(os.sched_getaffinity(0)))'\n", "bind")
    assert job["state"] == "CD", text
    cpus = {int(line.split(":")[0]): line.split(": ", 1)[1] for line in text.splitlines() if ": [" in line}
    assert sorted(cpus) == list(range(6)), text
    for node, part in enumerate(job["parts"]):
        first, second = cpus[2 * node], cpus[2 * node + 1]
        assert len(eval(first)) == 1 and len(eval(second)) == 1 and first != second, (part, text)
        assert {*eval(first), *eval(second)} == set(parse_cpuset(part["cpu_ids"])), (part, text)
    assert text.count("none 2") == 6, text


def test_a_range_of_nodes_takes_what_is_free_and_use_min_nodes_the_fewest(three: Melon) -> None:
    """`-N 2-3 -n 3` on three free nodes gets all three (sbatch.1: as many as possible within the
    range), `--use-min-nodes` two; `-n 3 --spread-job` (from #SBATCH) one task on each node."""
    got = {}
    for name, options in (("range", "-N 2-3 -n 3"), ("fewest", "-N 2-3 -n 3 --use-min-nodes"),
                          ("spread", "-n 3 --spread-job")):
        jid = _submit(three, f"#!/bin/bash\n#SBATCH {options} -o {name}-%j.out\necho $SLURM_JOB_NODELIST\n")
        job = three.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=60)
        assert job["state"] == "CD", job
        got[name] = (job["node_list"], [p["tasks"] for p in job["parts"]])
    assert got == {"range": ("n[1-3]", [1, 1, 1]), "fewest": ("n[1-2]", [2, 1]), "spread": ("n[1-3]", [1, 1, 1])}


def test_exact_steps_divide_a_spanning_jobs_cpus_on_every_node(three: Melon) -> None:
    """Two `--exact` steps at once across a job's three nodes each hold one CPU of the two on
    every node, not the same one; a whole step then waits for them, and takes both on each."""
    (three.work / "aff.py").write_text("import os\nprint(os.environ['SLURMD_NODENAME'], *sorted(os.sched_getaffinity(0)))\n")
    aff = "python3 aff.py"
    jid = _submit(three, "#!/bin/bash\n#SBATCH -N 3 -n 6 -o ex-%j.out -e ex-%j.err\n"
                         f"srun --exact -N 3 -n 3 sh -c 'touch a.$SLURM_PROCID; while [ ! -e b.$SLURM_PROCID ]; "
                         f"do sleep 0.05; done; echo A $({aff}); sleep 1' &\n"
                         f"srun --exact -N 3 -n 3 sh -c 'touch b.$SLURM_PROCID; while [ ! -e a.$SLURM_PROCID ]; "
                         f"do sleep 0.05; done; echo B $({aff}); sleep 1' &\n"
                         "sleep 0.5; srun -l sh -c 'echo W $(nproc)'\nwait\n")
    job = three.wait_state(jid, {"CD", "F", "CA", "TO", "NF"}, timeout=60)
    text = (three.work / f"ex-{jid}.out").read_text()
    assert job["state"] == "CD", text + (three.work / f"ex-{jid}.err").read_text()
    held = {}
    for line in text.splitlines():
        if line[:2] in ("A ", "B "):
            step, node, *cpus = line.split()
            assert len(cpus) == 1, text
            held.setdefault(node, []).append(cpus[0])
    assert sorted(held) == ["n1", "n2", "n3"] and all(sorted(c) == ["0", "1"] for c in held.values()), text
    assert sorted(line.split(": ")[1] for line in text.splitlines() if ": W" in line) == ["W 1"] * 6, text
    err = (three.work / f"ex-{jid}.err").read_text()
    assert f"srun: Job {jid} step creation temporarily disabled" in err, err


PREEMPTING = """
[partitions.p]
default = true

[qos.scavenger]
preempt_mode = "requeue"
grace_time = 1

[qos.urgent]
priority = 100
preempt = ["scavenger"]
"""


@pytest.fixture
def two_preempting(short_tmp: Path) -> Iterator[Melon]:
    nodes = "".join(f'[nodes.n{i}]\npartition = "p"\ncpus = 2\nspool = "{short_tmp}/spool{i}"\n' for i in (1, 2))
    melon = Melon(short_tmp / "m", inventory=PREEMPTING + nodes)
    melon.start()
    try:
        yield melon
    finally:
        melon.cleanup()


def test_a_spanning_job_preempts_only_the_spanning_scavenger_it_needs_gone(two_preempting: Melon) -> None:
    """Each of two 2-CPU nodes runs a 1-CPU scavenger job of its own and one task of a scavenger
    job spanning both; an urgent job wanting one CPU on each node requeues the spanning one
    alone (the lowest priority, started last), starts on both nodes, and the others run on."""
    m = two_preempting
    own = [int(_run(m, "sbatch", "--parsable", "--qos", "scavenger", "-w", node, "-c", "1", "--wrap",
                    "sleep 300").stdout) for node in ("n1", "n2")]
    for jid in own:
        m.wait_state(jid, {"R"})
    spanning = int(_run(m, "sbatch", "--parsable", "--qos", "scavenger", "-N", "2", "--ntasks-per-node", "1",
                        "--wrap", "sleep 300").stdout)
    assert m.wait_state(spanning, {"R"})["node_list"] == "n[1-2]"
    urgent = int(_run(m, "sbatch", "--parsable", "--qos", "urgent", "-N", "2", "--ntasks-per-node", "1", "--wrap",
                      "srun hostname").stdout)
    done = m.wait_state(urgent, {"CD"}, timeout=60)
    assert done["node_list"] == "n[1-2]", done
    assert "requeue_requested" in [e["kind"] for e in m.job(spanning)["events"]]
    for jid in own:
        job = m.job(jid)
        assert job["state"] == "R" and job["restarts"] == 0, job  # not needed gone: not preempted
    _run(m, "scancel", *map(str, [*own, spanning]))
