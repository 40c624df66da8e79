"""What a running job asks of melond from its node (the job channel, remote/asks.py): to extend
itself, to be requeued, or srun's steps (their numbers, their tasks on other nodes, a terminal).
The node has already checked that the asking process belongs to the job and runs as its user;
here the job must still be the one melond runs there, and the owner's policy applies exactly as
on the login node. Each extension and requeue is audited with `via: job`. srun's step asks come
from the login node too, through the API, where salloc's shell runs there (melond/api/allocation.py)."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from melond.engine.jobs import JobTable
from melond.engine.operations import Operations
from melond.engine.relay import Deliver, Origin, StepRelay
from melond.engine.terminal import Terminal, Terminals
from melond.engine.tasks import Tasks
from melond.errors import MelonError
from melond.nodes.links import Sessions, split
from melond.nodes.state import NodeState
from melond.spec.states import State
from melond.sched import steps
from melond.spec.cpulist import parse_cpuset
from melond.spec.gres import visible
from melond.state import step
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.protocol import Event, Op

log = logging.getLogger("melond.engine")
EARLY_INPUT = 256  # lines typed ahead of a terminal's start that are kept for it
STEP_ASKS = ("step_start", "step_end", "step_launch", "step_signal", "step_pty")


class JobAsks:
    def __init__(self, jobs: JobTable, sessions: Sessions, ops: Operations, tasks: Tasks, store: Store,
                 hosts: Mapping[str, str] | None = None, nodes: Mapping[str, NodeState] | None = None,
                 terminals: Terminals | None = None) -> None:
        self.jobs, self.sessions, self.ops, self.tasks, self.store = jobs, sessions, ops, tasks, store
        self.relay = StepRelay(sessions, hosts)
        self.nodes = nodes or {}  # their devices: a step's GPUs are some of its job's
        self.terminals = terminals
        self.ptys: dict[Origin, Terminal] = {}  # srun --pty's terminals, by the ask that waits on each
        self.early: dict[Origin, list[dict]] = {}  # what was typed before its terminal started

    def on_event(self, link: str, msg: dict) -> None:
        if msg.get("event") == Event.TASK:
            self.relay.on_task(link, msg)
        elif msg.get("event") == Event.ASK_GONE:
            self.tasks.spawn(self.gone((link, msg.get("ask"))))
        elif msg.get("event") == Event.ASK_INPUT and isinstance(msg.get("message"), dict):
            origin = (link, msg.get("ask"))
            term = self.ptys.get(origin)
            if term is not None and self.terminals is not None:
                self.tasks.spawn(self.terminals.feed(term, msg["message"]))
            elif origin in self.early and len(self.early[origin]) < EARLY_INPUT:  # typed ahead of its start
                self.early[origin].append(msg["message"])
        else:
            if isinstance(msg.get("request"), dict) and msg["request"].get("op") == "step_pty":
                self.early[(link, msg.get("ask"))] = []  # from now on, what is typed is kept for the terminal
            self.tasks.spawn(self._answer(link, msg))

    async def gone(self, origin: Origin) -> None:
        """The srun waiting on an ask went: its tasks elsewhere are killed, its terminal hung up."""
        self.early.pop(origin, None)
        term = self.ptys.pop(origin, None)
        if term is not None and self.terminals is not None:
            await self.terminals.hang_up(term)
        await self.relay.gone(origin)

    async def _answer(self, link: str, msg: dict) -> None:
        """Answer through the connection that asked."""
        reply = await self.reply(link, msg)
        self.early.pop((link, msg.get("ask")), None)  # an ask refused before its terminal started
        session = self.sessions.get(link)
        if session is None or not session.up:
            return  # the job's process sees its helper go, and says melond did not answer
        try:
            await session.request(Op.ANSWER, ask=msg.get("ask"), reply=reply)
        except MelonError as exc:
            log.warning("could not answer a job's ask", extra={"node": link, "job": msg.get("job_id"),
                                                               "error": str(exc)})

    async def reply(self, link: str, msg: dict) -> dict:
        try:
            job_id, run, uid, ask = int(msg["job_id"]), int(msg["run"]), int(msg["uid"]), int(msg["ask"])
            request = dict(msg["request"])
        except (KeyError, TypeError, ValueError):
            return _refused("bad_request", "a malformed ask from the node")
        node, user = split(link)
        job = self.jobs.get(job_id)
        if job is None or job.state is not State.RUNNING or job.node != node or job.run != run:
            return _refused("not_running", f"job {job_id} is not running on {node} (as melond knows it)")
        if user is not None and user != job.user:  # a personal node's connection speaks for its user's jobs only
            return _refused("forbidden", f"job {job_id} is not {user}'s")
        if user is None and uid not in (job.uid, 0):
            return _refused("forbidden", f"the asking process does not run as job {job_id}'s user")
        origin = (link, ask)
        if request.get("op") in STEP_ASKS:
            return await self.step_ask(job, node, request, origin, self.relay.to_node(*origin))
        if request.get("op") not in ("extend", "requeue"):
            return _refused("bad_request", f"jobs may ask to extend or requeue themselves, not {request.get('op')!r}")
        caller = self.ops.caller(job.user, job.uid)
        if request["op"] == "requeue":
            try:
                result = await self.ops.requeue(job_id, caller, via="job")
            except MelonError as exc:
                return {"ok": False, **exc.to_wire()}
            log.info("job requeued itself", extra={"job": job_id, "node": node})
            return {"ok": True, **result}
        try:
            result = await self.ops.extend(job_id, caller, add=request.get("add"), to=request.get("to"),
                                           largest=request.get("max") is True, dry_run=request.get("dry_run") is True,
                                           via="job")
        except MelonError as exc:
            return {"ok": False, **exc.to_wire()}
        log.info("job extended itself", extra={"job": job_id, "node": node, "new_limit": result.get("new_limit")})
        return {"ok": True, **result}


    async def step_ask(self, job: Job, node: str | None, request: dict, origin: Origin, deliver: Deliver) -> dict:
        """srun's asks, from a node's job channel or (node None) from the login node through the
        API, where salloc's shell runs without use_interactive_step: a step's number and end,
        its tasks on other nodes, a signal for them, a terminal. `deliver` carries a streamed
        ask's lines to the srun that waits."""
        op, login = request.get("op"), node is None
        if op in ("step_start", "step_end"):
            return await self._step(job, node or job.node or "", request)
        if op == "step_launch":
            return await self.relay.launch(origin, deliver, job, request, login=login)
        if op == "step_signal":
            return await self.relay.signal(job, int(request["step_id"]), int(request["signal"]), login=login)
        if op == "step_pty":
            return await self._pty(job, request, origin, deliver)
        return _refused("bad_request", f"not a step's ask: {op!r}")

    async def _pty(self, job: Job, request: dict, origin: Origin, deliver: Deliver) -> dict:
        """`srun --pty` inside an allocation: a terminal on one of the job's nodes (a step of its
        own), what it writes relayed to the srun that asked, what the user types fed to it
        (Event.ASK_INPUT); its exit is the answer."""
        if self.terminals is None:
            return _refused("unavailable", "this melond opens no terminals")
        if not job.interactive:
            self.early.pop(origin, None)
            return _refused("not_interactive", f"job {job.id} is a batch job: its nodes hold no terminal; "
                                               f"srun runs the step without one")
        try:
            term = await self.terminals.start(job, list(request["argv"]), dict(request.get("env") or {}),
                                              request.get("cwd"), (int(request.get("rows") or 24),
                                                                   int(request.get("cols") or 80)),
                                              final=False, host=request.get("node"))
        except MelonError as exc:
            self.early.pop(origin, None)
            return {"ok": False, **exc.to_wire()}
        self.ptys[origin] = term
        for message in self.early.pop(origin, []):  # in the order typed, before anything typed later
            self.tasks.spawn(self.terminals.feed(term, message))
        try:
            await deliver({"step": term.step, "node": self.relay.hosts.get(term.node, term.node)})
            while "exit" not in (message := await term.out.get()):
                await deliver(message)
            return {"ok": True, "job_id": job.id, "step_id": term.step, "exit": message["exit"]}
        finally:
            self.ptys.pop(origin, None)

    async def _step(self, job: Job, node: str, request: dict) -> dict:
        """srun numbers its step (`step_start`) and says how it ended (`step_end`): sacct's rows."""
        now = time.time()
        if request["op"] == "step_start":
            mode, want = request.get("mode") or steps.WHOLE, int(request["cpus"])
            if job.spans:  # CPUs held on each of the step's nodes: srun says how many tasks go where
                per_task = int(request.get("cpus_per_task") or 1)
                wanted = {self.relay.nodes.get(h, h): int(n) * per_task for h, n in (request.get("layout") or {}).items()}
                parts = {p.node: parse_cpuset(p.cpu_ids) or list(range(p.cpus)) for p in job.placed}
                if not wanted or not set(wanted) <= set(parts):
                    return _refused("bad_request", f"job {job.id} runs on {', '.join(parts)}; the step names "
                                                   f"{', '.join(wanted) or 'no node'}")
                decide = lambda running: steps.grant_nodes(mode, wanted, parts, running)  # noqa: E731
            else:
                cpus, ids = job.cpus, parse_cpuset(job.cpu_ids)
                decide = lambda running: steps.grant(mode, want, cpus, ids, running)  # noqa: E731
            asked = {self.relay.nodes.get(h, h): int(n) for h, n in (request.get("gpus") or {}).items()}
            gpus = self._job_gpus(job)
            if asked and not set(asked) <= set(gpus):
                return _refused("too_many", f"Requested GPUs are not available: job {job.id} holds GPUs on "
                                            f"{', '.join(gpus) or 'no node'}")
            grant = (lambda running: steps.grant_gpus(asked, gpus, running)) if asked else None  # noqa: E731
            try:
                step_id, ids, held = await self.store.write(
                    Store.op_step_start, job.id, job.run, str(request.get("nodelist") or node), str(request["name"]),
                    int(request["ntasks"]), decide, now, grant)
            except steps.Busy:
                return {"ok": False, "busy": True, "error": {"code": "busy", "message": "Requested nodes are busy"}}
            except ValueError as exc:
                return _refused("too_many", str(exc))
            out = {"ok": True, "job_id": job.id, "step_id": step_id, "cpu_ids": ids}
            if isinstance(ids, dict):
                by_host = {self.relay.hosts.get(n, n): i for n, i in ids.items()}
                out.update(cpu_ids=by_host.get(self.relay.hosts.get(node, node), []), node_cpu_ids=by_host)
            if held is not None:
                out["gpus"] = {self.relay.hosts.get(n, n): self._gpu_lists(n, gpus[n], ids_) for n, ids_ in held.items()}
            return out
        changes = {"state": step.end_state(request.get("exit_code"), request.get("signal"), request.get("oom") is True),
                   "exit_code": request.get("exit_code"), "exit_signal": request.get("signal"),
                   "cpu_time": request.get("cpu_time"), "max_rss": request.get("max_rss")}
        done = await self.store.write(Store.op_step_end, job.id, job.run, int(request["step_id"]), changes, now)
        return {"ok": True, "job_id": job.id, "closed": done}


    def _job_gpus(self, job: Job) -> dict[str, list[int]]:
        """The job's GPUs on each of its nodes (positions in the node's device list)."""
        out = {}
        for part in job.placed:
            state = self.nodes.get(part.node)
            devices = state.devices if state else ()
            out[part.node] = [i for i in parse_cpuset(part.gres_ids) if i < len(devices) and devices[i].name == "gpu"]
        return out

    def _gpu_lists(self, node: str, job_gpus: list[int], mine: list[int]) -> dict[str, str]:
        """A step's GPUs on `node` as its tasks' variables name them: CUDA's list as the job sees
        its GPUs (from 0 where the node isolates them: melond.sched.launch.gres_environment) and
        the node's indexes (SLURM_STEP_GPUS)."""
        state = self.nodes[node]
        gpus, step = [state.devices[i] for i in job_gpus], [state.devices[i] for i in mine]
        return {"visible": visible(gpus, step, state.isolates_devices), "indexes": ",".join(str(d.index) for d in step)}


def _refused(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}
