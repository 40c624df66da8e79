"""Watching melond: `/metrics` for Prometheus, `/health` for a load balancer or a watchdog, the
figures since the start for `minfo --stats` and `sdiag`, and the middleware that times each request.

`/health` answers without a token and tells no job's data: whether a write reaches the database
(a real commit of one row, so a full disk or a lock held elsewhere shows) and how many nodes are
up. One check serves every caller for a second, so polling it costs at most one small commit a
second, shared with the group commit of whatever else is being written.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from aiohttp import web

from melond.api import metrics, models
from melond.engine.engine import Engine
from melond.errors import MelonError
from melond.figures import RequestFigures, Timings
from melond.state.store import Store

log = logging.getLogger("melond.api")

METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
HEALTH_TIMEOUT = 3.0  # seconds the check's commit may take before the database counts as not writable
HEALTH_REUSE = 1.0  # seconds one check's answer serves the checks after it
UNMATCHED = "unmatched"  # the route label of a path no route serves: raw paths would be unbounded
CATCH_ALL = "/{tail}"
FAILED = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"})  # sdiag's "Jobs failed"


class Monitor:
    """This melond's request figures, its Prometheus registry and its health check."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.requests = RequestFigures()
        self.registry = metrics.registry(engine, self.requests)
        self.started = time.time()
        self._check: asyncio.Task | None = None
        self._checked_at = 0.0  # time.monotonic() of the last check's answer

    def scrape(self, accept: str) -> web.Response:
        body, content_type = metrics.exposition(self.registry, accept)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def health(self) -> tuple[models.HealthReply, int]:
        """(the answer, 200 or 503): 503 when a write does not reach the database."""
        task = self._check
        if task is None or (task.done() and time.monotonic() - self._checked_at >= HEALTH_REUSE):
            task = self._check = asyncio.ensure_future(self._check_database())
        problem = await asyncio.shield(task)  # a caller that leaves does not end the others' check
        nodes = self.engine.nodes.values()
        up = sum(n.up for n in nodes)
        status = "failing" if problem else "ok" if up == len(nodes) else "degraded"
        leader = metrics.leader_info(self.engine.leadership) if self.engine.leadership is not None else None
        reply = models.HealthReply(status=status, database={"writable": problem is None, "problem": problem},
                                   nodes={"up": up, "total": len(nodes)}, leader=leader)
        return reply, 503 if problem else 200

    async def _check_database(self) -> str | None:
        """None if a commit of the health row went through in time, else what stopped it (a
        word, not the error's text: the answer is public)."""
        try:
            await asyncio.wait_for(self.engine.store.write(Store.op_health, time.time()), HEALTH_TIMEOUT)
            problem = None
        except TimeoutError:
            problem = "timeout"
        except MelonError as exc:
            problem = exc.code
        finally:
            self._checked_at = time.monotonic()
        if problem:
            log.warning("health check: a write did not reach the database", extra={"problem": problem})
        return problem

    def stats(self) -> models.StatsReply:
        """The figures since melond started, as `sdiag` shows them."""
        engine, counts = self.engine, self.engine.counts
        queued = [j.state.value for j in engine.jobs.listed()]
        return models.StatsReply(**{
            "time": time.time(), "since": self.started, "threads": threading.active_count(),
            "requests_in_flight": self.requests.in_flight, "store_waiting": engine.store.waiting(),
            "jobs_submitted": counts.total("submitted"), "jobs_started": counts.total("started"),
            "jobs_completed": counts.total("ended", frozenset({"COMPLETED"})),
            "jobs_cancelled": counts.total("ended", frozenset({"CANCELLED"})),
            "jobs_failed": counts.total("ended", FAILED), "jobs_requeued": counts.total("requeued"),
            "jobs_extended": counts.total("extended"),
            "jobs_pending": queued.count("PENDING"), "jobs_running": queued.count("RUNNING"),
            "scheduler": durations(engine.loop.passes), "last_queue_length": engine.loop.last_queue_length,
            "store_commits": durations(engine.store.commit_times),
            "requests": [{"method": method, "route": route, "count": t.count, "total": t.total}
                         for (method, route), t in sorted(self.requests.timings.items())],
        })


def durations(timings: Timings) -> dict:
    return {"count": timings.count, "total": timings.total, "last": timings.last, "max": timings.longest}


MONITOR = web.AppKey("monitor", Monitor)


def route_of(request: web.Request) -> str:
    """The route template a request matched (`/api/v1/jobs/{job_id}`), never its raw path."""
    resource = request.match_info.route.resource
    if resource is None or resource.canonical == CATCH_ALL:
        return UNMATCHED
    return resource.canonical


@web.middleware
async def timed(request: web.Request, handler):
    """Time each request and count its status, by route template."""
    figures = request.app[MONITOR].requests
    figures.in_flight += 1
    began = time.perf_counter()
    status = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        figures.in_flight -= 1
        if status is not None:  # not a request its client gave up on
            figures.observe(request.method, route_of(request), status, time.perf_counter() - began)


async def scrape(request: web.Request) -> web.Response:
    return request.app[MONITOR].scrape(request.headers.get("Accept", ""))


async def health(request: web.Request) -> web.Response:
    reply, status = await request.app[MONITOR].health()
    return web.json_response(reply.model_dump(exclude_none=True), status=status, headers={"Cache-Control": "no-store"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(METRICS_PATH, scrape)
    router.add_get(HEALTH_PATH, health)
