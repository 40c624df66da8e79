"""The API of a melond standing by (another leads the shared database).

It serves reads of what the database holds (the queue, a job, its script, the history,
accounting, steps, tokens, requests, the event log, partitions and associations, the UI's files)
from an engine loaded read-only from the database, made again at most every REFRESH seconds
and off the event loop; `/health` and `/metrics` say it stands by and name the leader. What
needs the leader is refused with `not_leader`, nothing done: every change, and the reads that
are the leader's own (nodes, which only its connections know; figures since it started;
priorities and shares, which it computes; a job's output and terminal, which need the node). A
client given several endpoints (MELON_API=a,b) takes the refusal as its cue to try the next.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from melond.api import metrics, models
from melond.api.metrics import leader_info
from melond.api.monitor import HEALTH_PATH, METRICS_PATH
from melond.engine.engine import Engine
from melond.engine.leadership import Leadership
from melond.errors import NotLeader

LEADERSHIP = web.AppKey("leadership", Leadership)
REFRESH = 1.0  # seconds: how old a standby's view of the queue may be
API = "/api/v1"
LEADERS_READS = frozenset({"/nodes", "/stats", "/priorities", "/shares"})
LEADERS_JOB_READS = ("/output", "/terminal")  # under /jobs/{id}: the node's


class Snapshot:
    """An engine loaded from the database and nothing started in it (no node, no loop), for
    reads: loaded again, on a thread, when a read comes and it is older than REFRESH seconds or
    five times its last load, whichever is longer (a queue of 100,000 jobs takes a second or so
    to load: a standby read all day spends a fifth of a core on it at most)."""

    def __init__(self, build: Callable[[], Engine]) -> None:
        self._build = build
        began = time.monotonic()
        self.engine = build()
        self._at = time.monotonic()
        self._took = self._at - began
        self._lock = asyncio.Lock()

    async def fresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._at >= max(REFRESH, 5 * self._took):
                began = time.monotonic()
                self.engine = await asyncio.to_thread(self._build)
                self._at = time.monotonic()
                self._took = self._at - began


class Latest:
    """What the API's handlers take for the engine on a standby: the snapshot's latest."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def __getattr__(self, name: str):
        return getattr(self._snapshot.engine, name)


SNAPSHOT = web.AppKey("snapshot", Snapshot)


def leaders_only(method: str, path: str) -> bool:
    """Whether a request needs the leader: a change, or a read only the leader can answer."""
    if method not in ("GET", "HEAD"):
        return True
    if not path.startswith(API + "/"):
        return False  # the web UI's files
    rest = path[len(API):]
    return rest in LEADERS_READS or (rest.startswith("/jobs/") and rest.endswith(LEADERS_JOB_READS))


def refusal(leadership: Leadership) -> NotLeader:
    info = leader_info(leadership)
    if leadership.leads:  # it led, and its lease may have run out
        return NotLeader("this melond no longer leads (its lease ran out); nothing was done. Another melond takes "
                         "over: list both endpoints in MELON_API (a,b) so that the tools find it")
    where = (f"the melond of epoch {info.epoch} leads, at {info.address}" if info.holder
             else "no melond leads at this moment (a takeover is under way)")
    return NotLeader(f"this melond stands by: {where}; nothing was done. Ask the leader, or list both endpoints "
                     f"in MELON_API (a,b) so that the tools find it", info.address)


def refusal_response(leadership: Leadership) -> web.Response:
    exc = refusal(leadership)
    return web.json_response(exc.to_wire(), status=exc.status, headers={"Retry-After": "1"})


async def _health(request: web.Request) -> web.Response:
    leadership = request.app[LEADERSHIP]
    reply = models.HealthReply(status="standby", database=models.HealthDatabase(writable=False, problem="standby"),
                               nodes=models.HealthNodes(up=0, total=0), leader=leader_info(leadership))
    return web.json_response(reply.model_dump(exclude_none=True), status=503, headers={"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics.LeaderCollector(request.app[LEADERSHIP]))
    body, content_type = metrics.exposition(reg, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


@web.middleware
async def standby(request: web.Request, handler) -> web.StreamResponse:
    """A standby's answer: its own /health and /metrics, a refusal for what needs the leader,
    else the API's reads over a snapshot fresh within REFRESH seconds."""
    if request.path == HEALTH_PATH:
        return await _health(request)
    if request.path == METRICS_PATH:
        return await _metrics(request)
    if leaders_only(request.method, request.path):
        return refusal_response(request.app[LEADERSHIP])
    await request.app[SNAPSHOT].fresh()
    return await handler(request)


def make_standby_app(leadership: Leadership, build: Callable[[], Engine]) -> web.Application:
    """The API's app over a read-only snapshot of the database, `build` making its engine."""
    from melond.api.routes import make_app  # (routes imports this module's refusals)
    snapshot = Snapshot(build)
    app = make_app(Latest(snapshot), before=[standby])  # type: ignore[arg-type] - an Engine's attributes
    app[LEADERSHIP] = leadership
    app[SNAPSHOT] = snapshot
    return app
