"""The node helper's request/reply/event protocol, driven over its real pipes with real jobs."""

import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from melon_remote import cgroup, limits, service
from melon_remote.bootstrap import FIRST_STAGE, READY, payload
from melon_remote.job import quietly
from melon_remote.service import spool_scope
from melon_remote.wire import Decoder, encode

from conftest import as_user
from pipe_reading import read_exact, read_some

USER = pwd.getpwuid(os.geteuid()).pw_name
MiB = 1024 * 1024
TIMEOUT = 10.0


class HelperProc:
    """One bootstrapped helper: requests in, replies and `exited` events out."""

    def __init__(self, spool: str, stderr_path: pathlib.Path, limits_wanted: str = "auto") -> None:
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", FIRST_STAGE, spool, limits_wanted],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
                                         start_new_session=True)
        self.decoder = Decoder()
        self.inbox: list[dict] = []
        self.ids = iter(range(1, 1 << 30))
        self.job_pids: set[int] = set()
        marker = self._read_exact(len(READY))
        assert marker == READY, f"got {marker!r} instead of the ready marker; {self.stderr()}"
        self.proc.stdin.write(payload())
        hello = self._take(lambda m: m.get("event") == "hello", "hello")
        self.info = hello["info"]

    def stderr(self) -> str:
        return "helper stderr: " + self.stderr_path.read_text(errors="replace")[-2000:]

    def _read_exact(self, n: int) -> bytes:
        return read_exact(self.proc.stdout.fileno(), n, TIMEOUT)

    def _read(self, deadline: float) -> bytes:
        chunk = read_some(self.proc.stdout.fileno(), deadline)
        if chunk is None:
            raise TimeoutError
        return chunk

    def _take(self, match, what: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if match(m):
                    return self.inbox.pop(i)
            try:
                chunk = self._read(deadline)
            except TimeoutError:
                pytest.fail(f"no {what} within {timeout}s; {self.stderr()}")
            if not chunk:
                pytest.fail(f"the helper closed stdout while waiting for {what}; {self.stderr()}")
            self.inbox += self.decoder.feed(chunk)

    def request(self, op: str, *, wait: float = TIMEOUT, **fields) -> dict:
        """Send one request; return its whole reply (events that arrive meanwhile are kept)."""
        rid = next(self.ids)
        self.proc.stdin.write(encode({"id": rid, "op": op, **fields}))
        reply = self._take(lambda m: "event" not in m and m.get("id") == rid, f"reply to {op} #{rid}", wait)
        result = reply.get("result") or {}
        for item in [result, result.get("started") or {}, *(j.get("started") or {} for j in result.get("jobs", []))]:
            if isinstance(item, dict) and item.get("pid"):
                self.job_pids.add(item["pid"])
        return reply

    def ok(self, op: str, *, wait: float = TIMEOUT, **fields) -> dict:
        reply = self.request(op, wait=wait, **fields)
        assert reply["ok"] is True, f"{op} failed: {reply}"
        return reply["result"]

    def exited(self, job_id: int, timeout: float = TIMEOUT) -> dict:
        return self.exit_event(job_id, timeout)["result"]

    def exit_event(self, job_id: int, timeout: float = TIMEOUT) -> dict:
        return self._take(lambda m: m.get("event") == "exited" and m.get("job_id") == job_id,
                          f"exited event of job {job_id}", timeout)

    def exited_events(self) -> list[dict]:
        return [m for m in self.inbox if m.get("event") == "exited"]

    def close(self) -> int:
        """Close the channel as melond would; the helper must leave on its own."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"the helper did not exit when its stdin closed; {self.stderr()}")
        finally:
            self.proc.stdout.close()


def _started_pids(spool: str) -> tuple[set[int], set[int]]:
    """Job leaders and their supervisors the spool says are running."""
    jobs, supervisors = set(), set()
    root = pathlib.Path(spool, "jobs")
    for d in root.iterdir() if root.exists() else ():
        started = d / "started.json"
        if started.exists() and not (d / "result.json").exists():
            info = json.loads(started.read_text())
            jobs.add(info["pid"])
            supervisors.add(info["monitor"])
    return jobs, supervisors


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def spool():
    """A spool under /tmp (short path); jobs left running are killed and their cgroups removed."""
    path = tempfile.mkdtemp(prefix="mh-", dir="/tmp")
    yield path
    job_pids, supervisors = _started_pids(path)
    for pid in job_pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + TIMEOUT
    while not all(_gone(p) for p in job_pids | supervisors) and time.monotonic() < deadline:
        time.sleep(0.05)
    scope = spool_scope(path)
    for base in [cgroup.CGROUP_ROOT, *(os.path.join(cgroup.CGROUP_ROOT, c) for c in cgroup.V1_CONTROLLERS)]:
        group = pathlib.Path(base, "melon", scope)
        for leftover in [*group.glob("job-*"), *group.glob("slot-*"), group]:  # a dead supervisor's stay
            try:
                leftover.rmdir()
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
    assert all(_gone(s) for s in supervisors), "a job supervisor outlived its jobs"


@pytest.fixture
def boot(spool, tmp_path):
    """Bootstrap helpers on the test's spool; each is closed (and must exit cleanly) at the end."""
    made: list[HelperProc] = []

    def make(limits_wanted: str = "auto") -> HelperProc:
        h = HelperProc(spool, tmp_path / f"helper-{len(made)}.err", limits_wanted)
        made.append(h)
        return h

    yield make
    for h in made:
        for pid in h.job_pids:
            try:
                if os.getpgid(pid) == pid:  # still a job's session, not a reused pid
                    os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if h.proc.returncode is None:
            assert h.close() == 0, h.stderr()
        else:  # it left on its own: its pipes are still ours to close
            h.proc.stdin.close()
            h.proc.stdout.close()


@pytest.fixture
def helper(boot):
    return boot()


def supervisor_listening(helper: HelperProc, job_id: int) -> int:
    """Wait until the job's supervisor catches SIGUSR1 (a later helper's wake-up); return its pid.

    The tests of set_limit and kill wait for this so that they test the request, not the race in
    test_a_prompt_kill_never_kills_the_supervisor.
    """
    started = next(j for j in helper.ok("list")["jobs"] if j["id"] == job_id)["started"]
    supervisor, bit = started["monitor"], 1 << (signal.SIGUSR1 - 1)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status = pathlib.Path(f"/proc/{supervisor}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & bit:
            return supervisor
        time.sleep(0.005)
    pytest.fail(f"the supervisor of job {job_id} never installed its SIGUSR1 handler")


def job(job_id: int, workdir: pathlib.Path, script: str, **overrides) -> dict:
    """A start request's job, shaped as melond/launch.py:start_request builds it."""
    spec = {
        "id": job_id, "user": USER, "script": script, "args": [], "env": {"PATH": "/usr/bin:/bin"},
        "cwd": str(workdir), "output": str(workdir / f"job-{job_id}.out"), "error": None,
        "cpus": 1, "memory": 256 * MiB, "limit": 0, "kill_wait": 0.5, "tasks_max": 64, "signal": None,
    }
    spec.update(overrides)
    return spec


def test_hello_describes_the_node(helper, spool):
    info = helper.info
    assert info["spool"] == spool
    assert info["user"] == USER
    assert info["backend"] in limits.BACKENDS
    assert os.stat(os.path.join(spool, "jobs")).st_mode & 0o004 == 0  # users cannot list the jobs


def test_job_runs_and_reports_its_exit(helper, tmp_path):
    started = helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\necho hi\n"))
    assert started["already"] is False
    assert started["pid"] > 0 and started["start"] <= time.time()
    result = helper.exited(1)
    assert result["exit_code"] == 0 and result["signal"] is None
    assert result["reason"] == "exited"
    assert result["backend"] == helper.info["backend"]
    assert (tmp_path / "job-1.out").read_text() == "hi\n"


@pytest.mark.parametrize("padding", [0, 200_000], ids=["spec in the request", "spec in spec.json"])
def test_script_reaches_the_job_whole_whatever_its_size(helper, tmp_path, spool, padding):
    """Small specs ride in the supervisor's request datagram; one too large for it goes through
    the run's spec.json. Either way the job runs exactly the script sent."""
    script = "#!/bin/sh\n" + ("#" * padding + "\n" if padding else "") + 'wc -c < "$0"\n'
    helper.ok("start", job=job(1, tmp_path, script))
    assert helper.exited(1)["exit_code"] == 0
    assert int((tmp_path / "job-1.out").read_text()) == len(script)
    assert os.path.exists(os.path.join(spool, "jobs", "1", "spec.json")) == bool(padding)


def _cgroups(listing: pathlib.Path) -> dict[str, str]:
    """controller -> cgroup path, from a copy of /proc/self/cgroup."""
    out = {}
    for line in listing.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            out[name] = path
    return out


@pytest.mark.skipif(limits.detect()[0] != "cgroup-v1", reason="this machine's job backend is not cgroup-v1")
def test_cgroup_v1_slots_are_reused_with_each_jobs_own_limits(helper, tmp_path, spool):
    """A job's cpu, pids and freezer cgroups are reused by the next job: each must still get its
    own limits there ("none" included) and a memory cgroup of its own; the slots go with the
    supervisor."""
    script = "#!/bin/sh\ncat /proc/self/cgroup\n"
    v1 = pathlib.Path(cgroup.CGROUP_ROOT)
    seen = []
    for jid, cpus, tasks in ((1, 1, 64), (2, 0, 0)):
        helper.ok("start", job=job(jid, tmp_path, script, cpus=cpus, tasks_max=tasks))
        assert helper.exited(jid)["exit_code"] == 0
        groups = _cgroups(tmp_path / f"job-{jid}.out")
        slot = groups["pids"].lstrip("/")
        assert (v1 / "pids" / slot / "pids.max").read_text().strip() == (str(tasks) if tasks else "max")
        quota = int((v1 / "cpu" / slot / "cpu.cfs_quota_us").read_text())
        assert quota == (cpus * cgroup.CPU_PERIOD_US if cpus else -1)
        assert groups["memory"].endswith(f"/job-{jid}")
        seen.append(groups)
    assert seen[0]["pids"] == seen[1]["pids"] == seen[0]["cpu"] == seen[1]["freezer"]
    assert "/slot-" in seen[0]["pids"]
    assert helper.close() == 0
    slot_dir = v1 / "pids" / seen[0]["pids"].lstrip("/")
    deadline = time.monotonic() + TIMEOUT
    while slot_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not slot_dir.exists(), "the supervisor left its cgroup slot behind"


@pytest.mark.skipif(limits.detect()[0] != "cgroup-v1", reason="this machine's job backend is not cgroup-v1")
def test_a_supervisor_sweeps_only_dead_slots_of_its_own_pid_namespace(helper, tmp_path, spool):
    """Nodes in containers share the host's cgroup tree but not its pids: a slot named for
    another pid namespace may belong to a live supervisor there and must stay."""
    ns = os.stat("/proc/self/ns/pid").st_ino
    dead = next(p for p in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{p}"))
    ours, theirs = f"slot-{ns}-{dead}-1", f"slot-{ns + 1}-{dead}-1"
    groups = [pathlib.Path(cgroup.CGROUP_ROOT, c, "melon", spool_scope(spool)) for c in cgroup.POOLED_V1]
    for group in groups:
        for name in (ours, theirs):
            (group / name).mkdir(parents=True)
    try:
        helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\ntrue\n"))
        assert helper.exited(1)["exit_code"] == 0
        assert not any((group / ours).exists() for group in groups), "a dead process's slot was kept"
        assert all((group / theirs).exists() for group in groups), "another namespace's slot was removed"
    finally:
        for group in groups:
            for name in (ours, theirs):
                if (group / name).exists():
                    (group / name).rmdir()


def test_failing_job_reports_its_exit_code(helper, tmp_path):
    helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\necho oops >&2\nexit 3\n"))
    result = helper.exited(1)
    assert (result["exit_code"], result["reason"]) == (3, "exited")
    assert (tmp_path / "job-1.out").read_text() == "oops\n"  # stderr joins stdout without an error file


def test_second_start_of_the_same_id_runs_nothing(helper, tmp_path):
    marker = tmp_path / "marker"
    spec = job(1, tmp_path, f"#!/bin/sh\necho ran >> {marker}\nsleep 0.3\n")
    first = helper.ok("start", job=spec)
    second = helper.ok("start", job=spec)
    assert first["already"] is False
    assert second["already"] is True and second["state"] in ("claimed", "running", "ended")
    helper.exited(1)
    third = helper.ok("start", job=spec)
    assert third["already"] is True and third["state"] == "ended"
    assert third["result"]["exit_code"] == 0
    helper.ok("ping")
    assert helper.exited_events() == []  # one end, one event
    assert marker.read_text() == "ran\n"


def test_a_run_claimed_by_a_supervisor_that_died_is_lost_not_stuck(helper, tmp_path, spool):
    """A claim (the run's folder) with no start behind it, as a supervisor killed between the two
    leaves: a start of that run waits out the grace an earlier supervisor has to start it, then
    bars it (its cancel flag) and reports it lost, so melond ends or requeues it."""
    marker = tmp_path / "marker"
    os.makedirs(os.path.join(spool, "jobs", "7"), mode=0o700)
    began = time.monotonic()
    spec = job(7, tmp_path, f"#!/bin/sh\necho ran > {marker}\n")
    reply = helper.ok("start", wait=service.CLAIM_GRACE + TIMEOUT, job=spec)
    assert reply["already"] is True and reply["state"] == "lost", reply
    assert time.monotonic() - began >= service.CLAIM_GRACE - 0.5
    assert os.path.exists(os.path.join(spool, "jobs", "7", "cancel"))
    helper.ok("ping")
    assert not marker.exists() and helper.exited_events() == []


def test_set_limit_shortens_a_running_job_to_a_timeout(helper, tmp_path):
    started = helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 30\n", limit=60, kill_wait=0.3))
    supervisor_listening(helper, 1)
    sent = time.time()
    told = helper.ok("set_limit", job_id=1, limit=1)
    assert told == {"ended": False, "woke": True}
    result = helper.exited(1)
    deadline = started["start"] + 1
    assert result["reason"] == "timeout"
    assert result["term_sent"] >= deadline
    assert result["term_sent"] - max(deadline, sent) < 1.0, "SIGTERM came more than a second late"
    assert result["end"] - result["term_sent"] < 0.3 + 1.0


def test_set_limit_extends_a_running_job_so_it_finishes(helper, tmp_path):
    helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 2\necho finished\n", limit=1))
    supervisor_listening(helper, 1)
    helper.ok("set_limit", job_id=1, limit=30)
    result = helper.exited(1)
    assert (result["reason"], result["exit_code"]) == ("exited", 0)
    assert (tmp_path / "job-1.out").read_text() == "finished\n"


def test_set_limits_sets_a_whole_node_in_one_request(helper, tmp_path):
    """melond's reconnect: every running job's limit in one request; a run the node does not have
    is reported in its place, and the others still take effect."""
    for jid in (1, 2):
        helper.ok("start", job=job(jid, tmp_path, f"#!/bin/sh\nsleep 2\necho {jid}\n", limit=1))
        supervisor_listening(helper, jid)
    told = helper.ok("set_limits", limits=[[1, 0, 30], [7, 0, 30], [2, 0, 30]])
    assert [r.get("error", {}).get("code") for r in told["results"]] == [None, "no_such_job", None]
    assert told["results"][0] == {"ended": False, "woke": True}
    for jid in (1, 2):
        result = helper.exited(jid)
        assert (result["reason"], result["exit_code"]) == ("exited", 0), result
        assert (tmp_path / f"job-{jid}.out").read_text() == f"{jid}\n"


def test_kill_cancels_a_running_job(helper, tmp_path):
    started = helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 30\n"))
    supervisor_listening(helper, 1)
    assert helper.ok("kill", job_id=1) == {"ended": False, "woke": True}
    result = helper.exited(1)
    assert result["reason"] == "cancelled"
    assert result["term_sent"] is not None
    assert result["end"] - started["start"] < 5
    assert _gone(started["pid"])


def test_requests_for_an_unknown_job_are_refused(helper):
    for op in ("kill", "set_limit"):
        reply = helper.request(op, job_id=424242, limit=5)
        assert reply["ok"] is False and reply["error"]["code"] == "no_such_job"


def test_list_shows_running_and_ended_jobs(helper, tmp_path):
    helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nexit 0\n"))
    done = helper.exited(1)
    running = helper.ok("start", job=job(2, tmp_path, "#!/bin/sh\nsleep 30\n"))
    jobs = {j["id"]: j for j in helper.ok("list")["jobs"]}
    assert set(jobs) == {1, 2}
    assert jobs[1]["state"] == "ended" and jobs[1]["result"] == done
    assert jobs[2]["state"] == "running"
    assert jobs[2]["started"]["pid"] == running["pid"]
    assert jobs[2]["started"]["start"] == running["start"]


def test_forget_removes_only_ended_jobs(helper, tmp_path, spool):
    helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nexit 0\n"))
    helper.exited(1)
    helper.ok("start", job=job(2, tmp_path, "#!/bin/sh\nsleep 30\n"))
    gone = helper.ok("forget", runs=[[1, 0], [2, 0], [77, 0]])["forgotten"]
    assert sorted(gone) == [[1, 0], [77, 0]]  # 77 was never here: nothing to keep
    assert [j["id"] for j in helper.ok("list")["jobs"]] == [2]
    assert not os.path.exists(os.path.join(spool, "jobs", "1"))


def test_each_run_of_a_requeued_job_has_its_own_record(helper, tmp_path, spool):
    """A requeued job's new run may land where its old run still runs (fenced, not yet dead):
    the two never share a spool record, a kill or an end of one is not taken for the other."""
    old = helper.ok("start", job=job(5, tmp_path, "#!/bin/sh\nsleep 30\n"))
    new = helper.ok("start", job=job(5, tmp_path, "#!/bin/sh\necho run $MELON_RESTART_COUNT\n", run=1))
    assert old["already"] is False and new["already"] is False and new["pid"] != old["pid"]
    ended = helper.exit_event(5)
    assert (ended["run"], ended["result"]["exit_code"]) == (1, 0)
    listed = {(j["id"], j["run"]): j["state"] for j in helper.ok("list")["jobs"]}
    assert listed == {(5, 0): "running", (5, 1): "ended"}
    helper.ok("kill", job_id=5, run=0)
    assert helper.exit_event(5)["run"] == 0
    assert _gone(old["pid"])
    assert sorted(os.listdir(os.path.join(spool, "jobs"))) == ["5", "5.1"]
    assert helper.ok("start", job=job(5, tmp_path, "#!/bin/sh\nexit 0\n", run=1))["already"] is True


def test_unknown_user_is_refused_and_the_id_stays_free(helper, tmp_path):
    reply = helper.request("start", job=job(1, tmp_path, "#!/bin/sh\necho hi\n", user="melon-no-such-user"))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "no_such_user"
    assert "melon-no-such-user" in reply["error"]["message"]
    assert helper.ok("list")["jobs"] == []
    assert helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\necho hi\n"))["already"] is False
    assert helper.exited(1)["exit_code"] == 0


def test_launch_failure_is_a_result_not_a_lost_job(helper, tmp_path):
    """The job's own child changes directory and opens its files, so the start is answered with
    its pid and the failure comes as its end, naming what failed."""
    reply = helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\necho hi\n", cwd=str(tmp_path / "missing")))
    assert reply["pid"] > 0
    result = helper.exited(1)
    assert result["reason"] == "launch_failed" and result["exit_code"] is None
    assert "change directory" in result["error"] and "missing" in result["error"]


def test_unknown_op_and_malformed_requests_keep_the_channel(helper):
    reply = helper.request("frobnicate")
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert "frobnicate" in reply["error"]["message"]
    reply = helper.request("kill")  # no job_id
    assert reply["ok"] is False and reply["error"]["code"] == "internal"
    assert "time" in helper.ok("ping")


def test_job_survives_the_helper_and_the_next_helper_reports_it(boot, tmp_path):
    first = boot()
    flag = tmp_path / "flag"
    started = first.ok("start", job=job(1, tmp_path, f"#!/bin/sh\nsleep 2\necho done > {flag}\n"))
    assert first.close() == 0
    assert not _gone(started["pid"]), "the job died with the helper"
    assert not flag.exists()

    second = boot()
    listed = {j["id"]: j for j in second.ok("list")["jobs"]}
    assert listed[1]["state"] == "running"
    assert listed[1]["started"]["pid"] == started["pid"]
    result = second.exited(1)
    assert (result["reason"], result["exit_code"]) == ("exited", 0)
    assert result["start"] == started["start"]
    assert flag.read_text() == "done\n"
    assert second.ok("list")["jobs"] == [{"id": 1, "run": 0, "state": "ended", "result": result}]


def test_a_prompt_kill_never_kills_the_supervisor(helper, tmp_path, spool):
    """Kills that race a job's start (a kill that lands before the launch keeps the job from
    running at all): each job must end cancelled, and the supervisor live on."""
    for jid in range(1, 101):
        helper.proc.stdin.write(encode({"id": 10_000 + jid, "op": "start",
                                        "job": job(jid, tmp_path, "#!/bin/sh\nsleep 30\n", kill_wait=0.2)}))
        kill = encode({"id": 20_000 + jid, "op": "kill", "job_id": jid})
        run = pathlib.Path(spool, "jobs", str(jid))
        give_up = time.monotonic() + TIMEOUT
        while not (run / "started.json").exists() and not (run / "result.json").exists():
            assert time.monotonic() < give_up, f"job {jid} never started"
            helper.proc.stdin.write(kill)
            time.sleep(0.0005)
        helper.proc.stdin.write(kill * 3)
        assert helper.exited(jid, timeout=2.0)["reason"] == "cancelled"


def test_a_sighup_neither_ends_the_supervisor_nor_is_ignored_by_its_jobs(helper, tmp_path):
    """A SIGHUP sent to melond's whole unit reaches the local supervisor: it lives on, and its
    jobs still get SIGHUP's default (a handler is not inherited across exec, an ignore would be)."""
    supervisor = psutil.Process(helper.proc.pid).children()[0]
    ready = tmp_path / "ready"
    helper.ok("start", job=job(1, tmp_path, f"#!/bin/sh\ngrep -E '^Sig(Ign|Cgt)' /proc/$$/status\ntouch {ready}\n"
                                            "sleep 30\n"))
    give_up = time.monotonic() + TIMEOUT
    while not ready.exists():
        assert time.monotonic() < give_up, "the job never started"
        time.sleep(0.02)
    supervisor.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert supervisor.is_running() and supervisor.status() != psutil.STATUS_ZOMBIE
    masks = dict(line.split(":\t") for line in (tmp_path / "job-1.out").read_text().splitlines())
    assert not int(masks["SigIgn"], 16) & (1 << (signal.SIGHUP - 1)), masks
    assert helper.ok("kill", job_id=1)
    assert helper.exited(1)["reason"] == "cancelled"


def test_the_helper_leaves_when_its_supervisor_dies(boot):
    """No supervisor, no starts: the helper exits so that melond reconnects with a fresh pair."""
    helper = boot()
    supervisor = psutil.Process(helper.proc.pid).children()
    assert len(supervisor) == 1
    supervisor[0].kill()
    assert helper.proc.wait(TIMEOUT) == 0


def _kill_supervisor_under(helper: HelperProc, tmp_path: pathlib.Path, script: str) -> list[int]:
    """Start job 1 (its script writes two pids, space-separated, to $PIDS), then kill -9 the
    helper's supervisor and wait for the helper to leave; return the pids."""
    pids = tmp_path / "pids"
    helper.ok("start", job=job(1, tmp_path, script.replace("$PIDS", str(pids))))
    deadline = time.monotonic() + TIMEOUT
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, "the job never wrote its pids"
        time.sleep(0.02)
    psutil.Process(helper.proc.pid).children()[0].kill()
    assert helper.proc.wait(TIMEOUT) == 0
    return [int(p) for p in pids.read_text().split()]


def _wait_gone(pids: list[int], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while any(_running(p) for p in pids):
        assert time.monotonic() < deadline, f"{what}: still running: {[p for p in pids if _running(p)]}"
        time.sleep(0.02)


def test_a_dead_supervisors_jobs_are_killed_and_end_lost(boot, tmp_path):
    """kill -9 of the supervisor: nobody can collect its jobs' exit statuses, so the next helper
    kills what is left of them (a process that left the job's session too, where the job has a
    cgroup) and records each run lost, once: a requeued run never runs beside its old one. Its
    TMPDIR, which its supervisor would have removed, goes too."""
    escaped, leader = _kill_supervisor_under(
        boot(), tmp_path, f"#!/bin/sh\necho $TMPDIR > {tmp_path}/tmpdir\nsetsid sleep 60 &\necho $! $$ > $PIDS\nsleep 60\n")
    try:
        assert _running(leader), "the job died with its supervisor"
        tmpdir = pathlib.Path((tmp_path / "tmpdir").read_text().strip())
        assert tmpdir.is_dir() and tmpdir.name.startswith("melon-1-")
        second = boot()
        listed = second.ok("list")["jobs"]
        assert [(j["id"], j["state"], j["result"]["reason"]) for j in listed] == [(1, "ended", "lost")], listed
        assert "supervisor died" in listed[0]["result"]["error"]
        assert not tmpdir.exists(), "the lost run's TMPDIR was left behind"
        _wait_gone([leader] + ([escaped] if limits.detect()[0] != "none" else []),  # no cgroup: its session only
                   "the dead supervisor's job")
        assert second.ok("list")["jobs"] == listed  # recorded once: the same end, not a new one
    finally:
        quietly(os.kill, escaped, signal.SIGKILL)


def test_without_a_cgroup_a_dead_supervisors_job_is_killed_by_its_process_group(boot, tmp_path):
    """No cgroup to find a job's processes by (limits = "none"): once its supervisor died, the job's
    process group is killed, even after its leader exited (the group still bears its pid)."""
    child, leader = _kill_supervisor_under(boot("none"), tmp_path,
                                           "#!/bin/sh\nsleep 60 &\necho $! $$ > $PIDS\nsleep 0.5\n")
    deadline = time.monotonic() + TIMEOUT
    while psutil.pid_exists(leader):  # it exits, and is reaped; the child it left in its group runs on
        assert time.monotonic() < deadline, "the job's leader never exited"
        time.sleep(0.02)
    assert _running(child)
    listed = boot("none").ok("list")["jobs"]
    assert [(j["state"], j["result"]["reason"]) for j in listed] == [("ended", "lost")], listed
    _wait_gone([child], "the job's process group")


def test_a_run_whose_supervisors_pid_was_reused_is_fenced_and_the_new_process_spared(helper, tmp_path, spool):
    """started.json names its supervisor by pid and start time: a live process that reused the pid
    (a restarted container's fresh pid namespace) is not taken for it, nor signalled."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads its own process group
    try:
        run = pathlib.Path(spool, "jobs", "9")
        run.mkdir(mode=0o700, parents=True)
        (run / "started.json").write_text(json.dumps({
            "pid": bystander.pid, "ticks": 1, "monitor": bystander.pid, "monitor_ticks": 1, "start": time.time(),
            "backend": "none", "boot_id": _boot_id()}))
        listed = [j for j in helper.ok("list")["jobs"] if j["id"] == 9]
        assert [(j["state"], j["result"]["reason"]) for j in listed] == [("ended", "lost")], listed
        assert bystander.poll() is None, "a process that reused the supervisor's pid was killed"
    finally:
        bystander.kill()
        bystander.wait()


def _boot_id() -> str:
    return pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_one_supervisor_runs_every_job_of_a_helper(helper, tmp_path):
    """One process per node watches all jobs: the helper's only child is the parent of each."""
    supervisor = psutil.Process(helper.proc.pid).children()
    assert len(supervisor) == 1
    pids = [helper.ok("start", job=job(jid, tmp_path, "#!/bin/sh\nsleep 30\n"))["pid"] for jid in range(1, 21)]
    assert {j["started"]["monitor"] for j in helper.ok("list")["jobs"]} == {supervisor[0].pid}
    assert all(psutil.Process(p).ppid() == supervisor[0].pid for p in pids)
    assert psutil.Process(helper.proc.pid).children() == supervisor
    helper.ok("kill", job_id=7)
    assert helper.exited(7)["reason"] == "cancelled"
    assert all(not _gone(p) for i, p in enumerate(pids, 1) if i != 7), "a kill reached another job"


def test_an_earlier_supervisor_keeps_its_jobs_and_obeys_the_next_helper(boot, tmp_path):
    """After its helper left, a supervisor watches the jobs it started until the last one ends,
    takes kills and new limits sent by a later helper, and then exits."""
    first = boot()
    old = psutil.Process(first.proc.pid).children()[0]
    short = first.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 30\n", limit=60, kill_wait=0.3))
    first.ok("start", job=job(2, tmp_path, "#!/bin/sh\nsleep 30\n"))
    assert first.close() == 0
    assert old.is_running(), "the supervisor left with its helper while jobs ran"

    second = boot()
    assert psutil.Process(second.proc.pid).children()[0].pid != old.pid
    assert {j["id"]: j["state"] for j in second.ok("list")["jobs"]} == {1: "running", 2: "running"}  # as melond does
    assert second.ok("set_limit", job_id=1, limit=1)["woke"] is True
    assert second.exited(1)["reason"] == "timeout"
    assert time.time() - short["start"] < 1 + 2.0
    assert old.is_running(), "job 2 still runs: its supervisor must stay"
    assert second.ok("kill", job_id=2)["woke"] is True
    assert second.exited(2)["reason"] == "cancelled"
    old.wait(TIMEOUT)  # the last job ended: the orphaned supervisor is gone


def test_a_request_from_an_older_epoch_is_refused_by_every_helper_and_changes_nothing(boot, tmp_path, spool):
    """Two melonds over one node, one after the other (remote/fence.py): once the newer one's
    epoch is heard, the older one's connection can neither start, kill nor extend anything, and
    neither can any later connection of its, the spool keeping the highest epoch heard."""
    old, new = boot(), boot()  # each melond's connection has a helper (and supervisor) of its own
    started = old.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 30\n", limit=60), epoch=4)
    assert new.ok("list", epoch=5)["jobs"][0]["state"] == "running"  # the newer melond takes over
    for op, fields in (("kill", {"job_id": 1}), ("set_limit", {"job_id": 1, "limit": 1}),
                       ("start", {"job": job(2, tmp_path, "#!/bin/sh\ntouch ran\n")}), ("list", {})):
        for who in (old, boot()):  # its open connection, and one it makes again
            for epoch in (4, None):  # its own epoch, and none (a melond that fences nothing)
                reply = who.request(op, **fields, **({"epoch": epoch} if epoch else {}))
                assert reply["ok"] is False and reply["error"]["code"] == "stale_epoch", (op, reply)
                assert "epoch 5 leads this node" in reply["error"]["message"]
    assert not (tmp_path / "ran").exists() and not os.path.exists(os.path.join(spool, "jobs", "2.0"))
    assert {j["id"]: j["state"] for j in new.ok("list", epoch=5)["jobs"]} == {1: "running"}
    assert not _gone(started["pid"])  # neither killed nor cut short
    assert new.ok("kill", job_id=1, epoch=6)["woke"] is True  # a newer one still acts
    assert new.exited(1)["reason"] == "cancelled"
    assert open(os.path.join(spool, "epoch")).read().strip() == "6"


@pytest.mark.skipif(os.geteuid() != 0, reason="starting jobs as another user needs root")
def test_a_user_cannot_kill_the_supervisor_while_it_starts_their_jobs(helper):
    """The supervisor never takes a user's real uid (which would let that user signal it, and so
    end every job on the node): a process of the user's sending SIGKILL to it in a tight loop
    while it starts that user's jobs never gets through."""
    supervisor = psutil.Process(helper.proc.pid).children()[0]
    work = pathlib.Path(tempfile.mkdtemp(prefix="mh-work-", dir="/tmp"))  # pytest's tmp_path is root's alone
    work.chmod(0o777)
    killer = subprocess.Popen([sys.executable, "-c", f"""
import os, time
end = time.monotonic() + 60
while time.monotonic() < end:
    try:
        os.kill({supervisor.pid}, 9)
    except PermissionError:
        pass
"""], preexec_fn=as_user("nobody"))
    try:
        for jid in range(1, 41):
            helper.ok("start", job=job(jid, work, "#!/bin/sh\nexit 0\n", user="nobody"))
            result = helper.exited(jid)
            assert result["exit_code"] == 0, result
        assert supervisor.is_running() and supervisor.uids().real == 0
    finally:
        killer.kill()
        killer.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_the_job_alone_is_in_its_cgroup(helper, tmp_path):
    """The supervisor steps into the job's cgroup only to spawn it, and back out at once."""
    if helper.info["backend"] not in ("cgroup-v1", "cgroup-v2"):
        pytest.skip(f"no cgroup backend here ({helper.info['backend_reason']})")
    started = helper.ok("start", job=job(7, tmp_path, "#!/bin/sh\nsleep 30\n"))
    supervisor = json.loads((pathlib.Path(helper.info["spool"]) / "jobs" / "7" / "started.json").read_text())["monitor"]
    assert "job-7" not in pathlib.Path(f"/proc/{supervisor}/cgroup").read_text()
    assert "job-7" in pathlib.Path(f"/proc/{started['pid']}/cgroup").read_text()
    helper.ok("kill", job_id=7)
    assert helper.exited(7)["reason"] == "cancelled"


def test_a_job_that_breaks_its_launch_does_not_end_the_supervisor(helper, tmp_path):
    """melond refuses NUL bytes, but should one reach the node, only that job fails: the
    supervisor, and every job it watches, carry on."""
    supervisor = psutil.Process(helper.proc.pid).children()[0]
    running = helper.ok("start", job=job(1, tmp_path, "#!/bin/sh\nsleep 30\n"))
    helper.ok("start", job=job(2, tmp_path, "#!/bin/sh\ntrue\n", env={"PATH": "/bin", "BAD": "a\0b"}))
    result = helper.exited(2)
    assert result["reason"] == "launch_failed" and "null" in result["error"], result
    assert supervisor.is_running() and not _gone(running["pid"])
    assert helper.ok("start", job=job(3, tmp_path, "#!/bin/sh\nexit 4\n"))["already"] is False
    assert helper.exited(3)["exit_code"] == 4
    helper.ok("kill", job_id=1)
    assert helper.exited(1)["reason"] == "cancelled"
