"""A cgroup v2 node for real: the qemu VM of tests/cgroup-v2-vm (a Debian kernel, systemd as PID 1
in pure cgroup v2), driven over SSH by a real melond. Each limit backend a v2 node offers runs a
memory limit that OOM-kills, a CPU quota measured, a cancel that kills an escaped child, and a
timeout: as root, the systemd and cgroupfs backends; as an account, its systemd manager's
delegation (alice, lingering) and a subtree root prepared with the commands melond prints (bob,
whose manager does not linger)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from melon_cli.client import Client
from conftest import BIN, SPIN, Melon, V2Node, wait_for

pytestmark = pytest.mark.timeout(1500)  # the first test builds (once per machine) and boots the VM

@pytest.fixture(params=["systemd", "cgroup-v2"])
def on_v2(request, v2node: V2Node, short_tmp):
    """A melond whose one node is the VM, logged in as root, limiting jobs with one backend."""
    m = Melon(short_tmp, inventory=v2node.inventory(limits=f'"{request.param}"'))
    m.start()
    yield m, v2node, request.param
    m.cleanup()


def on_vm(m: Melon, *args: str, user: str | None = None) -> int:
    """Submit a job to the VM: it starts in /tmp there, its output in a file of this melond's own
    (the VM lives through several melonds, each numbering its jobs from 1)."""
    return m.submit("-D", "/tmp", "-o", f"{tag(m)}-%j.out", *args, user=user)


def tag(m: Melon) -> str:
    """A name for this melond's files on the VM, which several tests' melonds share."""
    return f"{m.root.parent.name}-{m.root.name}"


def setup_of(m: Melon) -> subprocess.CompletedProcess:
    """`melond --print-node-setup v2node` for this melond's inventory."""
    return subprocess.run([str(BIN / "melond"), "--inventory", str(m.inventory), "--state-dir", str(m.state),
                           "--print-node-setup", "v2node"], capture_output=True, text=True, timeout=120)


def subtree_block(setup: subprocess.CompletedProcess) -> str:
    """The printed setup's second way, for a node whose user managers may not linger: a subtree."""
    first, second = setup.stdout.split("\n\n")
    assert second.startswith("# Or, where user managers may not linger"), setup.stdout
    return second


def prepare_subtree_for_bob(vm: V2Node, root) -> None:
    """Run, as root on the VM, the commands melond prints for bob's subtree (once per boot)."""
    m = Melon(root, inventory=vm.inventory(user='"bob"'))
    setup = setup_of(m)
    if setup.returncode != 0:
        vm.ssh(subtree_block(setup))


def output(m: Melon, jid: int) -> str:
    return Client(m.endpoint).call("GET", f"/jobs/{jid}/output", query={"limit": "65536"})["text"]


