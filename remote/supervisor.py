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
"notify", "spec"} (the spec inline when it fits in one datagram, else in the
run's spec.json), answered with {"key", "pid", "start"} or {"key", "error"},
and later {"key", "result"} once it ended; {"op": "wake", "key"} asks it to
re-read that job's flags. SIGUSR1 makes it re-read every job's flags: that is
how a later helper reaches an earlier one's supervisor.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import selectors
import signal
import socket
import time
import traceback
from collections.abc import Callable

from . import cgroup, delegated, limits, subtree
from .delegated import DelegatedV2
from .job import Job, LaunchError, ResultSyncer, quietly, record_result, start_ticks
from .sdbus import BusError, SystemdBus
from .spool import JobDir

__all__ = ["Supervisor", "detach", "reap_children", "start"]

MAX_REQUEST = 64 * 1024
SIGNALS_TO_RESET = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGCHLD, signal.SIGPIPE, signal.SIGQUIT)
LOCATE_TIMEOUT = 5.0  # seconds a wrapped job (systemd-run) has to appear in its scope
LOCATE_POLL = 0.001


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
    # It is no terminal's process: a SIGHUP meant for melond (`systemctl kill -s HUP` of its
    # unit, whose cgroup holds the local supervisor) must not end every job's watcher.
    signal.signal(signal.SIGHUP, _nothing)
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
        self.ticks = start_ticks(os.getpid())  # with our pid, names us for good (a helper checks we live)
        self.syncer = ResultSyncer()
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
                    try:
                        key.data(key.fileobj)
                    except Exception:  # noqa: BLE001 - logged; the other jobs are still watched
                        self._log(traceback.format_exc())
                try:
                    if self.rescan:
                        self.rescan = False
                        for job in list(self.jobs.values()):
                            self._guard(job, self._step)
                    if self.locating:
                        self._locate()
                    self._run_timers()
                except Exception:  # noqa: BLE001 - logged; a bug must not leave every job unwatched
                    self._log(traceback.format_exc())
        finally:
            self.syncer.close()
            if self.bus is not None:
                self.bus.close()
            cgroup.release_reused()

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
            if error is not None and "OOMPolicy" in error and limits.oom_policy.supported:
                self._log(f"systemd refuses OOMPolicy= for scopes ({error}); jobs' scopes go without it")
                limits.oom_policy.supported = False
                limits.discard_anchor(job.limits)
                self._ask_for_scope(job, job.limits)  # again, as an older systemd takes it
            elif error is not None:
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
            spec = req.get("spec") or jobdir.read_json("spec.json") or {}
            if req["backend"] == DelegatedV2.name:
                delegated.enter(spec.get("scope") or "melon")  # once: the cgroup the jobs' cgroups go in
            elif req["backend"] in (subtree.SubtreeV2.name, subtree.SubtreeV1.name):
                subtree.enter(spec.get("scope") or "melon")
        except (BusError, OSError) as exc:
            source = "the user's systemd manager" if req["backend"] == DelegatedV2.name else "the account's cgroup subtree"
            self._fail_unstarted(jobdir, req["notify"], key, f"cannot get a delegated cgroup from {source}: {exc}")
            return
        try:
            job = Job(jobdir, spec, req["backend"], req["notify"])
        except Exception as exc:  # noqa: BLE001 - a bad spec fails its job, not the node
            self._fail_unstarted(jobdir, req["notify"], key, f"bad job spec: {exc}")
            return
        self.jobs[key] = job
        if isinstance(job.limits, limits.SystemdScope) and self._bus() is not None:
            self._ask_for_scope(job, job.limits)
        else:
            self._launch(job)

    def _ask_for_scope(self, job: Job, scope: limits.SystemdScope) -> None:
        """The scope first, around an anchor of ours; the job is launched into it once systemd
        has put the anchor there (_locate)."""
        try:
            anchor = scope.around_anchor()
        except OSError as exc:
            self._fail(job, f"cannot set up the job's limits: {exc}")
            return
        try:
            self.calls[self.bus.start_scope(f"{scope.unit}.scope", [anchor], scope.properties())] = job
        except (BusError, OSError) as exc:
            self._refuse(job, str(exc))
            self._bus_lost(str(exc))

    def _launch(self, job: Job) -> None:
        """Set up the job's limits and start its process; a failure ends this job alone."""
        if job.dir.exists("cancel"):  # cancelled while its scope was made, or its claim was abandoned
            self._fail(job, "cancelled before it started", reason="cancelled")
            return
        try:
            job.limits.create()
            job.launch()
        except LaunchError as exc:
            self._fail(job, str(exc))
            return
        except OSError as exc:
            self._fail(job, f"cannot set up the job's limits: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a bug met by one job must not end the node's supervisor
            self._log(f"job {job.key}: {traceback.format_exc()}")
            if job.pid:
                quietly(os.killpg, job.pid, signal.SIGKILL)
                quietly(os.waitpid, job.pid, 0)
            self._fail(job, f"the node's job supervisor failed: {exc!r}")
            return
        self._watch(job)
        self.sel.register(job.report_fd, selectors.EVENT_READ, lambda _fd: self._on_report(job))
        if job.limits.wraps:  # systemd-run makes the scope around the job: it starts once seen there
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
            quietly(self.sel.unregister, self.bus)
            self.bus.close()
        self.bus, self.bus_failed = None, why
        for job in list(self.calls.values()):
            self._refuse(job, why)
        self.calls.clear()

    def _refuse(self, job: Job, why: str) -> None:
        """systemd made no scope for the job: it never runs, and fails."""
        self._fail(job, f"systemd did not create the job's scope {job.limits.unit}.scope: {why}")

    def _fail(self, job: Job, error: str, reason: str = "launch_failed") -> None:
        """A job that never ran: its end is recorded and it is forgotten."""
        self._forget(job)
        self._fail_unstarted(job.dir, job.notify, job.key, error, job, reason)

    def _fail_unstarted(self, jobdir: JobDir, notify: str, key: str, error: str, job: Job | None = None,
                        reason: str = "launch_failed") -> None:
        now = time.time()
        record_result(jobdir, {"exit_code": None, "signal": None, "reason": reason, "error": error,
                               "start": now, "end": now, "term_sent": None,
                               "backend": job.limits.name if job else "none"}, self.syncer, self._tell, notify)
        if job is not None:
            quietly(job.limits.destroy)
        self._report(key, {"error": error})

    def _locate(self) -> None:
        for job in list(self.locating):
            wrapped = job.limits.wraps
            found = job.limits.find_scope(job.pid if wrapped else job.limits.anchor)
            if found is None and time.monotonic() < job.locate_until:
                continue
            self.locating.discard(job)
            if wrapped:  # systemd-run's process: it ran (or failed) on its own, its pidfd tells
                job.start = time.time()  # in its scope now: this is when it really starts
                self._guard(job, self._started)
            elif found:
                self._launch(job)
            else:
                self._refuse(job, "systemd did not put the scope's anchor in it in time")

    def _started(self, job: Job) -> None:
        job.reported = True
        job.dir.write_json("started.json", {"pid": job.pid, "ticks": start_ticks(job.pid), "monitor": os.getpid(),
                                            "monitor_ticks": self.ticks, "start": job.start,
                                            "backend": job.limits.name, "boot_id": job.spec.get("boot_id"),
                                            "uid": job.uid, "tmpdir": job.tmpdir})
        self._report(job.key, {"pid": job.pid, "start": job.start})
        self._step(job)  # a cancel or a short limit written before started.json existed

    def _step(self, job: Job) -> None:
        if not job.pid:
            return  # waiting for its scope: its deadline starts, and its flags are read, once it runs
        now = time.time()
        if job.returncode is not None and not job.ended and not job.draining(now):
            self._finish(job, job.returncode)
        delay = job.cleanup() if job.ended else job.step(now)
        if job.ended and delay is None:
            if job.tmpdir:
                self.syncer.remove_tree(job.tmpdir)
            self._forget(job)
        elif delay is not None:
            job.due = time.monotonic() + delay
            heapq.heappush(self.timers, (job.due, next(self.seq), job.key))
        else:
            job.due = None

    def _ended(self, job: Job) -> None:
        status = job.reap()
        if status is None:  # not reapable yet, though its pidfd said it ended: keep watching
            self._watch(job)
            return
        os.close(job.pidfd)
        job.pidfd = -1
        job.read_report()  # it has exited: all it wrote is there to read
        self._close_report(job)
        self._step(job)  # finishes it, unless its steps are still owed the rest of their KillWait

    def _on_report(self, job: Job) -> None:
        if job.read_report():
            self._close_report(job)

    def _close_report(self, job: Job) -> None:
        if job.report_fd >= 0:
            quietly(self.sel.unregister, job.report_fd)
            os.close(job.report_fd)
            job.report_fd = -1

    def _watch(self, job: Job) -> None:
        self.sel.register(job.pidfd, selectors.EVENT_READ, lambda _fd: self._on_exit(job))

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.key, None)
        self.locating.discard(job)
        self._close_report(job)
        job.close_streams()
        if job.pidfd >= 0:
            quietly(self.sel.unregister, job.pidfd)
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
            quietly(job.limits.signal_all, signal.SIGKILL)
            if job.pidfd < 0:  # already reaped: record the end now
                quietly(self._finish, job, job.returncode)
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

    def _finish(self, job: Job, returncode: int | None) -> None:
        record_result(job.dir, job.finish(returncode), self.syncer, self._tell, job.notify)

    def _report(self, key: str, info: dict) -> None:
        self._send({"key": key, **info})

    def _tell(self, key: str, result: dict) -> bool:
        return self._send({"key": key, "result": result})

    def _send(self, message: dict) -> bool:
        """To our helper; False once it is gone (the spool then tells the next one)."""
        if self.sock is None:
            return False
        try:
            self.sock.send(json.dumps(message).encode())
            return True
        except OSError:
            return False

    def _log(self, text: str) -> None:
        try:
            with open(os.path.join(self.spool, "supervisor.log"), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")
        except OSError:
            pass
