"""Generic resources (GPUs, licenses) a node has, from the inventory in gres.conf's terms, shown
where Slurm shows them: sinfo's %G, scontrol show node's Gres=, minfo and the API."""
from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import GPU_PROBE, Melon, slurm_names_env, wait_for
from melon_cli.client import Client

INVENTORY = """[partitions.p]
default = true
[nodes.g1]
partition = "p"
spool = "{tmp}/spool1"
gres = [{{name = "gpu", type = "a100", files = "/dev/nvidia[0-1]"}}, {{name = "license_x", count = 2}}]
[nodes.c1]
partition = "p"
spool = "{tmp}/spool2"
"""


def test_a_nodes_gres_is_shown_as_slurm_shows_it(short_tmp: Path) -> None:
    melon = Melon(short_tmp / "m", inventory=INVENTORY.format(tmp=short_tmp))
    melon.start()
    try:
        env = slurm_names_env(melon)

        def run(*args: str) -> str:
            r = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout
        assert run("sinfo", "-N", "-h", "-o", "%N %G").splitlines() == ["c1 (null)", "g1 gpu:a100:2,license_x:2"]
        assert sorted(run("sinfo", "-h", "-o", "%D %G").splitlines()) == ["1 (null)", "1 gpu:a100:2,license_x:2"]
        assert "Gres=gpu:a100:2,license_x:2" in run("scontrol", "show", "node", "g1")
        assert "Gres=(null)" in run("scontrol", "show", "node", "c1")
        table = run("minfo").splitlines()
        assert table[0].split()[-1] == "GRES"
        assert {line.split()[0]: line.split()[-1] for line in table[1:3]} == {"g1": "gpu:a100:2,license_x:2", "c1": "-"}
        assert {n["name"]: n["gres"] for n in Client(melon.endpoint).call("GET", "/nodes")["nodes"]} == {
            "g1": "gpu:a100:2,license_x:2", "c1": None}
    finally:
        melon.cleanup()


def _devices_cgroup_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root, to make device files and give jobs devices cgroups"
    if not os.path.isfile("/sys/fs/cgroup/devices/devices.deny"):
        return "no cgroup v1 devices hierarchy here (the Docker cluster and the v2 VM test the other ways)"
    return None


def _make_gpus(where: Path) -> None:
    """Four character devices with the NVIDIA driver's major number and no driver behind them:
    opening one the cgroup allows fails with ENXIO, one it denies with EPERM."""
    where.mkdir()
    for i in range(4):
        os.mknod(where / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(195, i))


def _gpu_melon(tmp: Path, nodes: tuple[str, ...], cpus: int) -> Melon:
    """A started melond whose local nodes each have four stand-in GPUs of their own (or skip)."""
    why = _devices_cgroup_usable()
    if why:
        pytest.skip(why)
    inventory = "[partitions.p]\ndefault = true\n"
    for n in nodes:
        _make_gpus(tmp / f"dev-{n}")
        inventory += (f'[nodes.{n}]\npartition = "p"\nspool = "{tmp}/spool-{n}"\ncpus = {cpus}\n'
                      f'gres = [{{name = "gpu", files = "{tmp}/dev-{n}/nvidia[0-3]"}}]\n')
    melon = Melon(tmp / "m", inventory=inventory)
    melon.start()
    return melon