def test_the_vm_is_pure_cgroup_v2(v2node: V2Node) -> None:
    assert v2node.ssh("stat -fc %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert {"cpu", "memory", "pids"} <= set(v2node.ssh("cat /sys/fs/cgroup/cgroup.controllers").stdout.split())


def test_each_backend_enforces_memory_cpu_cancel_and_time_on_cgroup_v2(on_v2) -> None:
    m, vm, backend = on_v2
    (node,) = json.loads(m.run("minfo", "--json").stdout)
    assert node["backend"] == backend, node
    enforces_memory_cpu_cancel_and_time(m, vm)
    # its CPUs: a cpuset (systemd's AllowedCPUs=, or the cgroup's cpuset.cpus) it cannot widen
    assert "in a cgroup cpuset" in node["pinning"], node
    widen = "os.sched_setaffinity(0, range(os.cpu_count())); print(*sorted(os.sched_getaffinity(0)))"
    jid = on_vm(m, "-c", "1", "--wrap", f"nproc; python3 -c 'import os; {widen}'")
    m.wait_state(jid, {"CD"}, timeout=120)
    pinned = m.job(jid)["cpu_ids"]
    assert output(m, jid).split("\n")[:2] == ["1", pinned], output(m, jid)


def enforces_memory_cpu_cancel_and_time(m: Melon, vm: V2Node, user: str | None = None) -> None:
    """A memory limit that OOM-kills, a 1-CPU quota measured, a cancel that kills a child in its own
    session, and a time limit, each for a job submitted by `user` (default root)."""
    oom = on_vm(m, "--mem", "64M", "--wrap",
                   "python3 -c 'import time; b = bytearray(300 * 1024 * 1024); time.sleep(3)'", user=user)
    job = m.wait_state(oom, {"OOM", "F", "CD"}, timeout=120)
    assert job["state"] == "OOM", (job, output(m, oom))

    vm.ssh(f"cat > /tmp/spin.py <<'EOF'\n{SPIN}EOF\nchmod 644 /tmp/spin.py")
    spin = on_vm(m, "-c", "1", "--wrap", "python3 /tmp/spin.py", user=user)
    job = m.wait_state(spin, {"CD", "F", "CA", "TO", "OOM"}, timeout=120)
    assert job["state"] == "CD", (job, output(m, spin))
    ratio = float(output(m, spin))
    assert ratio <= 1.15, f"3 busy processes under a 1-CPU quota used {ratio:.2f} CPUs"

    tree = on_vm(m, "--wrap", "setsid sleep 3001 & (sleep 3002 &); sleep 3003", user=user)
    m.wait_state(tree, {"R"}, timeout=60)
    wait_for(lambda: vm.ssh("pgrep -f 'sleep 300[123]'", check=False).stdout.count("\n") == 3, timeout=60,
             what="the job's three sleeps, one in its own session")
    m.run("mcancel", str(tree))
    m.wait_state(tree, {"CA"}, timeout=60)
    wait_for(lambda: vm.ssh("pgrep -f 'sleep 300[123]'", check=False).stdout == "", timeout=30,
             what="every sleep of the cancelled job gone, the escaped one too")

    late = on_vm(m, "-t", "0:05", "--wrap", "sleep 3004", user=user)
    job = m.wait_state(late, {"TO", "CD", "F"}, timeout=120)
    assert job["state"] == "TO", job
    assert vm.ssh("pgrep -f 'sleep 3004'", check=False).stdout == ""


def every_limit_holds_as(m: Melon, vm: V2Node, user: str, backend: str, cgroup: str) -> int:
    """As `user`, through `backend`: minfo and --print-node-setup say the node is ready, every
    limit holds, and a job's cgroup is its own, `job-ID` below `cgroup` (a regular expression).
    Returns that job's id."""
    (node,) = json.loads(m.run("minfo", "--json").stdout)
    assert node["backend"] == backend, node
    setup = setup_of(m)
    assert setup.returncode == 0 and "Ready" in setup.stdout, setup
    enforces_memory_cpu_cancel_and_time(m, vm, user=user)
    jid = on_vm(m, "--wrap", "cat /proc/self/cgroup", user=user)
    m.wait_state(jid, {"CD"}, timeout=60)
    assert re.fullmatch(rf"0::{cgroup}/job-{jid}\n", output(m, jid)), output(m, jid)
    return jid


def test_an_unprivileged_account_gets_limits_through_its_systemd_manager(v2node: V2Node, short_tmp) -> None:
    """melond logs in as alice: without lingering minfo says what is missing and how to fix it;
    with it, alice's systemd manager delegates a scope and every limit holds."""
    vm = v2node
    vm.ssh("loginctl disable-linger alice; rm -rf /home/alice/.local/state/melon")
    m = Melon(short_tmp / "a", inventory=vm.inventory(user='"alice"'))
    m.start()
    try:
        (node,) = json.loads(m.run("minfo", "--json").stdout)
        assert node["backend"] == "none" and "loginctl enable-linger alice" in node["backend_reason"], node
        setup = setup_of(m)
        assert setup.returncode == 1 and setup.stdout.split("\n\n")[0].splitlines()[-1] == "loginctl enable-linger alice", setup
    finally:
        m.cleanup()
    vm.ssh("loginctl enable-linger alice && for i in $(seq 1 100); do systemctl is-active -q user@2001.service "
           "&& exit 0; sleep 0.2; done; exit 1")
    m = Melon(short_tmp / "b", inventory=vm.inventory(user='"alice"'))
    m.start()
    try:
        every_limit_holds_as(m, vm, "alice", "systemd-user",
                             r"/user\.slice/user-2001\.slice/user@2001\.service/melon\.slice/melon-\w+-\d+\.scope")
    finally:
        m.cleanup()


def test_an_account_whose_manager_does_not_linger_gets_limits_in_a_subtree_root_prepared(v2node: V2Node,
                                                                                           short_tmp) -> None:
    """melond logs in as bob, whose systemd manager does not linger: minfo names both fixes, and
    --print-node-setup prints them; run as root, its second way (a subtree and the login hook
    that starts bob's logins inside it) gives the next connection every limit."""
    vm = v2node
    vm.ssh("rm -rf /home/bob/.local/state/melon")
    m = Melon(short_tmp / "a", inventory=vm.inventory(user='"bob"'))
    m.start()
    try:
        (node,) = json.loads(m.run("minfo", "--json").stdout)
        assert node["backend"] == "none", node
        assert "loginctl enable-linger bob" in node["backend_reason"], node
        assert "no cgroup subtree is prepared for bob" in node["backend_reason"], node
        setup = setup_of(m)
        assert setup.returncode == 1, setup
        vm.ssh(subtree_block(setup))
        # The connection melond holds began before the hook: its helper stays outside the subtree.
        assert setup_of(m).returncode == 0
        (node,) = json.loads(m.run("minfo", "--json").stdout)
        assert node["backend"] == "none", node
    finally:
        m.cleanup()
    m = Melon(short_tmp / "b", inventory=vm.inventory(user='"bob"'))
    m.start()
    try:
        jid = every_limit_holds_as(m, vm, "bob", "cgroup-v2-user", r"/melon/user-bob/\w+")
        assert vm.ssh(f"ls -d /sys/fs/cgroup/melon/user-bob/*/job-{jid}", check=False).stdout == ""
    finally:
        m.cleanup()


@pytest.mark.parametrize("account", ["alice", "bob"])
def test_an_unprivileged_nodes_jobs_keep_their_deadlines_through_melond_and_supervisor_deaths(v2node: V2Node,
                                                                                             short_tmp, account) -> None:
    """As on a root node, for either way an account gets limits (alice: her systemd manager; bob:
    a subtree root prepared): an extension reaches the node, the node alone ends the job at its
    new deadline while melond is down (kill -9), the next melond records it; and a job whose
    supervisor is killed is fenced, escaped child and all, its delegated cgroup removed."""
    vm = v2node
    if account == "alice":
        vm.ssh("loginctl enable-linger alice && for i in $(seq 1 100); do systemctl is-active -q user@2001.service "
               "&& exit 0; sleep 0.2; done; exit 1")
        cgroups = "/sys/fs/cgroup/user.slice/user-2001.slice/user@2001.service/melon.slice/*"
    else:
        prepare_subtree_for_bob(vm, short_tmp / "setup")
        cgroups = "/sys/fs/cgroup/melon/user-bob/*"
    m = Melon(short_tmp, inventory=vm.inventory(user=f'"{account}"'))
    m.start()
    try:
        (node,) = json.loads(m.run("minfo", "--json").stdout)
        assert node["backend"] == {"alice": "systemd-user", "bob": "cgroup-v2-user"}[account], node
        jid = on_vm(m, "-t", "0:08", "--wrap", "sleep 3011", user=account)
        m.wait_state(jid, {"R"}, timeout=60)
        m.run("mextend", "-j", str(jid), "-t", "+0:12", user=account)  # a 20 s limit now
        started = m.job(jid)["start_time"]
        m.stop(signal.SIGKILL)
        wait_for(lambda: time.time() > started + 12, timeout=30, what="the first deadline to pass")
        assert vm.ssh("pgrep -f 'sleep 3011'", check=False).stdout, "the job ended at its old deadline"
        wait_for(lambda: vm.ssh("pgrep -f 'sleep 3011'", check=False).stdout == "", timeout=40,
                 what="the node to end the job at its new deadline, alone")
        assert time.time() >= started + 19
        m.start()
        assert m.wait_state(jid, {"TO", "CD", "F"}, timeout=60)["state"] == "TO"

        fenced = on_vm(m, "-t", "5:00", "--wrap", f"setsid sleep 3012 & echo $$ > /tmp/{tag(m)}-leader; sleep 3013",
                       user=account)
        m.wait_state(fenced, {"R"}, timeout=60)
        wait_for(lambda: vm.ssh("pgrep -f 'sleep 301[23]'", check=False).stdout.count("\n") == 2, timeout=60,
                 what="the job's two sleeps")
        leader = vm.ssh(f"cat /tmp/{tag(m)}-leader").stdout.strip()
        supervisor = vm.ssh(f"ps -o ppid= -p {leader}").stdout.strip()  # the job's leader is its child
        vm.ssh(f"kill -9 {supervisor}")
        job = m.wait_state(fenced, {"NF"}, timeout=60)
        assert "supervisor died" in job["detail"], job["detail"]
        wait_for(lambda: vm.ssh("pgrep -f 'sleep 301[23]'", check=False).stdout == "", timeout=30,
                 what="the fenced job's processes, the escaped one too, to be killed")
        left = vm.ssh(f"ls -d {cgroups}/job-{fenced}", check=False).stdout
        assert left == "", f"the fenced job's cgroup is still there: {left}"
    finally:
        m.cleanup()


@pytest.mark.parametrize("backend", ["systemd", "cgroup-v2"])
def test_gpu_devices_on_cgroup_v2(v2node: V2Node, short_tmp, backend: str) -> None:
    """Four device files of the NVIDIA driver's major, no driver behind them. Through systemd
    (DevicePolicy=closed and DeviceAllow=, its BPF program) a job's own device opens to ENXIO and
    every other one is EPERM, a job without GPUs opens none, and CUDA_VISIBLE_DEVICES counts from
    0. Without systemd (no BPF program of Melon's) minfo says jobs are not isolated, and the
    variables name the node's indexes, as Slurm's do without ConstrainDevices."""
    v2node.ssh("for i in 0 1 2 3; do [ -e /dev/nvidia$i ] || mknod -m 666 /dev/nvidia$i c 195 $i; done")
    gres = '[{name = "gpu", files = "/dev/nvidia[0-3]"}]'
    m = Melon(short_tmp, inventory=v2node.inventory(limits=f'"{backend}"', gres=gres))
    m.start()
    try:
        v2node.ssh("cat > /tmp/gpu-probe.py <<'EOF'\nimport errno, os\nfor i in range(4):\n    try:\n"
                   "        os.close(os.open('/dev/nvidia%d' % i, os.O_RDWR)); print(i, 'opened')\n"
                   "    except OSError as e:\n        print(i, errno.errorcode[e.errno])\n"
                   "print('CVD', os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\nEOF")
        (node,) = json.loads(m.run("minfo", "--json").stdout)
        first = on_vm(m, "--gres=gpu:1", "--mem=50M", "--wrap", "sleep 60")  # holds the first GPU
        m.wait_state(first, {"R"}, timeout=120)
        mine = on_vm(m, "--gres=gpu:1", "--mem=50M", "--wrap", "python3 /tmp/gpu-probe.py")
        none = on_vm(m, "--mem=50M", "--wrap", "python3 /tmp/gpu-probe.py")
        for jid in (mine, none):
            m.wait_state(jid, {"CD"}, timeout=120)
        got = {jid: dict(line.split(" ", 1) for line in output(m, jid).splitlines()) for jid in (mine, none)}
        if backend == "systemd":
            assert "systemd DevicePolicy=closed" in node["device_isolation"], node
            assert [got[mine][str(i)] for i in range(4)] == ["EPERM", "ENXIO", "EPERM", "EPERM"], got[mine]
            assert [got[none][str(i)] for i in range(4)] == ["EPERM"] * 4, got[none]
            assert got[mine]["CVD"] == "0"
        else:
            assert node["device_isolation"].startswith("NOT isolated"), node
            assert "devices are not isolated" in m.run("minfo").stdout
            assert got[mine]["CVD"] == "1"  # the node's index: the job sees every device
        assert got[none]["CVD"] == "unset"
        m.run("mcancel", str(first))
    finally:
        m.cleanup()
