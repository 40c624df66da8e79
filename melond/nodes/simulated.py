"""A simulated node behind the same seam as the local pipe and SSH: its channel speaks the
helper's protocol (the bootstrap, hello, start, kill, limits, signals, list, forget, events) for
jobs that are a duration, an exit code, CPU time and memory, with no processes. melond's
sessions, store, scheduler and API run for real on top, so a thousand nodes fit on one machine,
and the end, requeue, fencing and reconcile rules can be tested without processes.

A job's script says what it does, as a real one would: its first `sleep N` is how long it runs
(none: it ends at once), its first `exit N` its exit code (0 without one). A machine (`SimMachine`) outlives its
connections, as a node outlives melond's sessions: its runs go on while the channel is down and
are reported at the next reconnect; `reboot()` loses them, as a real boot does.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field

from melon_remote import bootstrap, wire
from melon_remote.protocol import ErrorCode, Event, Op

SLEEP = re.compile(r"^\s*(?:exec\s+)?sleep\s+(\d+(?:\.\d+)?)\s*$", re.MULTILINE)
EXIT = re.compile(r"^\s*exit\s+(\d+)\s*$", re.MULTILINE)
TIMEOUT_GRACE = 0.0  # a simulated job dies at its limit's SIGTERM (a real one may take kill_wait)
SIM_MEMORY_PER_CPU = 4096  # MiB, where the inventory gives a simulated node no memory


@dataclass
class SimRun:
    """One run of a job on a simulated node."""

    job_id: int
    run: int
    start: float
    duration: float
    exit_code: int
    cpus: int
    limit: int  # seconds, 0: none
    result: dict | None = None
    signals: list = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def status(self) -> dict:
        if self.result is not None:
            return {"state": "ended", "result": self.result}
        return {"state": "running", "started": {"pid": 0, "start": self.start}}


def behaviour(script: str) -> tuple[float, int]:
    """How long a script runs and what it exits with, read off its text."""
    sleep, code = SLEEP.search(script or ""), EXIT.search(script or "")
    return (float(sleep.group(1)) if sleep else 0.0), (int(code.group(1)) if code else 0)


class SimMachine:
    """A simulated node: its size, its boot, and the runs it holds across connections."""

    def __init__(self, name: str, cpus: int, memory: int) -> None:
        self.name, self.cpus, self.memory = name, cpus, memory
        self.boot_id = uuid.uuid4().hex
        self.runs: dict[tuple[int, int], SimRun] = {}
        self.helper: SimHelper | None = None  # the connected helper, which reports ends
        self.hung = False  # answering nothing, as a hung node behind a live connection

    def info(self, spool: str) -> dict:
        """What a real helper's probe says of its node (remote/service.py probe)."""
        return {"hostname": self.name, "boot_id": self.boot_id, "cpus": self.cpus, "cpu_ids": [],
                "cpu_sockets": [], "cpuset": False, "devices": "", "gpus": [], "memory": self.memory,
                "python": "simulated", "backend": "none", "backend_reason": "a simulated node", "systemd": False,
                "uid": 0, "user": "root", "delegation": None, "spool": spool, "pid": 0, "time": time.time()}

    def reboot(self) -> None:
        """Everything running is lost, as on a real boot: the next connection's list says so."""
        self.boot_id = uuid.uuid4().hex
        for run in self.runs.values():
            if run.timer is not None:
                run.timer.cancel()
            if run.result is None:
                run.result = {"exit_code": None, "signal": None, "reason": "lost", "start": run.start,
                              "end": time.time(), "term_sent": None, "backend": "none",
                              "error": "the node rebooted while the job ran"}
        if self.helper is not None:
            self.helper.channel.close()

    def hang(self) -> None:
        """It stops answering, its connection left open (a hung node, a stopped helper): requests
        get no reply, ends go unreported (the next connection's list has them), and a new
        connection gets no hello. Its runs go on."""
        self.hung = True

    def wake(self) -> None:
        """It answers again, from the next connection on."""
        self.hung = False

    def start(self, job: dict) -> SimRun:
        duration, code = behaviour(job.get("script", ""))
        run = SimRun(job["id"], job.get("run", 0), time.time(), duration, code, int(job.get("cpus") or 1),
                     int(job.get("limit") or 0))
        self.runs[(run.job_id, run.run)] = run
        self._schedule(run)
        return run

    def _schedule(self, run: SimRun) -> None:
        """Its end: the script's own, or its limit's, whichever comes first."""
        if run.timer is not None:
            run.timer.cancel()
        ends = run.start + run.duration
        timeout = bool(run.limit) and run.start + run.limit + TIMEOUT_GRACE < ends
        at = run.start + run.limit if timeout else ends
        run.timer = asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + max(at - time.time(), 0.0), self.end, run,
            "timeout" if timeout else "exited")

    def set_limit(self, run: SimRun, limit: int) -> None:
        run.limit = limit
        if run.result is None:
            self._schedule(run)

    def end(self, run: SimRun, reason: str, signal: int | None = None) -> None:
        """The run's end, reported to melond if a helper is connected (else at the next list)."""
        if run.result is not None:
            return
        if run.timer is not None:
            run.timer.cancel()
        now = time.time()
        exited = reason == "exited"
        run.result = {"exit_code": run.exit_code if exited else None,
                      "signal": None if exited else (signal or 15), "reason": reason, "error": None,
                      "start": run.start, "end": now, "term_sent": None if exited else now, "backend": "none",
                      "cpu_time": round(run.cpus * (now - run.start), 3), "max_rss": 1 << 20}
        if self.helper is not None:
            self.helper.exited(run)


