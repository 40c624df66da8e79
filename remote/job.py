"""One run of a job on a node: how it is launched, its deadline, how its end is recorded.

Standard library only: streamed to compute nodes with the helper. The node's
supervisor (remote/supervisor.py) owns many of these and drives them from its
loop, so nothing here waits: a job's next act is returned as a delay, and its
result is fsynced by a thread, so one job's work never holds up another's.
"""
from __future__ import annotations

import os
import pwd
import queue
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable

from . import cpuset, devices, limits
from .protocol import DEFAULT_UMASK, STEP_TARGET, KillCause, SignalTo, job_channel
from .spawn import ERROR_STREAM, Launch, spawn
from .spool import JobDir
from .steps import session_members, step_pids

TMP_BASE = "/tmp"  # where each job's own TMPDIR is made, under a name nobody can guess
CLEANUP_TRIES = 50  # kill rounds, 20 ms apart, before a job's cgroup is left behind
CLEANUP_POLL = 0.02
DRAIN_POLL = 0.05  # how often a job whose batch shell is gone looks for its last steps' end
# What slurmstepd writes to a job's error stream as it ends it (src/slurmd/slurmstepd/req.c,
# _handle_signal_container), after `slurmstepd: error: *** JOB <id> ON <node> CANCELLED AT <time>`.
END_LINES = {"timeout": " DUE TO TIME LIMIT", KillCause.CANCEL: "", KillCause.REQUEUE: " DUE TO JOB REQUEUE",
             KillCause.NODE_FAIL: " DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS",
             KillCause.PREEMPT: " DUE TO PREEMPTION"}