def _report(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_gpu_jobs_open_only_their_own_devices_and_get_slurms_variables(short_tmp: Path) -> None:
    why = _devices_cgroup_usable()
    if why:
        pytest.skip(why)
    dev = short_tmp / "dev"
    _make_gpus(dev)
    inventory = f"""[partitions.p]
default = true
[nodes.g1]
partition = "p"
spool = "{short_tmp}/spool1"
cpus = 8
gres = [{{name = "gpu", type = "t4", files = "{dev}/nvidia[0-3]"}}]
"""
    melon = Melon(short_tmp / "m", inventory=inventory)
    melon.start()
    try:
        script = melon.work / "probe.sh"
        script.write_text(GPU_PROBE)
        go = melon.work / "go"
        env = melon.env(CUDA_VISIBLE_DEVICES="7")  # the submitter's: a job without GPUs must not inherit it
        one = melon.submit("--gres=gpu:1", "--mem=100M", "-o", "one.out", str(script), str(go), str(dev), env=env)
        two = melon.submit("--gpus=t4:2", "--mem=100M", "-o", "two.out", str(script), str(go), str(dev), env=env)
        none = melon.submit("--mem=100M", "-o", "none.out", str(script), str(go), str(dev), env=env)
        for job_id, name in ((one, "one"), (two, "two"), (none, "none")):
            melon.wait_state(job_id, {"R"})
            wait_for(lambda n=name: (melon.work / f"{n}.out").exists() and "SLURM_GPUS_ON_NODE" in
                     (melon.work / f"{n}.out").read_text(), what=f"job {name}'s report")
        waiting = melon.submit("--gres=gpu:2", "--mem=100M", str(script), str(go), str(dev))
        wait_for(lambda: melon.job(waiting)["reason"] == "Resources", what="the third GPU job to wait for GPUs")
        reports = {name: _report(melon.work / f"{name}.out") for name in ("one", "two", "none")}
        own = {name: {i for i in range(4) if r[str(i)] == "ENXIO"} for name, r in reports.items()}
        assert len(own["one"]) == 1 and len(own["two"]) == 2 and own["none"] == set()
        assert not own["one"] & own["two"]  # each job its own devices
        for name, r in reports.items():  # every other device: refused by the kernel
            assert {r[str(i)] for i in range(4) if i not in own[name]} == {"EPERM"}, (name, r)
        assert reports["one"]["SLURM_JOB_GPUS"] == ",".join(map(str, sorted(own["one"])))
        assert reports["two"]["SLURM_JOB_GPUS"] == ",".join(map(str, sorted(own["two"])))
        for name, local in (("one", "0"), ("two", "0,1")):  # numbered from 0, as the job sees only its own
            assert [reports[name][v] for v in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")] \
                == [local] * 3
            assert reports[name]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
            assert reports[name]["SLURM_GPUS_ON_NODE"] == str(len(own[name]))
        assert reports["none"]["CUDA_VISIBLE_DEVICES"] == "unset" and reports["none"]["SLURM_JOB_GPUS"] == "unset"
        shown = subprocess.run(["scontrol", "show", "node", "g1"], capture_output=True, text=True,
                               env=slurm_names_env(melon), timeout=30).stdout
        assert "Gres=gpu:t4:4" in shown and "GresUsed=gpu:t4:3(IDX:" in shown, shown
        node = Client(melon.endpoint).call("GET", "/nodes")["nodes"][0]
        assert "cgroup v1 devices" in node["device_isolation"]
        slurm = slurm_names_env(melon)
        shown = subprocess.run(["scontrol", "show", "job", str(two)], capture_output=True, text=True, env=slurm,
                               timeout=30).stdout
        assert "AllocTRES=cpu=1,mem=100M,node=1,billing=1,gres/gpu=2,gres/gpu:t4=2" in shown, shown
        assert "TresPerNode=gres/gpu:t4:2" in shown, shown
        queue = subprocess.run(["squeue", "-h", "-o", "%i %b"], capture_output=True, text=True, env=slurm,
                               timeout=30).stdout.splitlines()
        assert queue[:3] == [f"{one} gres/gpu:1", f"{two} gres/gpu:t4:2", f"{none} N/A"], queue
        go.touch()
        melon.wait_state(waiting, {"CD"})
        melon.wait_all_done()
        acct = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,ReqTRES,AllocTRES"], capture_output=True,
                              text=True, env=slurm, timeout=30).stdout.splitlines()
        assert acct[0] == f"{one}|billing=1,cpu=1,mem=100M,node=1,gres/gpu=1,gres/gpu:t4=1|" \
                          f"billing=1,cpu=1,mem=100M,node=1,gres/gpu=1,gres/gpu:t4=1", acct
        assert acct[2].endswith("|billing=1,cpu=1,mem=100M,node=1"), acct  # no GPUs, no gres TRES
    finally:
        (melon.work / "go").touch()
        melon.cleanup()


@pytest.mark.parametrize(("args", "expect"), [
    (["--gres=gpu:3"], "Requested node configuration is not available: gpu:3 on each node, and partition p's "
                       "nodes have: c1 none; g1 gpu:a100:2,license_x:2"),
    (["--gres=gpu:h100:1"], "gpu:h100:1 on each node"),
    (["--gpus-per-task=1", "-n", "3"], "gpu:1 for each of 3 tasks"),
    (["--gres=license_y:1"], "license_y:1 on each node"),
])
def test_resources_no_node_has_are_refused_at_submission(short_tmp: Path, args: list[str], expect: str) -> None:
    melon = Melon(short_tmp / "m", inventory=INVENTORY.format(tmp=short_tmp))
    melon.start()
    try:
        r = melon.run("mbatch", *args, "--wrap", "true", check=False)
        assert r.returncode != 0 and expect in r.stderr, r.stderr
        assert melon.jobs() == []
        for good in (["--gres=gpu:2,license_x:1"], ["--gpus-per-task=1", "-n", "2"], ["-G", "a100:1"]):
            job = melon.submit(*good, "--wrap", "true")
            assert melon.wait_state(job, {"CD"})["assigned_node"] == "g1"
    finally:
        melon.cleanup()


def test_steps_bind_each_task_to_its_own_gpus_on_every_node(short_tmp: Path) -> None:
    """-N 2 --ntasks-per-node=2 --gpus-per-task=1: srun's tasks, on the batch node and through the
    other node's holder, each see one GPU of that node's, numbered as Slurm's per-task binding."""
    melon = _gpu_melon(short_tmp, ("a", "b"), cpus=4)
    try:
        script = melon.work / "steps.sh"
        show = "echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES $SLURM_STEP_GPUS $SLURM_GPUS_ON_NODE"
        script.write_text(f"#!/bin/sh\nsrun -l sh -c '{show}' | sort\n"  # the job's GPUs, a share per task
                          # two steps at once: the first holds its GPUs until the second has shown its own
                          f"srun -l --exact -N 2 -n 2 -c 1 --gpus-per-task=1 sh -c 'touch held.$SLURM_PROCID; "
                          f"while [ ! -e shown ]; do sleep 0.1; done; {show}' | sort &\n"
                          f"while [ ! -e held.0 ] || [ ! -e held.1 ]; do sleep 0.1; done\n"
                          f"srun -l --exact -N 2 -n 2 -c 1 --gpus-per-task=1 sh -c '{show}' | sort\ntouch shown\nwait\n")
        job = melon.submit("-N", "2", "--ntasks-per-node=2", "-c", "1", "--gpus-per-task=1", "--mem=100M", "-o", "steps.out",
                           str(script), env=slurm_names_env(melon))
        assert melon.wait_state(job, {"CD", "F"}, timeout=60)["state"] == "CD", (melon.work / "steps.out").read_text()
        lines = (melon.work / "steps.out").read_text().split("\n")
        # two GPUs held on each node (the lowest: 0 and 1), one per task, each numbered 0 or 1 there
        assert lines[:4] == ["0: a 0 0 2", "1: a 1 1 2", "2: b 0 0 2", "3: b 1 1 2"], lines
        # two steps at once, each one GPU of its own on each node (through the other node's holder too)
        assert sorted(lines[4:8]) == ["0: a 0 0 1", "0: a 1 1 1", "1: b 0 0 1", "1: b 1 1 1"], lines
        acct = subprocess.run(["sacct", "-j", str(job), "-X", "-n", "-P", "-o", "AllocTRES"], capture_output=True,
                              text=True, env=slurm_names_env(melon), timeout=30).stdout
        assert acct.strip().endswith("gres/gpu=4"), acct
    finally:
        melon.cleanup()


# A stand-in for NVIDIA's nvidia-smi (a mock: no GPU or driver here), answering the queries
# remote/gpus.py makes as the real one does (csv,noheader): two T4s, the first 37 % busy with
# 1234 MiB in use; the compute processes are the file `apps` beside it (the test changes them).
FAKE_SMI = """#!/bin/sh
case "$1" in
--query-gpu=index,uuid,*) printf '0, GPU-aaaa, Tesla T4, 00000000:3B:00.0\\n1, GPU-bbbb, Tesla T4, 00000000:AF:00.0\\n' ;;
--query-gpu=index,utilization.gpu,memory.used,pci.bus_id)
    printf '0, 37, 1234, 00000000:3B:00.0\\n1, 90, 8000, 00000000:AF:00.0\\n' ;;
--query-compute-apps=*) cat "$(dirname "$0")/apps" ;;
*) exit 2 ;;
esac
"""


def test_gpus_are_detected_where_the_inventory_lists_none_a_busy_one_is_not_handed_out_and_use_is_recorded(
        short_tmp: Path) -> None:
    bin_dir = short_tmp / "smi"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    (bin_dir / "apps").write_text("00000000:AF:00.0, 4242\n")  # GPU 1 runs another's process
    inventory = f"""gpu_sample_interval = 0.3
[partitions.p]
default = true
[nodes.g1]
partition = "p"
spool = "{short_tmp}/spool1"
cpus = 4
gres = [{{name = "license_x", count = 1}}]
"""
    melon = Melon(short_tmp / "m", inventory=inventory)
    melon.daemon_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}  # the local node's helper is melond's child
    melon.start()
    try:
        env = slurm_names_env(melon)
        shown = subprocess.run(["sinfo", "-N", "-h", "-o", "%N %G"], capture_output=True, text=True, env=env,
                               timeout=30).stdout
        assert shown.split() == ["g1", "license_x:1,gpu:t4:2"], shown
        assert "note: node g1's GPU 1 (pids 4242) ran processes melond did not start" in melon.run("minfo").stdout
        free = melon.submit("--gres=gpu:1", "--mem=50M", "--wrap", "echo $SLURM_JOB_GPUS; sleep 30")
        melon.wait_state(free, {"R"})
        busy = melon.submit("--gres=gpu:1", "--mem=50M", "--wrap", "true")
        wait_for(lambda: melon.job(busy)["reason"] == "Resources", what="the second GPU job to wait: GPU 1 is busy")
        assert Client(melon.endpoint).call("GET", f"/jobs/{free}")["gres_ids"] == "1"  # after license_x: GPU 0
        time.sleep(1)  # a few samples of its GPU's use
        assert melon.job(busy)["state"] == "PD"
        (bin_dir / "apps").write_text("")  # the other process is gone: the next sample frees GPU 1
        melon.wait_state(busy, {"CD"})
        melon.run("mcancel", str(free))
        melon.wait_state(free, {"CA"})
        shown = Client(melon.endpoint).call("GET", f"/jobs/{free}")
        assert (shown["gpu_util"], shown["gpu_mem_peak"]) == (37.0, 1234 << 20), shown  # GPU 0's, not GPU 1's
        assert "GPUUse: 37.0% mean, 1234M peak memory" in melon.run("mshow", str(free)).stdout
    finally:
        melon.cleanup()


