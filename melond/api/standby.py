"""The API of a melond standing by (another leads the shared database): `/health` and
`/metrics` say so and name the leader; every other request is refused with `not_leader`
(nothing done), which a client given several endpoints (MELON_API=a,b) takes as its cue to
try the next."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from melond.api import metrics, models
from melond.api.metrics import leader_info
from melond.api.monitor import HEALTH_PATH, METRICS_PATH
from melond.engine.leadership import Leadership
from melond.errors import NotLeader

LEADERSHIP = web.AppKey("leadership", Leadership)


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


async def _refuse(request: web.Request) -> web.Response:
    return refusal_response(request.app[LEADERSHIP])


def make_standby_app(leadership: Leadership) -> web.Application:
    app = web.Application()
    app[LEADERSHIP] = leadership
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(METRICS_PATH, _metrics)
    app.router.add_route("*", "/{tail:.*}", _refuse)
    return app
