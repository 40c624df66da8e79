"""The node helper's service: requests from melond in, replies and job events out.

Standard library only. melond talks to it in checked frames (remote/wire.py)
over the process's stdin and stdout: requests carry ids and get replies;
`exited` events arrive unasked. The helper starts nothing that depends on it:
jobs are started and watched by the supervisor it forked first
(remote/supervisor.py), in a session of its own, so when the channel drops the
helper simply exits and the jobs run on.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable

from . import asks, cgroup, cpuset, delegated, devices, fence, gpus, limits, output, relay, spool, subtree, wire
from .protocol import STEP_TARGET, ErrorCode, Event, KillCause, Op, SignalTo
from .job import TMP_BASE, lookup_user, process_stat, start_ticks
from .supervisor import LOCATE_TIMEOUT, MAX_REQUEST, reap_children

SCAN_INTERVAL = 2.0
START_TIMEOUT = 60.0
# How long a run claimed by no start of ours may still be started by an earlier helper's
# supervisor (which waits up to LOCATE_TIMEOUT for systemd to place a scope) before it is lost.
CLAIM_GRACE = LOCATE_TIMEOUT + 5.0
CLAIM_POLL = 0.2
# Requests acted on at once, with no wait: made within the fence's lock (remote/fence.py), so that
# a newer melond's epoch is recorded before or after the act, never during it. Nothing in them may
# suspend: the lock is a blocking flock, taken in the event loop. (`forget` waits on a thread: it
# is checked as it comes, as reads are; what it forgets is only what its melond recorded as
# ended, which a stale melond cannot record.)
HELD_ACTS = frozenset({Op.SET_LIMIT, Op.SET_LIMITS, Op.KILL, Op.SIGNAL})


class RequestError(Exception):
    """A request the helper refuses; `code` crosses the wire."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def cpu_topology() -> tuple[list[int], list[int]]:
    """The CPUs this helper may run jobs on, in locality order (socket, core, hyperthread), and
    each one's socket: melond pins jobs to CPUs next to each other in this order."""
    found = []
    for cpu in sorted(os.sched_getaffinity(0)):
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as f:
                socket_id = int(f.read())
            with open(base + "core_id") as f:
                core = int(f.read())
        except (OSError, ValueError):  # no topology (some containers): each CPU its own core
            socket_id, core = 0, cpu
        found.append((socket_id, core, cpu))
    found.sort()
    return [cpu for _, _, cpu in found], [socket_id for socket_id, _, _ in found]


def probe(spool_dir: str, limits_wanted: str = "auto") -> dict:
    """What melond needs to know about this node to place and enforce jobs."""
    backend, why = limits.detect(limits_wanted)
    cpu_ids, cpu_sockets = cpu_topology()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    mem_total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) // 1024
                    break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "boot_id": boot_id,
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_ids": cpu_ids,
        "cpu_sockets": cpu_sockets,
        "cpuset": cpuset.enforced(backend),  # jobs' CPUs enforced by a cpuset, not only their affinity
        "devices": devices.isolation(backend),  # how jobs' devices are enforced; "": they are not
        "gpus": gpus.detect(),  # what nvidia-smi reports, for an inventory that lists no GPUs
        "memory": mem_total,
        "python": platform.python_version(),
        "backend": backend,
        "backend_reason": why,
        "systemd": os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") is not None,
        "uid": os.geteuid(),
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "delegation": None if os.geteuid() == 0 else _delegation(pwd.getpwuid(os.geteuid()).pw_name),
        "spool": spool_dir,
        "pid": os.getpid(),
        "time": time.time(),
    }


def _delegation(user: str) -> dict:
    """What this node offers an account that is not root, for melond's setup text."""
    return {**delegated.facts(os.geteuid(), user), "subtree": subtree.facts(user)}


def spool_scope(spool_dir: str) -> str:
    """A short name for this spool: it names the job cgroups and the abstract-namespace
    datagram address where the supervisor says "this job finished", so two melonds on one machine never meet."""
    return hashlib.sha1(os.path.realpath(spool_dir).encode()).hexdigest()[:12]


