"""Fixtures that run the real melond and the real CLIs as processes.

Every daemon a test starts is stopped at the end; jobs it left running are
cancelled first, and a test fails if any of its job processes outlive it.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SRC = BIN.parent / "melon-src"  # melond, melon_cli and melon_remote by their installed names (scripts/setup.sh)
TIERS = ("unit", "node", "e2e", "cluster", "ui")  # folders under tests/, each also a marker: `pytest -m unit`
LEAK_GRACE = 3.0  # seconds a test's threads, descriptors and children get to go after its teardown


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker, from the folder it lives in."""
    for item in items:
        tier = Path(item.path).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def _descriptors() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return out


def _children() -> dict[int, str]:
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == os.getpid():  # ppid
            out[int(pid)] = stat.partition(" ")[2].rpartition(")")[0] + ")" + (" zombie" if fields[0] == "Z" else "")
    return out


def _leaks(before: tuple) -> list[str]:
    threads, fds, children = before
    found = [f"thread {t.name}" for t in threading.enumerate() if t.ident not in threads]
    found += [f"file descriptor {fd} -> {target}" for fd, target in _descriptors().items()
              if fds.get(fd) != target]
    found += [f"child process {pid} {name}" for pid, name in _children().items() if pid not in children]
    return found


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads, file descriptors or child processes behind (Mitogen's
    testlib does the same): a leak in a test is most often a leak in the code it drives."""
    before = ({t.ident for t in threading.enumerate()}, _descriptors(), _children())
    yield
    deadline = time.monotonic() + LEAK_GRACE
    while (found := _leaks(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not found, "the test left behind: " + "; ".join(found)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port nobody listens on right now (for melond --port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(name: str):
    """A preexec function that drops a child to `name` (uid, gid, no supplementary groups)."""
    pw = pwd.getpwnam(name)

    def drop() -> None:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


def refusing_melond(*args: str, user: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """A melond expected to refuse to start: it must exit on its own within `timeout` seconds."""
    try:
        return subprocess.run([str(BIN / "melond"), *args], capture_output=True, text=True, timeout=timeout,
                              preexec_fn=as_user(user) if user else None)
    except subprocess.TimeoutExpired:
        pytest.fail("melond started instead of refusing")


def refused_in_one_line(r: subprocess.CompletedProcess, *expect: str) -> None:
    """melond refused as operators should read it: exit 1, one line naming the problem, no traceback."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("melond: ") and r.stderr.count("\n") == 1, r.stderr
    for text in expect:
        assert text in r.stderr, (text, r.stderr)


