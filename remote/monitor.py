"""The per-job monitor: launches one job, holds its deadline, records how it ended.

Standard library only: streamed to compute nodes with the helper. The monitor
runs in its own session, apart from the helper, so losing the SSH channel, the
helper or melond itself never kills a job, and the deadline is enforced on the node even
while nobody can reach it. The outcome lands in the job's spool directory as
one atomically renamed file, read by whichever helper comes next.
"""
from __future__ import annotations

import os
import pwd
import selectors
import signal
import socket
import time

from collections.abc import Callable

from remote import limits
from remote.spool import JobDir

DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}  # none ignored in a job
SIGNALS_TO_RESET = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGCHLD, signal.SIGPIPE, signal.SIGQUIT)


def detach(keep: int) -> None:
    """Drop everything inherited from the helper: signal handlers, the channel, stdio."""
    for sig in SIGNALS_TO_RESET:
        signal.signal(sig, signal.SIG_DFL)
    # The helper may send its "look again" signal as soon as started.json exists, before
    # _watch() runs: until then it must be harmless (SIGUSR1's default would kill us).
    signal.signal(signal.SIGUSR1, _nothing)
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _nothing(*_: object) -> None:
    """A handler that only interrupts a wait: the flags are re-read on every step."""


class Monitor:
    """Runs in its own session; parent of the job's main process."""

    def __init__(self, jobdir: JobDir, spec: dict, backend: str, notify: str) -> None:
        self.dir = jobdir
        self.spec = spec
        self.notify = notify
        self.limits = limits.BACKENDS[backend](spec["key"], spec.get("cpus") or 0, spec.get("memory") or 0,
                                               spec.get("tasks_max") or 0, spec["scope"])
        self.kill_wait = float(spec.get("kill_wait", 30))
        self.ending: str | None = None  # "timeout" or "cancelled" once we start killing
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self.warned = False

    def run(self, report: Callable[[dict], None]) -> None:
        try:
            self.limits.create()
            pid, start = self._launch()
        except LaunchError as exc:
            self._finish(start=time.time(), status=None, error=str(exc))
            report({"error": str(exc)})
            return
        except OSError as exc:
            self._finish(start=time.time(), status=None, error=f"cannot set up the job's limits: {exc}")
            report({"error": str(exc)})
            return
        self.dir.write_json("started.json", {"pid": pid, "monitor": os.getpid(), "start": start,
                                            "backend": self.limits.name,
                                            "boot_id": self.spec.get("boot_id")})
        report({"pid": pid, "start": start})
        status = self._watch(pid, start)
        self._finish(start=start, status=status, error=None)

    def _launch(self) -> tuple[int, float]:
        """Start the job with posix_spawn (a vfork: no copy of this Python process, no Python in
        the child). The monitor itself takes on what the child needs before exec: the job's
        folder and output files are opened with the user's effective ids, the monitor steps into
        the job's cgroup, and its real ids become the user's so that POSIX_SPAWN_RESETIDS hands
        the child exactly those; then it takes everything back."""
        spec, lim = self.spec, self.limits
        uid, gid, groups, home = _resolve_user(spec["user"])
        argv, env, script_fd = _command(spec)
        env.setdefault("HOME", home)
        switch = os.geteuid() == 0 and uid != 0
        resetids = switch and not lim.wraps  # a wrapper (systemd-run) needs root; setpriv switches later
        if lim.wraps:
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
            step = f"execute {argv[0]}"
            pid = self._spawn(argv, env, out, err, uid, gid, groups, resetids)
        except OSError as exc:
            raise LaunchError(f"cannot {step}: {exc.strerror or exc}") from None
        finally:
            os.chdir("/")
            for fd in {script_fd, out, err} - {-1}:
                os.close(fd)
        start = time.time()
        lim.leader = pid  # setsid: the job's pid is its process group
        if lim.wraps:
            lim.locate(pid)
            start = time.time()  # the job is in its scope now; this is when it really starts
        return pid, start

    def _spawn(self, argv: list[str], env: dict, out: int, err: int, uid: int, gid: int, groups: list[int],
               resetids: bool) -> int:
        lim = self.limits
        os.umask(0o022)
        if not lim.wraps:
            lim.enter()
        if resetids:
            os.setgroups(groups)
            os.setresgid(gid, 0, 0)
            os.setresuid(uid, 0, 0)
        try:
            return os.posix_spawn(
                argv[0], argv, env, setsid=True, resetids=resetids, setsigmask=(), setsigdef=DEFAULT_SIGNALS,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
        finally:
            if resetids:
                os.setresuid(0, 0, 0)
                os.setresgid(0, 0, 0)
                os.setgroups([])
            if not lim.wraps:
                lim.leave()

    def _watch(self, pid: int, start: float) -> int:
        """Wait for the job while enforcing its deadline; return the wait status."""
        sel = selectors.DefaultSelector()
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        sel.register(wake_r, selectors.EVENT_READ)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGUSR1, _nothing)  # "your limit or cancel flag changed"
        while True:
            now = time.time()
            timeout = self._step(now, start)
            for key, _ in sel.select(timeout):
                if key.fd == wake_r:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status

    def _step(self, now: float, start: float) -> float | None:
        """Act on the deadline, cancel flag and kill grace; return seconds until the next act."""
        limit = self.dir.read_int("limit", self.spec.get("limit") or 0)  # the file exists once extended
        deadline = start + limit if limit else None
        if self.ending is None:
            if self.dir.exists("cancel"):
                self._terminate("cancelled", now)
            elif deadline is not None and now >= deadline:
                self._terminate("timeout", now)
        if self.kill_at is not None and now >= self.kill_at:
            self.limits.signal_all(signal.SIGKILL)
            self.kill_at = None
        warn = self.spec.get("signal")
        if warn and deadline is not None and not self.warned and self.ending is None:
            warn_at = deadline - warn[1]
            if now >= warn_at:
                self.limits.signal_all(warn[0])
                self.warned = True
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

    def _finish(self, start: float, status: int | None, error: str | None) -> None:
        """Kill leftovers, classify the end, write result.json atomically, wake the helper; the slow
        parts (fsync, removing the cgroup) come after the wake-up, off the path to the next job."""
        if self.limits.pids() or self.limits.name == "none":
            self.limits.signal_all(signal.SIGKILL)  # Slurm too ends a job's strays with its batch script
        oom = self.limits.oom_killed()
        code = sig = None
        if status is not None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            else:
                code = os.WEXITSTATUS(status)
        if error is not None:
            reason = "launch_failed"
        elif self.ending == "cancelled":
            reason = "cancelled"
        elif oom:
            reason = "oom"
        elif self.ending:
            reason = self.ending
        else:
            reason = "exited"
        self.dir.write_json("result.json", value={
            "exit_code": code, "signal": sig, "reason": reason, "error": error, "start": start,
            "end": time.time(), "term_sent": self.term_at, "backend": self.limits.name,
        })
        try:
            # Only the run key: the helper reads the result from the root-owned file, so a datagram
            # forged by a job's user cannot end anyone's job.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(self.spec["key"].encode(), self.notify)
        except OSError:
            pass  # no helper listening: the next one finds result.json when it scans
        self.dir.sync("result.json")  # melond forgets the job only after recording this result
        self.limits.destroy()


class LaunchError(Exception):
    """The job could not be started (user, directory, output file, exec)."""


def _resolve_user(name: str) -> tuple[int, int, list[int], str]:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise LaunchError(f"user {name!r} does not exist on this node") from None
    if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
        raise LaunchError(f"the node helper runs as uid {os.geteuid()} and cannot start jobs as {name!r}")
    return pw.pw_uid, pw.pw_gid, os.getgrouplist(name, pw.pw_gid), pw.pw_dir


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
    return argv + list(spec.get("args") or []), dict(spec.get("env") or {}), fd


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