class Helper:
    """Dispatches requests by name and reports job ends."""

    def __init__(self, spool_dir: str, out: asyncio.WriteTransport, supervisor: socket.socket,
                 supervisor_pid: int, limits_wanted: str = "auto") -> None:
        self.spool = spool_dir
        self.outbox = wire.Outbox(out.write)
        self.supervisor = supervisor
        self.supervisor_pid = supervisor_pid
        self.on_supervisor_lost: Callable[[], None] | None = None
        self.starting: dict[str, asyncio.Future] = {}  # by run key
        self.info = probe(spool_dir, limits_wanted)
        self.backend = self.info["backend"]
        self.scope = spool_scope(spool_dir)
        self.notify = "\0melon-" + self.scope
        self.watching: set[str] = set()  # run keys whose end is still to be reported
        self.ops = {
            Op.PING: self.op_ping,
            Op.START: self.op_start,
            Op.SET_LIMIT: self.op_set_limit,
            Op.SET_LIMITS: self.op_set_limits,
            Op.KILL: self.op_kill,
            Op.SIGNAL: self.op_signal,
            Op.LIST: self.op_list,
            Op.FORGET: self.op_forget,
            Op.ANSWER: self.op_answer,
            Op.READ_OUTPUT: self.op_read_output,
            Op.GPU_USAGE: self.op_gpu_usage,
            Op.LAUNCH: self.op_launch,
            Op.FEED: self.op_feed,
            Op.RELAY: self.op_relay,
        }
        self.channel = asks.JobChannel(spool_dir, self.scope, self.send)
        self.fence = fence.Fence(spool_dir)

    def send(self, message: dict) -> None:
        self.outbox.put(message)

    async def handle(self, message: dict) -> None:
        rid = message.get("id")
        op = self.ops.get(message.get("op", ""))
        try:
            if op is None:
                raise RequestError(ErrorCode.BAD_REQUEST, f"unknown operation {message.get('op')!r}")
            with self.fence.admit(int(message.get("epoch") or 0)):
                if message["op"] in HELD_ACTS:  # done at once: within the fence's lock
                    result = await op(message)
            if message["op"] not in HELD_ACTS:  # ...the others wait (a start claims its run within it)
                result = await op(message)
            self.send({"id": rid, "ok": True, "result": result})
        except fence.Stale as exc:
            self.send({"id": rid, "ok": False, "error": {"code": ErrorCode.STALE_EPOCH, "message": str(exc)}})
        except RequestError as exc:
            self.send({"id": rid, "ok": False, "error": {"code": exc.code, "message": str(exc)}})
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the channel
            self.send({"id": rid, "ok": False, "error": {"code": ErrorCode.INTERNAL, "message": f"{type(exc).__name__}: {exc}"}})

    async def op_answer(self, msg: dict) -> dict:
        """melond's answer to a job's ask: back to the job's process that waits for it."""
        self.channel.answer(int(msg["ask"]), msg["reply"])
        return {}

    async def op_relay(self, msg: dict) -> dict:
        """A line of a streamed answer, for the job's process that waits for it."""
        self.channel.relay(int(msg["ask"]), msg["message"])
        return {}

    async def op_launch(self, msg: dict) -> dict:
        """srun's tasks on this further node of a job, started by the job's holder here."""
        d = self._existing(msg)
        if d.exists("result.json"):
            raise RequestError(ErrorCode.NO_SUCH_JOB, f"job {d.key}'s part on this node has ended")
        try:
            await relay.launch(self.scope, msg, self.send)
        except OSError as exc:
            raise RequestError(ErrorCode.LAUNCH_FAILED, str(exc)) from None
        return {}

    async def op_feed(self, msg: dict) -> dict:
        """A terminal's input, or its hangup, for a task the job's holder started here on one."""
        if msg.get("hangup"):
            await relay.hang_up(msg)
            return {}
        if not await relay.feed(msg):
            raise RequestError(ErrorCode.NO_SUCH_JOB, f"job {msg.get('job_id')} has no terminal open for step "
                                                      f"{msg.get('step')} on this node")
        return {}

    async def op_read_output(self, msg: dict) -> dict:
        """Part of a job's output file, read in a thread (a slow disk must not hold up starts)."""
        try:
            path, uid = str(msg["path"]), int(msg["uid"])
            offset, limit = int(msg.get("offset", -1)), int(msg.get("limit", output.MAX_READ))
        except (KeyError, TypeError, ValueError):
            raise RequestError(ErrorCode.BAD_REQUEST, "read_output needs path, uid, offset and limit") from None
        if os.geteuid() != 0:  # the job ran as this helper's account (whose uid here melond may not know)
            ids = (os.geteuid(), os.getegid(), [])
        else:  # the job ran as its user by name on this node: opened with that user's ids here
            found = lookup_user(str(msg["user"])) if msg.get("user") else None
            if found is None:
                raise RequestError(ErrorCode.NO_OUTPUT, f"the job's user {msg.get('user')!r} does not exist on this "
                                                        f"node, so its output cannot be read as them")
            ids = (found[0], found[1], found[2])
        try:
            return await asyncio.get_running_loop().run_in_executor(None, output.read, path, ids, offset, limit)
        except output.Unreadable as exc:
            raise RequestError(ErrorCode.NO_OUTPUT, str(exc)) from None

    async def op_gpu_usage(self, msg: dict) -> dict:
        """The GPUs' use now, asked of nvidia-smi in a thread (a hung driver must not hold up starts)."""
        return {"gpus": await asyncio.to_thread(gpus.usage)}

    async def op_ping(self, msg: dict) -> dict:
        return {"time": time.time()}

    async def op_start(self, msg: dict) -> dict:
        """Start a job's run once: a second start of the same run reports the first one. Its run
        is claimed within the fence (remote/fence.py): a newer melond's listing shows the claim, or
        the start is refused; what is claimed is launched."""
        job = msg["job"]
        key = spool.run_key(job["id"], job.get("run", 0))
        d = spool.JobDir(self.spool, key)
        with self.fence.admit(int(msg.get("epoch") or 0)):
            claimed = d.claim()
        if not claimed:
            status = self._status(d)
            if status["state"] == "claimed" and key not in self.starting:
                status = await self._settle(d)
            if status["state"] == "running":
                self.watching.add(key)  # its end is ours to report
            return {"already": True, **status}
        if lookup_user(job["user"]) is None:
            d.remove()
            raise RequestError(ErrorCode.NO_SUCH_USER, f"user {job['user']!r} does not exist on node {self.info['hostname']}")
        job = {**job, "key": key, "boot_id": self.info["boot_id"], "scope": self.scope}
        req = {"op": "start", "key": key, "spool": self.spool, "backend": self.backend, "notify": self.notify}
        data = json.dumps({**req, "spec": job}).encode()
        if len(data) > MAX_REQUEST:  # a large script or environment: one file, readable by root only
            d.write_json("spec.json", job)
            data = json.dumps(req).encode()
        self.watching.add(key)  # before the job runs: a quick job's end must find it watched
        fut = asyncio.get_running_loop().create_future()
        self.starting[key] = fut
        try:
            self.supervisor.send(data)
            report = await asyncio.wait_for(fut, START_TIMEOUT)
        except (OSError, TimeoutError):
            raise RequestError(ErrorCode.LAUNCH_FAILED, f"job {key}: the node's supervisor did not start it") from None
        finally:
            self.starting.pop(key, None)
        if "error" in report:
            self.check(key)
        return {"already": False, **report}

    async def _settle(self, d: spool.JobDir) -> dict:
        """A run claimed, but not by a start of ours: an earlier supervisor may still start it, or
        it was killed between the claim and the start. Past the grace the claim is abandoned: its
        cancel flag keeps a late supervisor from starting it, and the run is lost."""
        deadline = time.monotonic() + CLAIM_GRACE
        while time.monotonic() < deadline:
            await asyncio.sleep(CLAIM_POLL)
            status = self._status(d)
            if status["state"] != "claimed":
                return status
        d.write_bytes("cancel", b"1")
        status = self._status(d)  # started in the meantime: then it is killed as cancelled
        if status["state"] != "claimed":
            return status
        return {"state": "lost", "error": f"job {d.key}: the node's supervisor died before starting it"}

    def supervisor_readable(self) -> None:
        """Every report waiting: a start, {"key", "pid", "start"} or {"key", "error"}, or an end,
        {"key", "result"}."""
        while True:
            try:
                data = self.supervisor.recv(MAX_REQUEST)
            except BlockingIOError:
                return
            if not data:
                # Without a supervisor no job can start: leave, so that melond reconnects and a new
                # helper brings a new supervisor.
                asyncio.get_running_loop().remove_reader(self.supervisor.fileno())
                sys.stderr.write("melon helper: the job supervisor exited; leaving so that melond reconnects\n")
                if self.on_supervisor_lost is not None:
                    self.on_supervisor_lost()
                return
            report = json.loads(data)
            key = report.pop("key")
            if "result" in report:
                self.ended(key, report["result"])
                continue
            fut = self.starting.get(key)
            if fut is not None and not fut.done():
                fut.set_result(report)

    async def op_set_limit(self, msg: dict) -> dict:
        d = self._existing(msg)
        d.write_bytes("limit", str(int(msg["limit"])).encode())
        return {"ended": d.exists("result.json"), "woke": self._wake(d)}

    async def op_set_limits(self, msg: dict) -> dict:
        """Every running job's limit at once (melond's reconnect): one request per node, not one a job.
        A run not in the spool is reported, not refused, so the others still take effect."""
        results = []
        for job_id, run, limit in msg["limits"]:
            try:
                results.append(await self.op_set_limit({"job_id": job_id, "run": run, "limit": limit}))
            except RequestError as exc:
                results.append({"error": {"code": exc.code, "message": str(exc)}})
        return {"results": results}

    async def op_kill(self, msg: dict) -> dict:
        d = self._existing(msg)
        if not d.exists("cancel"):  # a kill repeated keeps its first cause
            cause = msg.get("cause")
            d.write_bytes("cancel", str(cause if cause in set(KillCause) else KillCause.CANCEL).encode())
        return {"ended": d.exists("result.json"), "woke": self._wake(d)}

    async def op_signal(self, msg: dict) -> dict:
        """Queue a signal for the job's supervisor to send to the processes `to` names (SignalTo)."""
        sig = msg.get("signal")
        if isinstance(sig, str):  # a name: this node's own number for it
            try:
                sig = int(signal.Signals[f"SIG{sig}"])
            except KeyError:
                raise RequestError(ErrorCode.BAD_REQUEST, f"this node has no signal SIG{sig}") from None
        if not isinstance(sig, int) or not 0 < sig < signal.NSIG:
            raise RequestError(ErrorCode.BAD_REQUEST, f"signal {sig!r} is not a signal number")
        d = self._existing(msg)
        if d.exists("result.json"):
            return {"ended": True, "woke": False}
        to = msg.get("to") or SignalTo.ALL
        one_step = isinstance(to, str) and to.startswith(STEP_TARGET) and to[len(STEP_TARGET):].isdigit()
        if to not in set(SignalTo) and not one_step:
            raise RequestError(ErrorCode.BAD_REQUEST, f"signal target {to!r} is not one of {', '.join(SignalTo)} "
                                                      f"or {STEP_TARGET}N")
        d.append_line("signals", str(sig) if to == SignalTo.ALL else f"{sig}:{to}")
        return {"ended": False, "woke": self._wake(d)}

    async def op_list(self, msg: dict) -> dict:
        jobs = []
        for key in spool.run_keys(self.spool):
            d = spool.JobDir(self.spool, key)
            status = self._status(d)
            if status["state"] == "running":
                self.watching.add(key)
            jid, run = spool.parse_key(key)
            jobs.append({"id": jid, "run": run, **status})
        return {"jobs": jobs}

    async def op_forget(self, msg: dict) -> dict:
        """Drop ended jobs from the spool. The deleting runs in a thread (the helper no longer
        forks, the supervisor does), so starts queued behind a large batch are not held up."""
        gone: list[spool.JobDir] = []
        for jid, run in msg.get("runs", []):
            d = spool.JobDir(self.spool, spool.run_key(jid, run))
            if d.exists("result.json") or not os.path.exists(d.root) or self._status(d)["state"] == "lost":
                self.watching.discard(d.key)
                gone.append(d)
        await asyncio.get_running_loop().run_in_executor(None, _remove_all, gone)
        return {"forgotten": [list(spool.parse_key(d.key)) for d in gone]}

    def _existing(self, msg: dict) -> spool.JobDir:
        d = spool.JobDir(self.spool, spool.run_key(msg["job_id"], msg.get("run", 0)))
        if not os.path.isdir(d.root):
            raise RequestError(ErrorCode.NO_SUCH_JOB, f"job {d.key} is not on this node")
        return d

    def _wake(self, d: spool.JobDir) -> bool:
        """Have the job's supervisor re-read its flags: ours by its socket, an earlier helper's
        (still watching the jobs it started) by SIGUSR1, which makes it re-read every job's."""
        started = d.read_json("started.json")
        if not started:
            return False  # the supervisor reads the flags once it has started the job anyway
        if started["monitor"] == self.supervisor_pid:
            try:
                self.supervisor.send(json.dumps({"op": "wake", "key": d.key}).encode())
                return True
            except OSError:
                return False
        try:
            os.kill(started["monitor"], signal.SIGUSR1)
            return True
        except ProcessLookupError:
            return False

    def _status(self, d: spool.JobDir) -> dict:
        result = d.read_json("result.json")
        if result is not None:
            return {"state": "ended", "result": result}
        started = d.read_json("started.json")
        if started is None:
            return {"state": "claimed"}
        if started.get("boot_id", self.info["boot_id"]) != self.info["boot_id"]:
            return {"state": "lost", "started": started}  # the node rebooted: nothing of it is left
        if not _alive(started["monitor"], started.get("monitor_ticks")):
            return {"state": "ended", "result": self._fence(d, started)}
        return {"state": "running", "started": started}

    def _fence(self, d: spool.JobDir, started: dict) -> dict:
        """A run whose supervisor died: nobody watches it, and its exit status is lost with its
        parent. What is left of it is killed (so that it never runs beside its requeued next run,
        nor holds CPUs melond gives to others) and its end is recorded as lost, once."""
        pid = started.get("pid")
        # Its own session: its pid is its process group. Signalled while that pid is still the job
        # (its start time), or no longer any process (a pid stays unused while a group bears it).
        if pid and (start_ticks(pid) == started.get("ticks", -1) or not _alive(pid)):
            _kill_group(pid)
        limits.fence(started.get("backend", "none"), self.scope, d.key)
        if not _alive(started["monitor"]):  # gone, not reused: its group holds its idle scope anchors
            _kill_group(started["monitor"])
        tmpdir = started.get("tmpdir") or ""
        if os.path.dirname(tmpdir) == TMP_BASE and os.path.basename(tmpdir).startswith(f"melon-{d.key}-"):
            shutil.rmtree(tmpdir, ignore_errors=True)  # by descriptors: a link left inside leads nowhere else
        result = {"exit_code": None, "signal": None, "reason": "lost", "start": started.get("start"),
                  "end": time.time(), "term_sent": None, "backend": started.get("backend"),
                  "error": "the node's job supervisor died while the job ran; what was left of it was killed"}
        d.write_json("result.json", result)
        return result

    def check(self, key: str) -> None:
        """Report the run's end if it has one: its result, or its supervisor's death (_fence)."""
        if key in self.watching:
            status = self._status(spool.JobDir(self.spool, key))
            if status["state"] == "ended":
                self.ended(key, status["result"])

    def ended(self, key: str, result: dict) -> None:
        """Tell melond, once, how the run ended."""
        if key in self.watching:
            self.watching.discard(key)
            jid, run = spool.parse_key(key)
            self.send({"event": Event.EXITED, "job_id": jid, "run": run, "result": result})

    async def scan_forever(self) -> None:
        """Belt and braces for a lost wake-up datagram; and how the death of an earlier helper's
        supervisor, whose runs we watch, comes to light."""
        while True:
            await asyncio.sleep(SCAN_INTERVAL)
            for key in list(self.watching):
                self.check(key)


