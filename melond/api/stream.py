"""`GET /api/v1/events`: the job event log as server-sent events, so a page updates its rows live
instead of reloading the list.

Each event is `id: SEQ`, `event: job`, `data: {"seq", "job_id", "kind", "time"}`: which job
changed and how, not the details (an event's data may hold a request's reason or a node's
error), which the page reads through the job's own route, where the usual rights apply. A client
that reconnects with Last-Event-ID (or `?after=SEQ`) misses nothing; `?after=now` starts from the
present; `?seconds=N` ends the stream after N seconds (for scripts). The log is read every POLL seconds, a cheap indexed read, and a comment line keeps idle
connections open through proxies.

Each reader is sent only the events it may learn of (melond.sched.policy.sees_event: another
user's job's state changes, not its extension requests or notices). A stream opened with a
token checks that token again every RECHECK seconds and ends, with an `end` event saying why,
once it is revoked or expired: an open stream is not a way to outlive a revocation.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiohttp import web

from melond.errors import BadRequest
from melond.sched.policy import Caller, sees_event

POLL = 0.25
RECHECK = 1.0  # seconds between checks of the stream's token
KEEPALIVE = 15.0
BATCH = 500


async def events(request: web.Request, store, viewer: Caller,
                 refusal: Callable[[float], str | None] | None = None) -> web.StreamResponse:
    """Stream the log to `viewer`; `refusal(now)` says why the stream's token no longer holds
    (None while it does; no callable: the stream has no token, as on the Unix socket)."""
    after = request.headers.get("Last-Event-ID") or request.query.get("after") or "now"
    if after == "now":
        seq = store.last_event_seq()
    else:
        try:
            seq = int(after)
        except ValueError:
            raise BadRequest(f"after is an event's number (or now), not {after[:50]!r}") from None
    limit = request.query.get("seconds")
    try:
        stop = time.monotonic() + float(limit) if limit is not None else None
    except ValueError:
        raise BadRequest(f"seconds is how long to stream, a number, not {limit[:50]!r}") from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    quiet_since = checked = time.monotonic()
    try:
        while True:
            if refusal is not None and time.monotonic() - checked >= RECHECK:
                checked = time.monotonic()
                why = refusal(time.time())
                if why is not None:
                    await response.write(f"event: end\ndata: {json.dumps({'message': why})}\n\n".encode())
                    break
            rows = store.events_after(seq, BATCH)
            if rows:
                seen = [r for r in rows if sees_event(viewer, r.pop("user"), r["kind"])]
                if seen:
                    chunk = "".join(f"id: {r['seq']}\nevent: job\ndata: {json.dumps(r)}\n\n" for r in seen)
                    await response.write(chunk.encode())
                    quiet_since = time.monotonic()
                seq = rows[-1]["seq"]
                if len(rows) == BATCH:
                    continue
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            if stop is not None and time.monotonic() >= stop:
                break
            await asyncio.sleep(POLL)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response