def test_concurrent_steps_that_ask_for_gpus_get_different_ones(short_tmp: Path) -> None:
    """A job of three GPUs: two `srun --exact --gres=gpu:1` at once hold one each (CUDA's list as
    the job sees its GPUs, SLURM_STEP_GPUS the node's indexes), a third asking two waits for
    one of them, and a step asking none sees all three."""
    melon = _gpu_melon(short_tmp, ("g1",), cpus=8)
    try:
        blocker = melon.submit("--gres=gpu:1", "--mem=50M", "--wrap", "sleep 60")  # GPU 0 is another job's
        melon.wait_state(blocker, {"R"})
        show = "echo $CUDA_VISIBLE_DEVICES/$SLURM_STEP_GPUS"
        script = melon.work / "steps.sh"
        script.write_text(f"""#!/bin/sh
srun --exact -n 1 -c 1 --gres=gpu:1 sh -c '{show} > a.txt; sleep 3' &
srun --exact -n 1 -c 1 --gres=gpu:1 sh -c '{show} > b.txt; sleep 3' &
sleep 1
srun --exact -n 1 -c 1 --gres=gpu:2 sh -c '{show} > c.txt'
srun --exact -n 1 -c 1 sh -c 'echo $CUDA_VISIBLE_DEVICES > d.txt'
wait
""")
        job = melon.submit("--gres=gpu:3", "-c", "3", "--mem=100M", "-o", "steps.out", str(script),
                           env=slurm_names_env(melon))
        assert melon.wait_state(job, {"CD", "F"}, timeout=60)["state"] == "CD", (melon.work / "steps.out").read_text()
        got = {name: (melon.work / f"{name}.txt").read_text().strip() for name in "abcd"}
        # the job holds GPUs 1-3 (0 is the other job's), seen as 0,1,2
        assert sorted([got["a"], got["b"]]) == ["0/1", "1/2"], got
        assert got["c"] in ("0,1/1,2", "0,2/1,3", "1,2/2,3"), got  # two of the three, once a or b is done
        assert got["d"] == "0,1,2", got
        assert "Requested nodes are busy" in (melon.work / "steps.out").read_text()  # c waited, as srun says
        melon.run("mcancel", str(blocker))
    finally:
        melon.cleanup()