def _remove_all(dirs: list[spool.JobDir]) -> None:
    for d in dirs:
        d.remove()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _alive(pid: int, ticks: int | None = None) -> bool:
    """Whether the process lives (a zombie does not); given its start time, whether it is still
    that process (pids are reused: soon, in a restarted container's fresh pid namespace)."""
    stat = process_stat(pid)
    if stat is None:  # gone, or hidden from us by /proc: the kernel tells
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    state, started = stat
    return state != "Z" and (ticks is None or started == ticks)


class _Inbound(asyncio.Protocol):
    def __init__(self, helper_ready: asyncio.Future, closed: asyncio.Future) -> None:
        self.decoder = wire.Decoder()
        self.helper_ready = helper_ready
        self.closed = closed
        self.handling: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def data_received(self, data: bytes) -> None:
        helper: Helper = self.helper_ready.result()
        try:
            messages = self.decoder.feed(data)
        except wire.FrameError as exc:
            sys.stderr.write(f"melon helper: {exc}\n")
            self.closed.set_result(None)
            return
        for m in messages:
            task = asyncio.ensure_future(helper.handle(m))
            self.handling.add(task)
            task.add_done_callback(self.handling.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Notify(asyncio.DatagramProtocol):
    def __init__(self, helper: Helper) -> None:
        self.helper = helper

    def datagram_received(self, data: bytes, addr: object) -> None:
        key = data.decode("ascii", "replace")
        if spool.parse_key(key) is not None:
            self.helper.check(key)


async def serve(spool_dir: str, supervisor: socket.socket, supervisor_pid: int, limits_wanted: str = "auto") -> None:
    """Run until melond closes our stdin."""
    loop = asyncio.get_running_loop()
    spool.prepare(spool_dir)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", buffering=0, closefd=False))
    helper = Helper(spool_dir, out, supervisor, supervisor_pid, limits_wanted)
    helper.send({"event": Event.HELLO, "info": helper.info})  # the first frame, before any request is read
    supervisor.setblocking(False)
    loop.add_reader(supervisor.fileno(), helper.supervisor_readable)
    ready: asyncio.Future = loop.create_future()
    ready.set_result(helper)
    closed: asyncio.Future = loop.create_future()
    helper.on_supervisor_lost = lambda: closed.done() or closed.set_result(None)
    await loop.connect_read_pipe(lambda: _Inbound(ready, closed), os.fdopen(0, "rb", buffering=0, closefd=False))
    if await helper.channel.start() is None:
        sys.stderr.write("melon helper: the job channel's address is busy; jobs cannot ask melond from here\n")
    sock = await _bind_notify(helper.notify)
    if sock is not None:
        await loop.create_datagram_endpoint(lambda: _Notify(helper), sock=sock)
    loop.add_signal_handler(signal.SIGCHLD, reap_children)  # the supervisor, should it die
    scanner = asyncio.ensure_future(helper.scan_forever())
    await closed
    helper.outbox.flush()
    scanner.cancel()
    cgroup.release_scope(os.path.join(cgroup.TREE, helper.scope))


async def _bind_notify(address: str) -> socket.socket | None:
    """A helper that just lost its channel may still hold the address for a moment."""
    for _ in range(40):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
            return sock
        except OSError:
            sock.close()
            await asyncio.sleep(0.05)
    sys.stderr.write("melon helper: notify address busy; falling back to scanning the spool\n")
    return None


def run(spool_dir: str, supervisor: socket.socket, supervisor_pid: int, limits_wanted: str = "auto") -> None:
    asyncio.run(serve(spool_dir, supervisor, supervisor_pid, limits_wanted))
