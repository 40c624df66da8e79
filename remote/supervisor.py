"""The node's job supervisor: starts jobs, holds their deadlines, records how they ended.

Standard library only: streamed to compute nodes with the helper. The helper
forks it before loading asyncio (a small process forks cheaply) and it runs in
a session of its own, so losing the SSH channel, the helper or melond never
kills a job, and deadlines are enforced on the node even while nobody can
reach it. It is the parent of every job it starts and watches them all from
one loop, a pidfd each: one process per node rather than one per job is what
lets a node start and collect hundreds of short jobs a second (Slurm's
slurmstepd is one per job; its cost shows at that rate). A job's end lands in
its spool directory as one atomically renamed file, read by whichever helper
comes next.

When its helper goes away it starts nothing more and exits once its last job
has ended; the next helper forks a supervisor of its own. Requests are
datagrams on a SOCK_SEQPACKET pair: {"op": "start", "key", "spool", "backend",
"notify"}, answered with {"key", "pid", "start"} or {"key", "error"}, and
{"op": "wake", "key"} ("re-read that job's flags"). SIGUSR1 makes it re-read
every job's flags: that is how a later helper reaches an earlier one's
supervisor.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import pwd
import queue
import selectors
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable

from remote import limits
from remote.sdbus import BusError, SystemdBus
from remote.spool import JobDir

MAX_REQUEST = 64 * 1024
SIGNALS_TO_RESET = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGCHLD, signal.SIGPIPE, signal.SIGQUIT)
LOCATE_TIMEOUT = 5.0  # seconds a wrapped job (systemd-run) has to appear in its scope
LOCATE_POLL = 0.001
CLEANUP_TRIES = 50  # kill rounds, 20 ms apart, before a job's cgroup is left behind
CLEANUP_POLL = 0.02


def start(spool_dir: str) -> tuple[int, socket.socket]:
    """Fork the supervisor; return its pid and the helper's end of the socket pair."""
    helper_end, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            helper_end.close()
            os.setsid()
            detach(keep=supervisor_end.fileno())
            Supervisor(supervisor_end, spool_dir).run()
            code = 0
        finally:
            os._exit(code)
    supervisor_end.close()
    return pid, helper_end


def detach(keep: int) -> None:
    """Drop everything inherited from the helper: signal handlers, the channel, stdio (an SSH
    channel stays open while any process holds its stdout or stderr)."""
    for sig in SIGNALS_TO_RESET:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _nothing)  # handled, not ignored: jobs must not inherit SIG_IGN
    signal.signal(signal.SIGUSR1, _nothing)  # harmless from the first instant (its default kills)
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