class SimWriter:
    """The channel's write side: bytes to the simulated helper."""

    def __init__(self, helper: SimHelper) -> None:
        self.helper = helper
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.helper.feed(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class SimChannel:
    """What a transport's open() gives a session: the helper's stdout and stdin."""

    def __init__(self, machine: SimMachine, spool: str) -> None:
        self.reader = asyncio.StreamReader(limit=1 << 20)
        self.helper = SimHelper(machine, spool, self)
        self.writer = SimWriter(self.helper)
        if not machine.hung:
            self.reader.feed_data(bootstrap.READY)

    async def stderr_lines(self) -> list[str]:
        return []

    def close(self) -> None:
        if not self.writer.closed:
            self.writer.close()
            self.reader.feed_eof()
            self.helper.gone()


class SimHelper:
    """The helper's protocol over a simulated machine: the bootstrap payload is read and dropped,
    then each request frame gets its reply frame, as remote/service.py gives them."""

    def __init__(self, machine: SimMachine, spool: str, channel: SimChannel) -> None:
        self.machine, self.spool, self.channel = machine, spool, channel
        self.decoder = wire.Decoder()
        self.boot = b""  # the payload's length line and body, until whole
        self.booted = False
        self.outbox = wire.Outbox(self._write)
        self.watching: set[tuple[int, int]] = set()  # runs whose end is still to be reported

    def _write(self, data: bytes) -> None:
        if not self.channel.writer.closed:
            self.channel.reader.feed_data(data)

    def feed(self, data: bytes) -> None:
        if self.machine.hung:
            return
        if not self.booted:
            self.boot += data
            head, sep, rest = self.boot.partition(b"\n")
            if not sep or len(rest) < int(head):
                return
            self.booted, data = True, rest[int(head):]
            if self.machine.helper is not None:  # an earlier connection's helper leaves
                self.machine.helper.channel.close()
            self.machine.helper = self
            self.outbox.put({"event": Event.HELLO, "info": self.machine.info(self.spool)})
        for msg in self.decoder.feed(data):
            self.outbox.put(self.answer(msg))

    def gone(self) -> None:
        if self.machine.helper is self:
            self.machine.helper = None

    def exited(self, run: SimRun) -> None:
        key = (run.job_id, run.run)
        if key in self.watching and not self.machine.hung:
            self.watching.discard(key)
            self.outbox.put({"event": Event.EXITED, "job_id": run.job_id, "run": run.run, "result": run.result})

    def answer(self, msg: dict) -> dict:
        try:
            return {"id": msg["id"], "ok": True, "result": self.handle(Op(msg["op"]), msg)}
        except LookupError as exc:
            return {"id": msg.get("id"), "ok": False, "error": {"code": ErrorCode.NO_SUCH_JOB, "message": str(exc)}}
        except ValueError as exc:
            return {"id": msg.get("id"), "ok": False, "error": {"code": ErrorCode.BAD_REQUEST, "message": str(exc)}}

    def _run(self, msg: dict) -> SimRun:
        run = self.machine.runs.get((msg["job_id"], msg.get("run", 0)))
        if run is None:
            raise LookupError(f"job {msg['job_id']}.{msg.get('run', 0)} is not on this node")
        return run

    def handle(self, op: Op, msg: dict) -> dict:
        m = self.machine
        if op is Op.PING:
            return {"time": time.time()}
        if op is Op.START:
            job = msg["job"]
            key = (job["id"], job.get("run", 0))
            if key in m.runs:
                self.watching.add(key)
                return {"already": True, **m.runs[key].status()}
            self.watching.add(key)
            run = m.start(job)
            return {"already": False, "pid": 0, "start": run.start}
        if op is Op.SET_LIMIT:
            run = self._run(msg)
            m.set_limit(run, int(msg["limit"]))
            return {"ended": run.result is not None, "woke": run.result is None}
        if op is Op.SET_LIMITS:
            results = []
            for job_id, number, limit in msg["limits"]:
                try:
                    results.append(self.handle(Op.SET_LIMIT, {"job_id": job_id, "run": number, "limit": limit}))
                except LookupError as exc:
                    results.append({"error": {"code": ErrorCode.NO_SUCH_JOB, "message": str(exc)}})
            return {"results": results}
        if op is Op.KILL:  # its end comes after the reply, as a real supervisor's does
            run = self._run(msg)
            if run.result is None:
                asyncio.get_running_loop().call_soon(m.end, run, "cancelled", 15)
            return {"ended": run.result is not None, "woke": run.result is None}
        if op is Op.SIGNAL:
            run = self._run(msg)
            run.signals.append((msg.get("signal"), msg.get("to")))
            return {"ended": run.result is not None, "woke": run.result is None}
        if op is Op.LIST:
            jobs = []
            for (job_id, number), run in m.runs.items():
                if run.result is None:
                    self.watching.add((job_id, number))
                jobs.append({"id": job_id, "run": number, **run.status()})
            return {"jobs": jobs}
        if op is Op.FORGET:
            gone = [[j, r] for j, r in msg.get("runs", []) if (j, r) in m.runs and m.runs[(j, r)].result is not None]
            for j, r in gone:
                del m.runs[(j, r)]
                self.watching.discard((j, r))
            return {"forgotten": gone}
        if op is Op.READ_OUTPUT:
            return {"text": "", "offset": 0, "size": 0}
        if op is Op.GPU_USAGE:
            return {"gpus": []}
        raise ValueError(f"a simulated node does not do {op.value!r}")


MACHINES: dict[str, SimMachine] = {}  # this process' simulated machines: they outlive melond's sessions


def machine(name: str, cpus: int, memory: int) -> SimMachine:
    """The simulated machine of this name, made at its first use."""
    if name not in MACHINES:
        MACHINES[name] = SimMachine(name, cpus, memory)
    return MACHINES[name]


class SimTransport:
    """Opens channels to one simulated machine."""

    def __init__(self, machine: SimMachine) -> None:
        self.machine = machine

    async def open(self, spool: str, limits: str = "auto") -> SimChannel:
        return SimChannel(self.machine, spool)
