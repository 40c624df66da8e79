"""srun's tasks on a job's further nodes: launched through melond's connections to those nodes,
their output and exits relayed back to the srun that waits on the job's first node.

srun asks through its node's job channel (`step_launch`, a streamed ask); melond hands each
further node its tasks (Op.LAUNCH, started there by the job's holder, remote/holder.py), and
every line a node's tasks produce comes back as an Event.TASK, which goes on to the first node
as an Op.RELAY for that ask, in order, one route per step. The ask's answer comes once every
node has said its tasks are done. No node ever reaches another: everything passes through melond.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from melond.errors import MelonError
from melond.nodes.links import Sessions, split
from melond.state.job import Job
from melon_remote.protocol import STEP_TARGET, Op

log = logging.getLogger("melond.engine")

RouteKey = tuple[int, int, int]  # job id, run, step id
Origin = tuple[str, int]  # (a node's connection, its ask) or (LOGIN, a request's number)
LOGIN = "login"  # an srun on the login node, asking through the API (salloc's shell there)
Deliver = Callable[[dict], Awaitable[None]]


@dataclass
class Route:
    """One step's tasks on further nodes, and the ask on the first node that waits for them."""

    origin: Origin  # who waits: (the first node's connection, its ask), or the API request's
    deliver: Deliver  # each line on to it
    job: Job
    waiting: set[str]  # further nodes whose tasks are not all done
    lines: asyncio.Queue = field(default_factory=asyncio.Queue)


class StepRelay:
    def __init__(self, sessions: Sessions, hosts: Mapping[str, str] | None = None) -> None:
        self.sessions = sessions
        self.hosts = dict(hosts or {})  # node -> the name its jobs see for it (srun's names)
        self.nodes = {host: node for node, host in self.hosts.items()}
        self.routes: dict[RouteKey, Route] = {}

    def to_node(self, link: str, ask: int) -> Deliver:
        """Lines on to the srun that asked through its node's job channel (dropped once it is gone)."""
        async def deliver(line: dict) -> None:
            session = self.sessions.get(link)
            if session is None or not session.up:
                return
            try:
                await session.request(Op.RELAY, ask=ask, message=line)
            except MelonError:
                pass
        return deliver

    async def launch(self, origin: Origin, deliver: Deliver, job: Job, request: dict, *, login: bool = False) -> dict:
        """Start the tasks on each further node (each of the job's nodes, for an srun on the login
        node: `login`), relay what they say until all are done; the ask's answer."""
        step = int(request["step_id"])
        key = (job.id, job.run, step)
        further = set(job.nodes if login else job.nodes[1:])
        wanted = [{**n, "node": self.nodes.get(n["node"], n["node"])} for n in request["nodes"]]
        wanted = [n for n in wanted if n["node"] in further]
        if len(wanted) != len(request["nodes"]):
            return _refused("bad_request", f"job {job.id} runs on {', '.join(job.nodes)}; the nodes srun may start "
                                           f"tasks on from here are {', '.join(sorted(further)) or 'none'}")
        route = self.routes[key] = Route(origin, deliver, job, {n["node"] for n in wanted})
        forwarding = asyncio.ensure_future(self._forward(route))
        for entry in wanted:
            node = entry["node"]
            session = self.sessions.of(node, job.user)
            try:
                if session is None or not session.up:
                    raise MelonError(f"node {node} is not reachable now")
                env = {str(k): str(v) for k, v in {**(request.get("env") or {}), **(entry.get("env") or {})}.items()}
                await session.request(Op.LAUNCH, job_id=job.id, run=job.run, step=step, argv=request["argv"],
                                      cwd=request.get("cwd"), env=env, tasks=entry["tasks"])
            except MelonError as exc:
                log.warning("step tasks not started", extra={"job": job.id, "node": node, "error": str(exc)})
                self._line(route, node, {"error": f"{node}: {exc}", "ranks": [t.get("rank") for t in entry["tasks"]]})
                self._line(route, node, {"done": True, "failed": True})
        try:
            await forwarding
        finally:
            self.routes.pop(key, None)
        return {"ok": True, "job_id": job.id, "step_id": step}

    def on_task(self, link: str, msg: dict) -> None:
        """A line from a further node's tasks."""
        node, _ = split(link)
        try:
            key = (int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"]))
            message = dict(msg["message"])
        except (KeyError, TypeError, ValueError):
            return
        route = self.routes.get(key)
        if route is not None and node in route.waiting:
            self._line(route, node, message)

    def _line(self, route: Route, node: str, message: dict) -> None:
        if message.get("done"):
            route.waiting.discard(node)
        route.lines.put_nowait({**message, "node": self.hosts.get(node, node)})
        if not route.waiting:
            route.lines.put_nowait(None)

    async def _forward(self, route: Route) -> None:
        """Each line on to the waiting srun, in order; once it is gone, the rest is dropped."""
        while (line := await route.lines.get()) is not None:
            await route.deliver(line)

    async def gone(self, origin: Origin) -> None:
        """The waiting srun went (killed): its tasks on the other nodes are killed."""
        for key, route in list(self.routes.items()):
            if route.origin == origin:
                await self.signal(route.job, key[2], 9, login=origin[0] == LOGIN)
                for node in list(route.waiting):
                    self._line(route, node, {"done": True, "abandoned": True})

    async def signal(self, job: Job, step: int, sig: int, *, login: bool = False) -> dict:
        """srun's signal for its tasks on the job's further nodes (its own node's it sends itself;
        an srun on the login node has none: `login`)."""
        sent = []
        for node in job.nodes if login else job.nodes[1:]:
            session = self.sessions.of(node, job.user)
            if session is None or not session.up:
                continue
            try:
                await session.request(Op.SIGNAL, job_id=job.id, run=job.run, signal=sig, to=f"{STEP_TARGET}{step}")
                sent.append(node)
            except MelonError as exc:
                log.warning("step signal not sent", extra={"job": job.id, "node": node, "error": str(exc)})
        return {"ok": True, "job_id": job.id, "nodes": sent}


def _refused(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}