def reap_children() -> None:
    """Collect every exited child without waiting (the helper's: its supervisor, should it die).
    Never called in the supervisor itself, whose children's statuses are the jobs' results."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _nothing(*_: object) -> None:
    """A handler that only interrupts a wait."""


class Supervisor:
    """One loop over the helper's requests, every job's pidfd and every job's next deadline."""

    def __init__(self, sock: socket.socket, spool_dir: str) -> None:
        self.sock: socket.socket | None = sock
        self.spool = spool_dir
        self.jobs: dict[str, Job] = {}  # by run key, from spawn until its cgroup is removed
        self.locating: set[Job] = set()  # wrapped jobs not yet seen in their scope
        self.timers: list[tuple[float, int, str]] = []  # (when, seq, key); stale entries skipped
        self.seq = itertools.count()
        self.rescan = False
        self.syncer = _Syncer()
        self.bus: SystemdBus | None = None  # to systemd, opened for the first systemd job
        self.bus_failed: str | None = None  # why there is none: systemd-run makes the scopes then
        self.calls: dict[int, Job] = {}  # StartTransientUnit serial -> its job, until answered
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, self._on_request)
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_signal)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    def run(self) -> None:
        try:
            while self.sock is not None or self.jobs:
                for key, _ in self.sel.select(self._timeout()):
                    key.data(key.fileobj)
                if self.rescan:
                    self.rescan = False
                    for job in list(self.jobs.values()):
                        self._guard(job, self._step)
                if self.locating:
                    self._locate()
                self._run_timers()
        finally:
            self.syncer.close()
            if self.bus is not None:
                self.bus.close()

    # ---- events --------------------------------------------------------------------------

    def _on_request(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(MAX_REQUEST)
        except OSError:
            data = b""
        if not data:  # the helper left: start nothing more, watch what runs
            self.sel.unregister(sock)
            sock.close()
            self.sock = None
            return
        req = json.loads(data)
        if req.get("op") == "wake":
            job = self.jobs.get(req.get("key", ""))
            if job is not None:
                self._guard(job, self._step)
        elif req.get("op") == "start":
            self._start(req)

    def _on_signal(self, fd: int) -> None:
        while True:
            try:
                if not os.read(self.wake_r, 512):
                    return
            except BlockingIOError:
                return

    def _on_usr1(self, *_: object) -> None:
        self.rescan = True

    def _on_exit(self, job: Job) -> None:
        self.sel.unregister(job.pidfd)
        self.locating.discard(job)
        for serial in [s for s, j in self.calls.items() if j is job]:
            del self.calls[serial]
        if not job.reported:  # it ended before it was seen in its scope (systemd-run failed)
            self._guard(job, self._started)
        self._guard(job, self._ended)

    def _on_bus(self, _sock: object) -> None:
        try:
            replies = self.bus.replies()
        except (BusError, OSError) as exc:
            self._bus_lost(str(exc))
            return
        for serial, error in replies:
            job = self.calls.pop(serial, None)
            if job is None:
                continue
            if error is not None:
                self._refuse(job, error)
            else:
                job.locate_until = time.monotonic() + LOCATE_TIMEOUT
                self.locating.add(job)

    # ---- a job's life ----------------------------------------------------------------------

    def _start(self, req: dict) -> None:
        key = req["key"]
        if key in self.jobs:
            self._report(key, {"error": f"job {key} is running already"})
            return
        jobdir = JobDir(req["spool"], key)
        try:
            job = Job(jobdir, jobdir.read_json("spec.json") or {}, req["backend"], req["notify"])
        except Exception as exc:  # noqa: BLE001 - a bad spec fails its job, not the node
            self._fail_unstarted(jobdir, req["notify"], key, f"bad job spec: {exc}")
            return
        gate = job.limits.wraps and self._bus() is not None
        try:
            job.limits.create()
            job.launch(gate)
        except LaunchError as exc:
            self._fail_unstarted(jobdir, req["notify"], key, str(exc), job)
            return
        except OSError as exc:
            self._fail_unstarted(jobdir, req["notify"], key, f"cannot set up the job's limits: {exc}", job)
            return
        self.jobs[key] = job
        self._watch(job)
        if gate:
            try:
                self.calls[self.bus.start_scope(f"{job.limits.unit}.scope", [job.pid], job.limits.properties())] = job
            except (BusError, OSError) as exc:
                self._refuse(job, str(exc))
                self._bus_lost(str(exc))
        elif job.limits.wraps:
            job.locate_until = time.monotonic() + LOCATE_TIMEOUT
            self.locating.add(job)
        else:
            self._guard(job, self._started)

    def _bus(self) -> SystemdBus | None:
        if self.bus is None and self.bus_failed is None:
            try:
                self.bus = SystemdBus()
                self.sel.register(self.bus, selectors.EVENT_READ, self._on_bus)
            except BusError as exc:
                self.bus_failed = str(exc)
                self._log(f"no D-Bus connection to systemd ({exc}); scopes are made with systemd-run")
        return self.bus

    def _bus_lost(self, why: str) -> None:
        """Fail the jobs whose scopes were asked for; later jobs get theirs from systemd-run."""
        self._log(f"lost the D-Bus connection to systemd ({why}); scopes are made with systemd-run")
        if self.bus is not None:
            _quietly(self.sel.unregister, self.bus)
            self.bus.close()
        self.bus, self.bus_failed = None, why
        for job in list(self.calls.values()):
            self._refuse(job, why)
        self.calls.clear()

    def _refuse(self, job: Job, why: str) -> None:
        """systemd made no scope for a gated job: it never runs (its gate closes) and fails."""
        job.launch_failed = True
        job.error = f"systemd did not create the job's scope {job.limits.unit}.scope: {why}"
        job.open_gate(release=False)
        job.reported = True
        self._report(job.key, {"error": job.error})

    def _fail_unstarted(self, jobdir: JobDir, notify: str, key: str, error: str, job: Job | None = None) -> None:
        now = time.time()
        _record(jobdir, notify, {"exit_code": None, "signal": None, "reason": "launch_failed", "error": error,
                                 "start": now, "end": now, "term_sent": None,
                                 "backend": job.limits.name if job else "none"}, self.syncer)
        if job is not None:
            _quietly(job.limits.destroy)
        self._report(key, {"error": error})

    def _locate(self) -> None:
        for job in list(self.locating):
            found = job.limits.find_scope(job.pid)
            if found is None and time.monotonic() < job.locate_until:
                continue
            self.locating.discard(job)
            if job.gate >= 0:
                if not found:  # gone (its pidfd tells), or never put in the scope: never run it
                    self._refuse(job, "the job's process was not moved into its scope in time")
                    continue
                job.open_gate()
            job.start = time.time()  # in its scope now: this is when it really starts
            self._guard(job, self._started)

    def _started(self, job: Job) -> None:
        job.reported = True
        job.dir.write_json("started.json", {"pid": job.pid, "monitor": os.getpid(), "start": job.start,
                                            "backend": job.limits.name, "boot_id": job.spec.get("boot_id")})
        self._report(job.key, {"pid": job.pid, "start": job.start})
        self._step(job)  # a cancel or a short limit written before started.json existed

    def _step(self, job: Job) -> None:
        delay = job.cleanup() if job.ended else job.step(time.time())
        if job.ended and delay is None:
            self._forget(job)
        elif delay is not None:
            job.due = time.monotonic() + delay
            heapq.heappush(self.timers, (job.due, next(self.seq), job.key))
        else:
            job.due = None

    def _ended(self, job: Job) -> None:
        status = job.proc.poll()
        if status is None:  # not reapable yet, though its pidfd said it ended: keep watching
            self._watch(job)
            return
        os.close(job.pidfd)
        job.pidfd = -1
        job.finish(status, self.syncer)
        self._step(job)

    def _watch(self, job: Job) -> None:
        self.sel.register(job.pidfd, selectors.EVENT_READ, lambda _fd: self._on_exit(job))

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.key, None)
        self.locating.discard(job)
        if job.pidfd >= 0:
            _quietly(self.sel.unregister, job.pidfd)
            os.close(job.pidfd)
            job.pidfd = -1

    def _guard(self, job: Job, action: Callable[[Job], None]) -> None:
        """One job's failure ends that job, never the supervisor: its processes are killed and
        its end, once reaped, carries the error."""
        try:
            action(job)
        except Exception as exc:  # noqa: BLE001
            self._log(f"job {job.key}: {traceback.format_exc()}")
            if job.ended:  # its end is recorded; only the cleanup failed
                self._forget(job)
                return
            job.error = f"the node's job supervisor failed: {type(exc).__name__}: {exc}"
            _quietly(job.limits.signal_all, signal.SIGKILL)
            if job.pidfd < 0:  # already reaped: record the end now
                _quietly(job.finish, job.proc.returncode, self.syncer)
                self._forget(job)

    # ---- plumbing -----------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        if self.locating:
            return LOCATE_POLL
        if not self.timers:
            return None
        return max(0.0, self.timers[0][0] - time.monotonic())

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            when, _, key = heapq.heappop(self.timers)
            job = self.jobs.get(key)
            if job is not None and job.due == when:
                self._guard(job, self._step)

    def _report(self, key: str, info: dict) -> None:
        if self.sock is None:
            return  # the helper is gone; the spool tells the next one
        try:
            self.sock.send(json.dumps({"key": key, **info}).encode())
        except OSError:
            pass

    def _log(self, text: str) -> None:
        try:
            with open(os.path.join(self.spool, "supervisor.log"), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")
        except OSError:
            pass


class Job:
    """One run of a job: its limits, its process, its deadline and how it is being ended."""

    def __init__(self, jobdir: JobDir, spec: dict, backend: str, notify: str) -> None:
        self.dir = jobdir
        self.key = jobdir.key
        self.spec = spec
        self.notify = notify
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
        self.warned = False
        self.error: str | None = None
        self.launch_failed = False  # killed before it ran (systemd refused its scope)
        self.ended = False
        self.cleanups = 0
        self.gate = -1  # write end of the gate's pipe, while the job waits for its scope
        self.reported = False  # its start (or why it could not start) was told to the helper

    def open_gate(self, release: bool = True) -> None:
        """Let the gated job run (a line), or close the gate so that it never runs (EOF)."""
        if self.gate < 0:
            return
        try:
            if release:
                os.write(self.gate, b"go\n")
        finally:
            os.close(self.gate)
            self.gate = -1

    def launch(self, gate: bool = False) -> None:
        """Start the job as its user in its own session. Its folder and output files are opened
        here with the user's effective ids (the real ones stay root's, so the user can never
        signal the supervisor), the supervisor steps into the job's cgroup only around the fork,
        and the child takes the user's ids for good before it execs."""
        spec, lim = self.spec, self.limits
        uid, gid, groups, home = _resolve_user(spec["user"])
        argv, env, script_fd = _command(spec)
        env.setdefault("HOME", home)
        switch = os.geteuid() == 0 and uid != 0
        stdin: int = subprocess.DEVNULL
        if lim.wraps and gate:  # the supervisor asks systemd for the scope, then opens the gate
            argv = lim.gated(argv, uid, gid)
            stdin, self.gate = os.pipe2(os.O_CLOEXEC)
        elif lim.wraps:  # systemd-run needs root; setpriv switches to the user inside the scope
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
            ids = {"user": uid, "group": gid, "extra_groups": groups} if switch and not lim.wraps else {}
            if not lim.wraps:
                lim.enter()
            try:
                self.proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=out, stderr=err,
                                             pass_fds=(script_fd,), start_new_session=True, umask=0o022, **ids)
            finally:
                if not lim.wraps:
                    lim.leave()
        except OSError as exc:
            raise LaunchError(f"cannot {step}: {exc.strerror or exc}") from None
        finally:
            os.chdir("/")
            for fd in {script_fd, out, err, stdin} - {-1, subprocess.DEVNULL}:
                os.close(fd)
            if self.proc is None:
                self.open_gate(release=False)
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

    def finish(self, returncode: int | None, syncer: _Syncer) -> None:
        """Kill leftovers, classify the end, record it and wake the helper; the slow parts (fsync,
        removing the cgroup) come after the wake-up, off the path to the next job."""
        if self.limits.pids() or self.limits.name == "none":
            self.limits.signal_all(signal.SIGKILL)  # Slurm too ends a job's strays with its batch script
        oom = self.limits.oom_killed()
        code = sig = None
        if returncode is not None:
            if returncode < 0:
                sig = -returncode
            else:
                code = returncode
        if returncode is None or self.launch_failed:
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
        _record(self.dir, self.notify, {
            "exit_code": code, "signal": sig, "reason": reason, "error": self.error, "start": self.start,
            "end": time.time(), "term_sent": self.term_at, "backend": self.limits.name,
        }, syncer)
        self.ended = True

    def cleanup(self) -> float | None:
        """Empty and remove the job's cgroup; seconds until the next try, None once done."""
        if self.limits.pids() and self.cleanups < CLEANUP_TRIES:
            self.cleanups += 1
            self.limits.signal_all(signal.SIGKILL)
            return CLEANUP_POLL
        self.limits.destroy()
        return None


def _record(jobdir: JobDir, notify: str, result: dict, syncer: _Syncer) -> None:
    """result.json, written atomically, then the helper's wake-up, then (in the background) fsync."""
    jobdir.write_json("result.json", result)
    try:
        # Only the run key: the helper reads the result from the root-owned file, so a datagram
        # forged by a job's user cannot end anyone's job.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(jobdir.key.encode(), notify)
    except OSError:
        pass  # no helper listening: the next one finds result.json when it scans
    syncer.sync(jobdir)  # melond forgets the job only after recording this result


class _Syncer:
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


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - best effort on a path that is already failing
        pass


USER_CACHE_SECONDS = 5.0  # how long a user lookup is reused (NSS files are re-read on every call)
_users: dict[str, tuple[float, tuple[int, int, list[int], str]]] = {}


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