class Job:
    """One run of a job: its limits, its process, its deadline and how it is being ended."""

    def __init__(self, jobdir: JobDir, spec: dict, backend: str, notify: str) -> None:
        self.dir = jobdir
        self.key = jobdir.key
        self.spec = spec
        self.notify = notify  # where a later helper hears of its end, should ours be gone
        self.limits = limits.BACKENDS[backend](spec["key"], spec.get("cpus") or 0, spec.get("memory") or 0,
                                               spec.get("tasks_max") or 0, spec["scope"])
        self.limits.cpu_ids = spec.get("cpu_ids")
        own = (spec.get("devices") or {}).get("own")
        if own is not None and not devices.usable():  # a closed device policy, where systemd gives one
            self.limits.device_allow = devices.allowed(own)
        self.kill_wait = float(spec.get("kill_wait", 30))
        self.pid = 0  # its process, once forked
        self.returncode: int | None = None
        self.pidfd = -1
        self.report_fd = -1  # what its child says before exec: why it could not start, or its error stream
        self.stderr_fd = -1  # the job's error stream, where Slurm's lines about its end go
        self.launch_error: str | None = None
        self.tmpdir: str | None = None  # its TMPDIR, removed after its end
        self.start = 0.0
        self.locate_until = 0.0
        self.due: float | None = None
        self.ending: str | None = None  # "timeout" or "cancelled" once we start killing
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self.warned_for: float | None = None  # the deadline the --signal warning was sent for
        self.uid: int | None = None  # the job's user, once launched
        self.error: str | None = None
        self.ended = False
        self.cleanups = 0
        self.strays = True  # processes may be left in its cgroup: finish() tells
        self.reported = False  # its start (or why it could not start) was told to the helper
        self.rusage = None  # its leader's, from wait4: what it and the children it waited for used

    def launch(self) -> None:
        """Fork the job's process in its cgroup; the child opens the job's folder and files as
        the job's user and execs its command (remote/spawn.py). The supervisor opens nothing a
        user names, so no FIFO or hung mount can stop its loop; its real ids stay root's, so the
        user can never signal it. What failed in the child arrives on `report_fd`."""
        spec, lim = self.spec, self.limits
        uid, gid, groups, home = _resolve_user(spec["user"])
        self.uid = uid
        argv, env, script_fd = _command(spec)
        env.setdefault("HOME", home)
        switch = os.geteuid() == 0 and uid != 0
        if lim.wraps:  # systemd-run needs root; setpriv switches to the user inside the scope
            argv = lim.wrap(argv, uid, gid)
        self.tmpdir = os.path.join(TMP_BASE, f"melon-{self.key}-{os.urandom(6).hex()}")
        launch = Launch(argv=argv, env=env, keep_fd=script_fd, cwd=spec["cwd"], output=spec["output"],
                        error=spec.get("error"), append=spec.get("open_mode") == "append",
                        umask=int(spec.get("umask", DEFAULT_UMASK)) & 0o777,
                        ids=(uid, gid, groups) if switch else None, for_good=not lim.wraps, tmpdir=self.tmpdir,
                        shm_size=spec.get("memory") or 0, cpu_ids=spec.get("cpu_ids"))
        enter, leave = (_nothing, _nothing) if lim.wraps else (lim.enter, lim.leave)
        own_cpuset = cpuset.make(lim.rel, spec.get("cpu_ids") or [])  # a v1 one, where the node gives it
        if own_cpuset:
            enter, leave = _joining(cpuset, own_cpuset, enter, leave)
        own_devices = devices.make(lim.rel, (spec.get("devices") or {}).get("others") or [])
        if own_devices:  # a v1 one denying the node's other devices, where the node gives it
            enter, leave = _joining(devices, own_devices, enter, leave)
        try:
            self.pid, self.report_fd = spawn(launch, enter, leave)
        except OSError as exc:
            raise LaunchError(f"cannot start the job's process: {exc.strerror or exc}") from None
        finally:
            os.close(script_fd)
        self.start = time.time()
        self.pidfd = os.pidfd_open(self.pid)
        lim.leader = self.pid  # its own session: the job's pid is its process group

    def read_report(self) -> bool:
        """Take what the job's child said; True once its socket is closed (the command runs, or
        the child is gone)."""
        channel = socket.socket(fileno=self.report_fd) if self.report_fd >= 0 else None
        try:
            while channel is not None:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(channel, 4096, 1)
                except BlockingIOError:
                    return False
                if fds:
                    if data == ERROR_STREAM and self.stderr_fd < 0:
                        self.stderr_fd = fds.pop()
                    for fd in fds:
                        os.close(fd)
                    continue
                if not data:
                    return True
                self.launch_error = (self.launch_error or "") + data.decode(errors="replace")
            return True
        finally:
            if channel is not None:
                channel.detach()  # the supervisor closes it, once

    def step(self, now: float) -> float | None:
        """Act on the deadline, cancel flag and kill grace; return seconds until the next act."""
        limit = self.dir.read_int("limit", self.spec.get("limit") or 0)  # the file exists once extended
        deadline = self.start + limit if limit else None
        if self.ending is None:
            if self.dir.exists("cancel"):
                self._terminate("cancelled", now, self.dir.read_text("cancel"))
            elif deadline is not None and now >= deadline:
                self._terminate("timeout", now, "timeout")
        for line in self.dir.take_lines("signals"):  # `mcancel -s`, `scancel -s`: SIG or SIG:TO, sent once each
            sig, _, to = line.partition(":")
            if self.ending is None and sig.isdigit():
                self.send(int(sig), to or SignalTo.ALL)
        if self.kill_at is not None and now >= self.kill_at:
            self.limits.signal_all(signal.SIGKILL)
            self.kill_at = None
        warn = self.spec.get("signal")
        if warn and deadline is not None and self.warned_for != deadline and self.ending is None:
            # Once per deadline: an extension moves the deadline, and the warning comes again
            # SECONDS before the new one (at once if the job is already that close to it).
            warn_at = deadline - warn[1]
            if now >= warn_at:
                if self.warned_for is None or deadline > self.warned_for:
                    self.send(warn[0], warn[2] if len(warn) > 2 else SignalTo.ALL)
                self.warned_for = deadline
            else:
                deadline = min(deadline, warn_at)
        wakes = [t for t in (deadline if self.ending is None else None, self.kill_at) if t is not None]
        if self.returncode is not None:  # draining: its steps may end any moment
            wakes.append(now + DRAIN_POLL)
        return max(0.0, min(wakes) - now) if wakes else None

    def draining(self, now: float) -> bool:
        """Its batch shell has ended while the job was being ended (a cancel, requeue or time
        limit), and steps remain: as in Slurm, they keep the rest of KillWait to end on their
        own (PyTorch Lightning's trainer finishes its checkpoint and its requeue on SIGTERM)."""
        if self.returncode is None or self.ending is None or self.kill_at is None or now >= self.kill_at:
            return False
        return any(pid != os.getpid() for pid in self.limits.pids())

    def send(self, sig: int, to: str) -> None:
        """A signal to the processes `to` names (SignalTo), once each."""
        if to == SignalTo.BATCH:
            if self.returncode is None:  # not yet reaped: the pid is still the batch shell's
                quietly(os.kill, self.pid, sig)
        elif to == SignalTo.STEPS or to.startswith(STEP_TARGET):
            members = self.limits.pids() or (session_members(self.pid) if self.returncode is None else [])
            step = to[len(STEP_TARGET):] if to.startswith(STEP_TARGET) else None
            for pid in step_pids([p for p in members if p != os.getpid()], self.spec["id"], step):
                quietly(os.kill, pid, sig)
        else:
            self.limits.signal_once(sig)

    def _terminate(self, why: str, now: float, cause: str) -> None:
        self.ending = why
        self.term_at = now
        self._say_end(END_LINES.get(cause, ""), now)
        self.limits.signal_all(signal.SIGCONT)
        self.limits.signal_all(signal.SIGTERM)
        self.kill_at = now + self.kill_wait

    def _say_end(self, due: str, now: float) -> None:
        """slurmstepd's line in the job's error stream, which tools and users look for there.
        Written by a thread of its own: the stream may be a file on a hung mount."""
        if self.stderr_fd < 0 and self.report_fd >= 0:
            self.read_report()  # ended in its first instant: the stream may be waiting to be taken
        if self.stderr_fd < 0:
            return
        node = self.spec.get("env", {}).get("SLURMD_NODENAME") or os.uname().nodename
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        line = f"slurmstepd: error: *** JOB {self.spec['id']} ON {node} CANCELLED AT {at}{due} ***\n".encode()
        threading.Thread(target=_write_and_close, args=(os.dup(self.stderr_fd), line), daemon=True).start()

    def close_streams(self) -> None:
        if self.stderr_fd >= 0:
            os.close(self.stderr_fd)
            self.stderr_fd = -1

    def reap(self) -> int | None:
        """Popen.poll(), through wait4 so that the leader's rusage is kept: the CPU time and peak
        memory a node without the job's own cgroup reports. None while it runs."""
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return self.returncode
        if pid == 0:
            return None
        self.rusage = usage
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def finish(self, returncode: int | None) -> dict:
        """Kill leftovers and classify the end; the caller records the result."""
        self.close_streams()
        self.strays = bool(self.limits.pids())
        if self.strays or self.limits.name == "none":
            self.limits.signal_all(signal.SIGKILL)  # Slurm too ends a job's strays with its batch script
        oom = self.limits.oom_killed()
        code = sig = None
        if returncode is not None:
            if returncode < 0:
                sig = -returncode
            else:
                code = returncode
        if returncode is None or self.launch_error is not None:
            reason = "launch_failed"  # its child could not open its files or exec: it never ran
            code = sig = None
        elif self.ending == "cancelled":
            reason = "cancelled"
        elif oom:
            reason = "oom"
        elif self.ending:
            reason = self.ending
        else:
            reason = "exited"
        self.ended = True
        cpu, peak = self.limits.usage()
        if self.rusage is not None:
            cpu = cpu if cpu is not None else self.rusage.ru_utime + self.rusage.ru_stime
            peak = peak if peak is not None else self.rusage.ru_maxrss * 1024  # KiB on Linux
        return {"exit_code": code, "signal": sig, "reason": reason, "error": self.error or self.launch_error,
                "start": self.start,
                "end": time.time(), "term_sent": self.term_at, "backend": self.limits.name,
                "cpu_time": None if cpu is None else round(cpu, 3), "max_rss": peak}

    def cleanup(self) -> float | None:
        """Empty and remove the job's cgroup; seconds until the next try, None once done. A cgroup
        found empty once its leader was reaped stays empty: nothing is left to fork into it."""
        if self.strays and self.limits.pids() and self.cleanups < CLEANUP_TRIES:
            self.cleanups += 1
            self.limits.signal_all(signal.SIGKILL)
            return CLEANUP_POLL
        self.limits.destroy()
        cpuset.remove(self.limits.rel)
        devices.remove(self.limits.rel)
        return None