class UnixHTTP(http.client.HTTPConnection):
    """Raw HTTP on melond's Unix socket, to see status codes and headers the CLIs hide."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Melon:
    """A running melond in its own state dir, and helpers to drive its CLIs."""

    def __init__(self, root: Path, kill_wait: float = 1.0, inventory: str | None = None,
                 work: Path | None = None) -> None:
        self.root = root
        self.state = root / "state"
        self.work = work or root / "work"
        self.work.mkdir(mode=0o777, parents=True, exist_ok=True)
        os.chmod(self.work, 0o1777)  # other test users write their output here too
        self.kill_wait = kill_wait
        self.inventory = None
        if inventory is not None:
            self.inventory = root / "inventory.toml"
            self.inventory.write_text(inventory)
        self.proc: subprocess.Popen | None = None
        self.start_args: list[str] = []
        self.daemon_env: dict[str, str] = {}  # melond's environment, on top of this process's
        self.log = root / "melond.log"
        self.endpoint = f"unix:{self.state}/melond.sock"
        self.url: str | None = None  # http(s)://127.0.0.1:PORT when it serves TCP

    def start(self, wait_all_up: bool = True, ready=None) -> None:
        """Start melond; wait until its nodes are up (or until `ready()`, where given)."""
        args = [str(BIN / "melond"), "--state-dir", str(self.state), "--kill-wait", str(self.kill_wait)]
        if self.inventory:
            args += ["--inventory", str(self.inventory)]
        args += self.start_args
        env = dict(os.environ)
        if not self.inventory:  # the embedded default, never this machine's /etc/melon/melon.toml
            empty = self.root / "no-inventory.toml"
            empty.touch()
            env["MELON_CONFIG"] = str(empty)
        env.update(self.daemon_env)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=env)
        try:
            wait_for(ready or (lambda: self._node_up(wait_all_up)), timeout=20, what="melond to start")
        except pytest.fail.Exception:
            pytest.fail(f"melond did not start within 20 s; its log: {self.log.read_text()[-3000:]}")

    def _node_up(self, all_up: bool = True) -> bool:
        if self.proc and self.proc.poll() is not None:
            pytest.fail(f"melond exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        if not (self.state / "melond.sock").exists():
            return False
        r = self.run("minfo", "--json", check=False)
        states = [n["state"] != "down" for n in json.loads(r.stdout)] if r.returncode == 0 else []
        return bool(states) and (all(states) if all_up else any(states))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "MBATCH_", "SLURM_", "MELON_"))}
        env["MELON_API"] = self.endpoint
        env.update(extra)
        return env

    def run(self, tool: str, *args: str, check: bool = True, user: str | None = None, cwd: Path | None = None,
            env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run one CLI as a process (optionally as another user), like a person at a shell."""
        r = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, cwd=cwd or self.work,
                           env=env or self.env(), preexec_fn=as_user(user) if user else None, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def token(self, *args: str, user: str | None = None) -> str:
        """A new token from `mtoken create` over the Unix socket, for `user` (default: root)."""
        return self.run("mtoken", "create", *args, user=user).stdout.strip()

    def submit(self, *args: str, **kw) -> int:
        return int(self.run("mbatch", "--parsable", *args, **kw).stdout.strip())

    def job(self, job_id: int) -> dict:
        return json.loads(self.run("mshow", "-p", str(job_id)).stdout)

    def jobs(self, *args: str) -> list[dict]:
        return json.loads(self.run("mqueue", "--json", *args).stdout)

    def wait_state(self, job_id: int, states: set[str], timeout: float = 30) -> dict:
        def reached() -> dict | None:
            job = self.job(job_id)
            return job if job["state"] in states else None
        return wait_for(reached, timeout, what=f"job {job_id} to reach {states}")

    def wait_all_done(self, timeout: float = 60) -> None:
        wait_for(lambda: not self.jobs(), timeout, what="every job to finish")

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            active = self.jobs()
            if active:  # one process for all of them
                self.run("mcancel", *(str(j["id"]) for j in active), check=False)
                self.wait_all_done(timeout=30 + self.kill_wait)
        self.stop()


def slurm_names_env(melon: Melon, **extra: str) -> dict:
    """melon's environment with what `eval "$(melon-slurm env)"` puts on PATH, and the venv's own
    bin after it, as for a user whose venv is active (the tools' helper scripts live there)."""
    out = subprocess.run([str(BIN / "melon-slurm"), "env"], capture_output=True, text=True, check=True).stdout
    line = out.splitlines()[0]  # then MANPATH's (tests/unit/test_slurm_env.py)
    assert line.startswith('export PATH="') and line.endswith(':$PATH"')
    directory = line[len('export PATH="'):-len(':$PATH"')]
    return melon.env(PATH=f"{directory}:{BIN}:{melon.env()['PATH']}", **extra)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths are limited to 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="mt-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def melon(short_tmp: Path) -> Iterator[Melon]:
    m = Melon(short_tmp)
    m.start()
    yield m
    m.cleanup()


@pytest.fixture
def tcp_melon(short_tmp: Path) -> Iterator[Melon]:
    """A melond that also serves TCP; `melon.url` is its http:// endpoint."""
    m = Melon(short_tmp)
    port = free_port()
    m.start_args = ["--port", str(port)]
    m.url = f"http://127.0.0.1:{port}"
    m.start()
    yield m
    m.cleanup()


