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
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from remote import limits
from remote.protocol import job_channel
from remote.spool import JobDir

CLEANUP_TRIES = 50  # kill rounds, 20 ms apart, before a job's cgroup is left behind
CLEANUP_POLL = 0.02


class Job:
    """One run of a job: its limits, its process, its deadline and how it is being ended."""

    def __init__(self, jobdir: JobDir, spec: dict, backend: str, notify: str) -> None:
        self.dir = jobdir
        self.key = jobdir.key
        self.spec = spec
        self.notify = notify  # where a later helper hears of its end, should ours be gone
        self.limits = limits.BACKENDS[backend](spec["key"], spec.get("cpus") or 0, spec.get("memory") or 0,
                                               spec.get("tasks_max") or 0, spec["scope"])
        self.kill_wait = float(spec.get("kill_wait", 30))
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.pidfd = -1
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
        """Start the job as its user in its own session. Its folder and output files are opened
        here with the user's effective ids (the real ones stay root's, so the user can never
        signal the supervisor), the supervisor steps into the job's cgroup only around the fork,
        and the child takes the user's ids for good before it execs."""
        spec, lim = self.spec, self.limits
        uid, gid, groups, home = _resolve_user(spec["user"])
        self.uid = uid
        argv, env, script_fd = _command(spec)
        env.setdefault("HOME", home)
        switch = os.geteuid() == 0 and uid != 0
        if lim.wraps:  # systemd-run needs root; setpriv switches to the user inside the scope
            argv = lim.wrap(argv, uid, gid)
        step = "open the job's files"
        out = err = -1
        try:
            with _acting_as(uid, gid, groups, switch):
                step = f"change directory to {spec['cwd']}"
                os.chdir(spec["cwd"])
                flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if spec.get("open_mode") == "append" else os.O_TRUNC)
                step = f"open output file {spec['output']}"
                out = os.open(spec["output"], flags, 0o644)
                err = out
                if spec.get("error"):
                    step = f"open error file {spec['error']}"
                    err = os.open(spec["error"], flags, 0o644)
            ids = {"user": uid, "group": gid, "extra_groups": groups} if switch and not lim.wraps else {}
            try:
                if not lim.wraps:
                    step = "enter the job's cgroup"
                    lim.enter()
                step = f"execute {argv[0]}"
                self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                             pass_fds=(script_fd,), start_new_session=True, umask=0o022, **ids)
            finally:
                if not lim.wraps:  # also after a move that failed half way
                    lim.leave()
        except OSError as exc:
            raise LaunchError(f"cannot {step}: {exc.strerror or exc}") from None
        finally:
            os.chdir("/")
            for fd in {script_fd, out, err} - {-1}:
                os.close(fd)
        self.pid = self.proc.pid
        self.start = time.time()
        self.pidfd = os.pidfd_open(self.pid)
        lim.leader = self.pid  # its own session: the job's pid is its process group

    def step(self, now: float) -> float | None:
        """Act on the deadline, cancel flag and kill grace; return seconds until the next act."""
        limit = self.dir.read_int("limit", self.spec.get("limit") or 0)  # the file exists once extended
        deadline = self.start + limit if limit else None
        if self.ending is None:
            if self.dir.exists("cancel"):
                self._terminate("cancelled", now)
            elif deadline is not None and now >= deadline:
                self._terminate("timeout", now)
        for sig in self.dir.take_lines("signals"):  # `mcancel -s`, sent once each
            if self.ending is None and sig.isdigit():
                self.limits.signal_once(int(sig))
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
                    self.limits.signal_once(warn[0])
                self.warned_for = deadline
            else:
                deadline = min(deadline, warn_at)
        wakes = [t for t in (deadline if self.ending is None else None, self.kill_at) if t is not None]
        return max(0.0, min(wakes) - now) if wakes else None

    def _terminate(self, why: str, now: float) -> None:
        self.ending = why
        self.term_at = now
        self.limits.signal_all(signal.SIGCONT)
        self.limits.signal_all(signal.SIGTERM)
        self.kill_at = now + self.kill_wait

    def reap(self) -> int | None:
        """Popen.poll(), through wait4 so that the leader's rusage is kept: the CPU time and peak
        memory a node without the job's own cgroup reports. None while it runs."""
        try:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return self.proc.poll()
        if pid == 0:
            return None
        self.rusage = usage
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode

    def finish(self, returncode: int | None) -> dict:
        """Kill leftovers and classify the end; the caller records the result."""
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
        if returncode is None:
            reason = "launch_failed"
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
        return {"exit_code": code, "signal": sig, "reason": reason, "error": self.error, "start": self.start,
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
        return None


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
    """fsyncs results in a thread: the loop never waits on the disk. It is handed open file
    descriptors only, never paths, so the moments the supervisor acts with a user's effective
    ids (opening the job's output files) cannot affect it."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
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

    def _run(self) -> None:
        while (fds := self.queue.get()) is not None:
            for fd in fds:
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
    """The job could not be started (user, directory, output file, exec)."""


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


class _acting_as:
    """Effective ids of the job's user for a moment (root keeps its real and saved ids)."""

    def __init__(self, uid: int, gid: int, groups: list[int], switch: bool) -> None:
        self.uid, self.gid, self.groups, self.switch = uid, gid, groups, switch

    def __enter__(self) -> None:
        if self.switch:
            os.setgroups(self.groups)
            os.setegid(self.gid)
            os.seteuid(self.uid)

    def __exit__(self, *exc: object) -> None:
        if self.switch:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups([])