def _joining(hierarchy, path: str, enter: Callable[[], None], leave: Callable[[], None]) -> tuple[Callable[[], None],
                                                                                                 Callable[[], None]]:
    """The fork's way in and out of the job's cgroups, one more of its own (a v1 cpuset or
    devices cgroup: `hierarchy` is remote/cpuset.py or remote/devices.py) included."""
    back = hierarchy.home()

    def enter_both() -> None:
        hierarchy.enter(path)
        enter()

    def leave_both() -> None:
        try:
            leave()
        finally:
            hierarchy.leave(back)
    return enter_both, leave_both


def record_result(jobdir: JobDir, result: dict, syncer: ResultSyncer, tell: Callable[[str, dict], bool],
                  notify: str) -> None:
    """result.json, written atomically; then the helper hears of it; then (in the background) fsync.

    The supervisor's own helper gets the result itself over their private socket (`tell`). A
    later helper, should ours be gone, gets only the run key as a datagram and reads the
    root-owned file: a datagram forged by a job's user then cannot end anyone's job.
    """
    jobdir.write_json("result.json", result)
    if not tell(jobdir.key, result):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(jobdir.key.encode(), notify)
        except OSError:
            pass  # no helper listening: the next one finds result.json when it scans
    syncer.sync(jobdir)  # melond forgets the job only after recording this result