@pytest.fixture
def melon_factory(short_tmp: Path) -> Iterator:
    """For tests that need an inventory or their own kill-wait."""
    made: list[Melon] = []

    def make(tcp: bool = False, **kw) -> Melon:
        m = Melon(short_tmp / f"m{len(made)}", **kw)
        if tcp:  # also on TCP, at `m.url`, as tcp_melon
            port = free_port()
            m.start_args = ["--port", str(port)]
            m.url = f"http://127.0.0.1:{port}"
        made.append(m)
        m.start()
        return m

    yield make
    for m in made:
        m.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator:
    """A private PostgreSQL server (tests/pgserver.py) for the whole run."""
    from tests.pgserver import PgServer, binaries
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql-15; `make test` does it "
                    "as root)")
    if not is_root():
        pytest.skip("the test PostgreSQL server runs as user nobody, which takes root to arrange")
    server = PgServer()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_path(request, tmp_path) -> Iterator:
    """Where a store test's database is: an SQLite file, then a fresh PostgreSQL database (its
    URL), so that each store test runs against both."""
    if request.param == "sqlite":
        yield tmp_path / "melon.db"
        return
    server = request.getfixturevalue("pg_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


DOCKER_SSHD = REPO / "tests" / "docker-sshd"


def docker_missing() -> str | None:
    """Why the Docker cluster tests cannot run here, or None if they can."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"no Docker engine answers here ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'docker info failed'})"
    if not is_root():
        return "the cluster needs root (it creates the test users alice and bob here too)"
    return None


class Cluster:
    """N sshd nodes in Docker (tests/docker-sshd/cluster) and the inventory that lists them."""

    def __init__(self, size: int) -> None:
        self.dir = Path(f"/tmp/mc{os.getpid()}")
        self.inventory = self.dir.parent / f"mc{os.getpid()}.toml"
        self.size = size

    def up(self) -> None:
        r = subprocess.run([str(DOCKER_SSHD / "cluster"), "up", str(self.size), "--inventory", str(self.inventory),
                            "--dir", str(self.dir)], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            self.down()
            pytest.fail(f"cluster up failed:\n{r.stdout}\n{r.stderr}")

    def down(self) -> None:
        subprocess.run([str(DOCKER_SSHD / "cluster"), "down", "--dir", str(self.dir)], capture_output=True, timeout=300)
        self.inventory.unlink(missing_ok=True)

    @property
    def shared(self) -> Path:
        return self.dir / "shared"

    def docker(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, input=input)

    def node_exec(self, node: str, *cmd: str) -> subprocess.CompletedProcess:
        return self.docker("exec", f"melon-{node}", *cmd)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Three sshd nodes for the whole session, always torn down."""
    why = docker_missing()
    if why:
        pytest.skip(f"Docker cluster tests skipped: {why}")
    c = Cluster(3)
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def melon_on_cluster(cluster: Cluster, short_tmp: Path) -> Iterator[Melon]:
    """A melond driving the cluster, its users' work folder on the shared volume."""
    work = cluster.shared / short_tmp.name
    m = Melon(short_tmp, inventory=cluster.inventory.read_text(), work=work)
    m.start()
    yield m
    m.cleanup()
    shutil.rmtree(work, ignore_errors=True)


# Three busy processes for 3 s; prints the CPUs they used on average (a 1-CPU limit holds them near 1).
# The clock starts before the first fork: the parent shares the quota with its busy children, so
# starting it after the forks missed the CPU they used while the throttled parent waited to fork.
SPIN = ("import os, time\n"
        "start = time.time()\n"
        "end = start + 3\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        while time.time() < end: pass\n"
        "        os._exit(0)\n"
        "for _ in range(3): os.wait()\n"
        "t = os.times()\n"
        "print((t.children_user + t.children_system) / (time.time() - start))\n")

# A job that tries to open four GPU device files ($2/nvidia0-3) and says how each open ended
# (ENXIO: its cgroup let it through to a device no driver answers; EPERM: refused), then its GPU
# variables, and waits for the file $1 before it ends.
GPU_PROBE = """#!/bin/sh
python3 - "$2" <<'PY'
import errno, os, sys
for i in range(4):
    try:
        os.close(os.open(f"{sys.argv[1]}/nvidia{i}", os.O_RDWR))
        print(i, "opened")
    except OSError as exc:
        print(i, errno.errorcode[exc.errno])
for name in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "CUDA_DEVICE_ORDER",
             "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE"):
    print(name, os.environ.get(name, "unset"))
PY
while [ ! -e "$1" ]; do sleep 0.1; done
"""

CGROUP_V2_VM = REPO / "tests" / "cgroup-v2-vm"


def vm_missing() -> str | None:
    """Why the cgroup v2 VM cannot run here, or None if it can (qemu's software emulation needs
    no KVM, only root to fetch qemu and debootstrap a Debian root)."""
    if not is_root():
        return "building the cgroup v2 VM needs root (apt, debootstrap, mkfs)"
    if shutil.which("apt-get") is None or shutil.which("ssh") is None:
        return "no apt-get (for qemu and a Debian root) or no ssh client on this machine"
    return None


class V2Node:
    """The cgroup v2 VM (tests/cgroup-v2-vm): built once and cached, booted for the session from
    the pristine image, reached by SSH on a loopback port."""

    def __init__(self, image: Path, port: int, run: Path) -> None:
        self.image, self.port, self.run = image, port, run
        self.key = image / "id_vm"
        self.known_hosts = run / "known_hosts"

    def ssh(self, command: str, user: str = "root", check: bool = True, timeout: float = 120,
            known: bool = True) -> subprocess.CompletedProcess:
        hosts = ["-o", f"UserKnownHostsFile={self.known_hosts}"] if known else \
            ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        r = subprocess.run(["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
                            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", *hosts, f"{user}@127.0.0.1", command],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"ssh {user}@v2node {command!r} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def inventory(self, name: str = "v2node", **fields: str) -> str:
        """An inventory with this VM as its one node; `fields` are TOML values (already quoted)."""
        lines = [f"[nodes.{name}]", 'host = "127.0.0.1"', f"port = {self.port}",
                 f'identity_file = "{self.key}"', f'known_hosts = "{self.known_hosts}"']
        lines += [f"{k} = {v}" for k, v in fields.items()]
        return "\n".join(lines) + "\n"

    def boot(self) -> None:
        subprocess.run(["bash", str(CGROUP_V2_VM / "boot.sh"), str(self.image), str(self.port), str(self.run)],
                       check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 300  # ~40 s on an idle 2-core machine, under software emulation
        while self.ssh("true", check=False, timeout=15, known=False).returncode != 0:
            if time.monotonic() > deadline:
                console = (self.run / "console.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the cgroup v2 VM did not answer SSH within 300 s; its console:\n{console}")
            time.sleep(2)
        scan = subprocess.run(["ssh-keyscan", "-p", str(self.port), "-t", "ed25519", "127.0.0.1"],
                              capture_output=True, text=True, timeout=30)
        self.known_hosts.write_text(scan.stdout)
        # sshd answers before the boot is over; under emulation systemd can then be too busy to answer
        # its bus in time, and a job's scope would be made the slower way (systemd-run).
        self.ssh("systemctl is-system-running --wait || true", timeout=300)

    def shut_down(self) -> None:
        pid_file = self.run / "qemu.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        self.ssh("systemctl poweroff", check=False, timeout=15)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def v2node() -> Iterator[V2Node]:
    """The cgroup v2 node for one test module (tests/cluster/test_cgroup_v2_node.py), always shut
    down after it: an idle emulated machine still costs the others CPU."""
    why = vm_missing()
    if why:
        pytest.skip(f"cgroup v2 VM tests skipped: {why}")
    built = subprocess.run(["bash", str(CGROUP_V2_VM / "build.sh")], capture_output=True, text=True, timeout=1200)
    if built.returncode != 0:
        pytest.fail(f"building the cgroup v2 VM failed:\n{built.stdout[-2000:]}\n{built.stderr[-3000:]}")
    for name, uid in (("alice", 2001), ("bob", 2002)):  # jobs run as their submitter there: the same users here
        if subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0:
            subprocess.run(["groupadd", "-f", "-g", str(uid), name], check=True)
            subprocess.run(["useradd", "-m", "-u", str(uid), "-g", name, "-s", "/bin/bash", name], check=True)
    run = Path(tempfile.mkdtemp(prefix="mv-", dir="/tmp"))
    node = V2Node(Path(built.stdout.strip().splitlines()[-1]), free_port(), run)
    try:
        node.boot()
        yield node
    finally:
        node.shut_down()
        shutil.rmtree(run, ignore_errors=True)


def is_root() -> bool:
    return os.geteuid() == 0


def _others_can_run_tools() -> bool:
    """Tests that act as another user need the venv's interpreter to be reachable by that user."""
    if not is_root():
        return False
    r = subprocess.run([str(BIN / "python"), "-c", "pass"], preexec_fn=lambda: os.setuid(65534), capture_output=True)
    return r.returncode == 0


needs_root = pytest.mark.skipif(
    not _others_can_run_tools(),
    reason="needs root and a venv other users can execute (make setup uses /usr/bin/python3 for that)")


# ---------------------------------------------------------------- the UI tests' browser

SHOTS = Path(__file__).resolve().parents[1] / "test-results" / "ui"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def page(request) -> Iterator:
    """A fresh page; its screenshot is saved as test-results/ui/<test>.png whatever the outcome."""
    path = chromium_path()
    if path is None:
        pytest.skip("UI tests skipped: no chromium on this machine (make test installs Debian's where it can)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 700})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
            context.close()
        finally:
            browser.close()


def sign_in(page, melon: Melon, token: str) -> None:
    """Sign the page in to melon's UI with a token, as a user pastes it."""
    from playwright.sync_api import expect
    page.goto(melon.url + "/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#jobs")).to_be_visible()
