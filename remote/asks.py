"""The job channel: what a running job asks of melond from its own node, without a token or a
network path to the login node: to extend itself, or to go back to the queue (`scontrol requeue`
run by PyTorch Lightning or submitit inside the job they checkpointed).

The helper listens on an abstract-namespace Unix socket named for its spool, given to every job
as MELON_NODE_SOCKET (`@melon-jobs-<scope>`). A request is one JSON line, the answer one JSON
line. Who asks is what the kernel says of the connecting process (SO_PEERCRED): it must belong to
a running job of this spool (the job's cgroup, else its session, else its ancestry) and run as
that job's user, and it may only act on that job. melond hears the ask over the node's channel
and applies its policy as it would for the owner on the login node.

    {"op": "extend", "add": 3600}      or   {"op": "extend", "to": 7200}      or   {"op": "requeue"}
    -> {"ok": true, "job_id": 12, "new_limit": 10800, ...}   or   {"ok": false, "error": {"code", "message"}}
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import struct

from . import spool
from .job import process_stat
from .protocol import Event, job_channel

ANSWER_TIMEOUT = 30.0  # seconds melond has to answer an ask
READ_TIMEOUT = 10.0
STARTING_GRACE = 3.0  # seconds an unknown asker may be a job whose start is still being recorded
MAX_LINE = 1 << 20  # srun's launch of tasks on further nodes carries its environment
STREAMED = ("step_launch", "step_pty")  # asks answered by a stream of lines (Op.RELAY) before their answer
FED = ("step_pty",)  # streamed asks whose asker goes on writing: each line goes to melond as Event.ASK_INPUT
MAX_INPUT = 1 << 20  # one line of what the user typed


def address(scope: str) -> str:
    return "\0" + job_channel(scope)


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, as the kernel recorded them at connect."""
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def _cgroups(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        return []


def _session_and_parent(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[3]), int(fields[1])  # session (field 6), parent (field 4)
    except (OSError, IndexError, ValueError):
        return None


def job_of(spool_dir: str, scope: str, pid: int) -> tuple[str, dict] | None:
    """The running run (its key and started.json) that process `pid` belongs to, or None."""
    running = {}
    for key in spool.run_keys(spool_dir):
        d = spool.JobDir(spool_dir, key)
        started = d.read_json("started.json")
        if started and not d.exists("result.json"):
            stat = process_stat(started["pid"])
            if stat is not None and stat[1] == started.get("ticks"):  # that process still, not a reused pid
                running[key] = started
    if not running:
        return None
    groups = _cgroups(pid)
    for key, started in running.items():
        marks = (f"/melon/{scope}/job-{key}", f"/melon-job-{key}.scope")
        if any(path.endswith(mark) or (mark + "/") in path for path in groups for mark in marks):
            return key, started
    leaders = {started["pid"]: key for key, started in running.items()}
    seen, current = set(), pid
    while current > 1 and current not in seen:  # its session, else an ancestor, is a job's leader
        seen.add(current)
        if current in leaders:
            return leaders[current], running[leaders[current]]
        stat = _session_and_parent(current)
        if stat is None:
            return None
        session, parent = stat
        if session in leaders:
            return leaders[session], running[leaders[session]]
        current = parent
    return None


def _starting(spool_dir: str) -> bool:
    """Is some run claimed but not yet recorded as started?"""
    return any(not spool.JobDir(spool_dir, key).exists("started.json") and
               not spool.JobDir(spool_dir, key).exists("result.json") for key in spool.run_keys(spool_dir))


class JobChannel:
    """Serves the asks; `send` is the helper's way to melond, `answer` its way back."""

    def __init__(self, spool_dir: str, scope: str, send) -> None:
        self.spool, self.scope, self.send = spool_dir, scope, send
        self.waiting: dict[int, asyncio.Future] = {}
        self.streams: dict[int, asyncio.StreamWriter] = {}  # streamed asks' waiting processes
        self.next_ask = 1

    async def start(self) -> asyncio.AbstractServer | None:
        for _ in range(40):  # a helper that just lost its channel may hold the address a moment
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address(self.scope))
                sock.listen(64)
                return await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_LINE)
            except OSError:
                sock.close()
                await asyncio.sleep(0.05)
        return None

    def relay(self, ask: int, message: dict) -> None:
        writer = self.streams.get(ask)
        if writer is not None and not writer.is_closing():
            writer.write(json.dumps(message).encode() + b"\n")

    def answer(self, ask: int, reply: dict) -> None:
        fut = self.waiting.pop(ask, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._ask(reader, writer)
        except Exception as exc:  # noqa: BLE001 - one bad client must not end the helper
            reply = _refused("internal", f"{type(exc).__name__}: {exc}")
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()
        except OSError:
            pass

    async def _ask(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict:
        pid, uid = peer(writer.get_extra_info("socket"))
        found = job_of(self.spool, self.scope, pid)
        deadline = asyncio.get_running_loop().time() + STARTING_GRACE
        while found is None and _starting(self.spool) and asyncio.get_running_loop().time() < deadline:
            # A job runs a moment before its supervisor records it (started.json): one that asks at
            # once may be that job.
            await asyncio.sleep(0.05)
            found = job_of(self.spool, self.scope, pid)
        if found is None:
            return _refused("not_a_job", "only a process of a job running on this node may use this socket "
                                         "(it asks melond on behalf of that job)")
        key, started = found
        if uid not in (started.get("uid"), 0):
            return _refused("forbidden", "the asking process does not run as the job's user")
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            request = json.loads(line)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError):
            return _refused("bad_request", 'send one JSON line, e.g. {"op": "extend", "add": 3600}')
        problem = _check(request)
        if problem:
            return _refused("bad_request", problem)
        job_id, run = spool.parse_key(key)
        ask = self.next_ask
        self.next_ask += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[ask] = fut
        self.send({"event": Event.ASK, "ask": ask, "job_id": job_id, "run": run, "uid": uid,
                   "request": {k: request[k] for k in ASKED if k in request}})
        if request["op"] in STREAMED:
            return await self._streamed(ask, fut, reader, writer, job_id, run, fed=request["op"] in FED)
        try:
            return await asyncio.wait_for(fut, ANSWER_TIMEOUT)
        except TimeoutError:
            return _refused("unavailable", "melond did not answer in time; try again")
        finally:
            self.waiting.pop(ask, None)


    async def _streamed(self, ask: int, fut: asyncio.Future, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, job_id: int, run: int, fed: bool = False) -> dict:
        """Lines relayed as they come, then the answer; should the asking process go first (srun
        killed), melond hears so and ends what it started for it. `fed`: what the asker writes
        meanwhile (a terminal's keystrokes and window sizes) goes on to melond."""
        self.streams[ask] = writer
        about = {"ask": ask, "job_id": job_id, "run": run}
        gone = asyncio.ensure_future(self._input(reader, about) if fed else reader.read(1))
        try:
            await asyncio.wait([fut, gone], return_when=asyncio.FIRST_COMPLETED)
            if fut.done():
                return fut.result()
            self.send({"event": Event.ASK_GONE, **about})
            return _refused("gone", "the asking process went away")
        finally:
            gone.cancel()
            self.streams.pop(ask, None)
            self.waiting.pop(ask, None)

    async def _input(self, reader: asyncio.StreamReader, about: dict) -> None:
        """Each line the asker writes, on to melond, until it closes its side."""
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and len(line) <= MAX_INPUT:
                self.send({"event": Event.ASK_INPUT, **about,
                           "message": {k: message[k] for k in ("stdin", "resize") if k in message}})


ASKED = ("op", "add", "to", "max", "dry_run", "name", "ntasks", "cpus", "mode", "step_id", "exit_code", "signal",
         "cpu_time", "max_rss", "oom", "argv", "cwd", "env", "nodes", "nodelist", "layout",
         "cpus_per_task", "gpus", "rows", "cols", "node")  # what a request may carry on to melond


def _count(value: object, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value < 1 << 31


def _layout(value: object) -> bool:
    """A step's tasks on each node of a job spanning nodes: {node name: count}."""
    return isinstance(value, dict) and len(value) < 1 << 16 and all(
        isinstance(k, str) and 0 < len(k) < 256 and _count(v, 1) for k, v in value.items())


def _check_step(request: dict) -> str | None:
    """srun's own asks: a step's number, then how it ended."""
    if request["op"] == "step_start":
        name = request.get("name")
        if not (isinstance(name, str) and 0 < len(name) <= 200 and _count(request.get("ntasks"), 1)
                and _count(request.get("cpus")) and request.get("mode", "whole") in ("whole", "exact", "overlap")
                and isinstance(request.get("nodelist", ""), str) and len(request.get("nodelist", "")) < 4096
                and _count(request.get("cpus_per_task", 1), 1) and _layout(request.get("layout", {}))
                and _layout(request.get("gpus", {}))):
            return ('{"op": "step_start", "name": TEXT, "ntasks": N >= 1, "cpus": N >= 0, "mode": whole|exact|overlap, '
                    '"layout": {NODE: TASKS}, "cpus_per_task": N >= 1, "gpus": {NODE: GPUS}}')
        return None
    numbers = all(request.get(k) is None or _count(request[k]) for k in ("exit_code", "signal", "max_rss"))
    cpu = request.get("cpu_time")
    if not (_count(request.get("step_id")) and numbers and (cpu is None or isinstance(cpu, (int, float)))
            and isinstance(request.get("oom", False), bool)):
        return '{"op": "step_end", "step_id": N, "exit_code": N, "signal": N, "cpu_time": SECONDS, "max_rss": BYTES}'
    return None


def _check_launch(request: dict) -> str | None:
    """srun's tasks on the job's further nodes, and a signal for them."""
    if request["op"] == "step_signal":
        return None if _count(request.get("step_id")) and _count(request.get("signal"), 1) else \
            '{"op": "step_signal", "step_id": N, "signal": N}'
    argv, nodes = request.get("argv"), request.get("nodes")
    if not (_count(request.get("step_id")) and isinstance(argv, list) and argv and
            all(isinstance(a, str) for a in argv) and isinstance(request.get("cwd", ""), str) and
            isinstance(request.get("env", {}), dict) and
            isinstance(nodes, list) and nodes and all(isinstance(n, dict) and isinstance(n.get("node"), str) and
                                                      isinstance(n.get("tasks"), list) for n in nodes)):
        return ('{"op": "step_launch", "step_id": N, "argv": [...], "cwd": DIR, "nodes": [{"node": NAME, '
                '"tasks": [{"rank": N, "localid": N, "env": {...}, "cpus": [...]}]}]}')
    return None


def _check_pty(request: dict) -> str | None:
    """srun --pty inside the job: a command on a terminal on one of its nodes."""
    argv = request.get("argv")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
            and isinstance(request.get("cwd", ""), str) and isinstance(request.get("env", {}), dict)
            and _count(request.get("rows", 24), 1) and _count(request.get("cols", 80), 1)
            and isinstance(request.get("node", ""), str) and len(request.get("node", "")) < 256):
        return '{"op": "step_pty", "argv": [...], "cwd": DIR, "env": {...}, "rows": N, "cols": N, "node": NAME}'
    return None


def _check(request: object) -> str | None:
    if isinstance(request, dict) and request == {"op": "requeue"}:
        return None
    if isinstance(request, dict) and request.get("op") == "step_pty":
        return _check_pty(request)
    if isinstance(request, dict) and request.get("op") in ("step_start", "step_end"):
        return _check_step(request)
    if isinstance(request, dict) and request.get("op") in ("step_launch", "step_signal"):
        return _check_launch(request)
    if not isinstance(request, dict) or request.get("op") != "extend":
        return ('the requests are {"op": "extend", "add": SECONDS} (or "to": SECONDS, a new total) and '
                '{"op": "requeue"}')
    if not isinstance(request.get("dry_run", False), bool):
        return '"dry_run" is true or false'
    if request.get("max") is True and "add" not in request and "to" not in request:
        return None
    values = [request.get(k) for k in ("add", "to") if k in request]
    if "max" in request or len(values) != 1 or not isinstance(values[0], int) or isinstance(values[0], bool) \
            or values[0] < 0:
        return 'give exactly one of "add" (seconds to add, > 0), "to" (a new total in seconds) or "max": true'
    return None


def _refused(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}