class ResultSyncer:
    """fsyncs results, and removes ended jobs' temporary directories, in a thread: the loop
    never waits on the disk, however many files a job left."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[list[int] | str | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="melon-fsync", daemon=True)
        self.thread.start()

    def sync(self, jobdir: JobDir) -> None:
        fds = []
        for path, flags in ((jobdir.path("result.json"), os.O_RDONLY), (jobdir.root, os.O_RDONLY | os.O_DIRECTORY)):
            try:
                fds.append(os.open(path, flags | os.O_CLOEXEC))
            except OSError:
                pass
        self.queue.put(fds)

    def remove_tree(self, path: str) -> None:
        """A job's TMPDIR, once its processes are gone. rmtree works by descriptors here
        (shutil.rmtree.avoids_symlink_attacks), so a link the job left inside, or put in the
        directory's place, leads it nowhere else."""
        self.queue.put(path)

    def _run(self) -> None:
        while (work := self.queue.get()) is not None:
            if isinstance(work, str):
                shutil.rmtree(work, ignore_errors=True)
                continue
            for fd in work:
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


class LaunchError(Exception):
    """The job could not be started: its user is unknown here, or its process could not be forked.
    (What fails in its child, its directory, files or exec, ends the job through its report pipe.)"""


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass  # the job's stream is its own business: a full disk or a closed FIFO loses the line
    finally:
        os.close(fd)


def _nothing() -> None:
    """No cgroup to step into: systemd-run makes the job's scope itself."""


def quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - best effort on a path that is already failing
        pass


USER_CACHE_SECONDS = 5.0  # how long a user lookup is reused (NSS files are re-read on every call)
_users: dict[str, tuple[float, tuple[int, int, list[int], str]]] = {}


def process_stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and when it started, in clock ticks since boot (/proc/PID/stat,
    fields 3 and 22): with its pid, the start names one process for good, where a pid alone may
    have been reused. None if there is no such process to read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    stat = process_stat(pid)
    return stat[1] if stat else None


def lookup_user(name: str) -> tuple[int, int, list[int], str] | None:
    """(uid, gid, groups, home) of a user, or None; reused for a few seconds, since reading
    /etc/passwd and /etc/group per job is a real share of a short job's cost on the node."""
    now = time.monotonic()
    hit = _users.get(name)
    if hit is not None and now - hit[0] < USER_CACHE_SECONDS:
        return hit[1]
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _users.pop(name, None)
        return None
    found = (pw.pw_uid, pw.pw_gid, os.getgrouplist(name, pw.pw_gid), pw.pw_dir)
    if len(_users) > 4096:
        _users.clear()
    _users[name] = (now, found)
    return found


def _resolve_user(name: str) -> tuple[int, int, list[int], str]:
    found = lookup_user(name)
    if found is None:
        raise LaunchError(f"user {name!r} does not exist on this node")
    if os.geteuid() != 0 and found[0] != os.geteuid():
        raise LaunchError(f"the node helper runs as uid {os.geteuid()} and cannot start jobs as {name!r}")
    return found


def _command(spec: dict) -> tuple[list[str], dict[str, str], int]:
    """argv, environment and the script's fd, exactly as given: no shell ever parses job data.

    The script lives in an anonymous memory file handed to the job (not a spool file another
    process could read or that costs the disk an inode per job); the kernel runs a `#!` script
    from it as /dev/fd/N, as sbatch's copy runs from slurmd's spool.
    """
    data = spec["script"].encode("utf-8", "surrogateescape")
    fd = os.memfd_create(f"melon-job-{spec['key']}", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    path = f"/dev/fd/{fd}"
    argv = [path] if data.startswith(b"#!") else ["/bin/sh", path]
    env = dict(spec.get("env") or {})
    if spec.get("scope"):
        env["MELON_NODE_SOCKET"] = "@" + job_channel(spec["scope"])  # where the job asks melond (remote/asks.py)
    return argv + list(spec.get("args") or []), env, fd
