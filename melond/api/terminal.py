"""`GET /api/v1/jobs/{id}/terminal`: a WebSocket on which the job's owner gets a terminal on the
job's first node, or the one `node` names (melond/engine/terminal.py does the work).

Client to server, JSON text frames: first `TerminalOpen` (argv, rows, cols, env, cwd, final, node;
or `step` to take up a running session's terminal again after melond restarted; `step` and
`watch` to be one more reader of it, as sattach is, whose going hangs nothing up),
then `TerminalInput` ({"stdin": BASE64} or {"resize": [rows, cols]}). Server to client:
{"step": N} once started, {"data": BASE64} as the terminal writes, {"notice": TEXT} for a line
the user should read (the job's end nearing), {"error": TEXT} (with "retry": true where the
node is only not reachable yet: a reattaching client opens the session again), and last
{"exit": CODE} (a negative code: the signal that ended it; null: unknown). Closing the socket
hangs the terminal up.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from melond.api.models import TerminalInput, TerminalOpen
from melond.engine.engine import Engine
from melond.errors import BadRequest, Conflict, Forbidden, MelonError, NodeUnavailable
from melond.sched.policy import Caller
from melond.spec.states import State
from melond.state.job import Job

log = logging.getLogger("melond.api")
OPEN_WAIT = 30.0  # seconds the client has to say what to run


def check_attachable(job: Job, caller: Caller) -> None:
    """Only the job's own user (or root) may have a terminal in it, and only while it runs."""
    if caller.user != job.user and caller.uid != 0:
        raise Forbidden(f"job {job.id} belongs to {job.user}; only its owner may open a terminal in it")
    if not job.interactive:
        raise Conflict(f"job {job.id} is a batch job; terminals open in interactive allocations (salloc, srun --pty)")
    if job.state is not State.RUNNING:
        raise Conflict(f"job {job.id} is {job.state.value}, not running; a terminal opens once it runs")


async def serve(request: web.Request, engine: Engine, find: Callable[[], Job]) -> web.WebSocketResponse:
    """The session, its refusals included: they come as an error frame the client prints (a
    refused handshake would carry only an HTTP status)."""
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4 << 20)
    await ws.prepare(request)
    watching: asyncio.Queue | None = None  # sattach's: a reader, not the session's own client
    try:
        job = find()
        check_attachable(job, request["caller"])
        first = await ws.receive(timeout=OPEN_WAIT)
        if first.type is not WSMsgType.TEXT:
            raise BadRequest("the first message says what to run: {\"argv\": [...], \"rows\": R, \"cols\": C}")
        try:
            opening = TerminalOpen.model_validate_json(first.data)
        except ValidationError as exc:
            raise BadRequest(f"not a terminal's opening: {exc.errors()[0]['msg']}") from None
        if opening.step is not None and opening.watch:
            term, watching = engine.terminals.watch(job, opening.step)
        elif opening.step is not None:
            term = await engine.terminals.reattach(job, opening.step, (opening.rows, opening.cols))
        elif not opening.argv:
            raise BadRequest("say what to run (argv), or which session to reattach to (step)")
        else:
            term = await engine.terminals.start(job, opening.argv, opening.env, opening.cwd,
                                                (opening.rows, opening.cols), opening.final, opening.node)
    except (MelonError, asyncio.TimeoutError) as exc:
        if isinstance(exc, NodeUnavailable):  # for now only: the client may open the session again
            await ws.send_json({"error": str(exc), "retry": True})
        else:
            await ws.send_json({"error": str(exc) or "no opening message"})
        await ws.send_json({"exit": None})
        await ws.close()
        return ws
    await ws.send_json({"step": term.step})
    sending = asyncio.ensure_future(_send(ws, watching if watching is not None else term.out))
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                typed = TerminalInput.model_validate_json(msg.data)
            except ValidationError:
                continue
            if watching is not None:  # the window is the session's own client's to size
                typed.resize = None
            await engine.terminals.feed(term, typed.model_dump(exclude_none=True))
            if sending.done():
                break
    finally:
        if watching is not None:
            engine.terminals.unwatch(term, watching)
        elif not term.closed:
            await engine.terminals.hang_up(term)
        try:
            await asyncio.wait_for(asyncio.shield(sending), timeout=10 if not ws.closed else 0.1)
        except (asyncio.TimeoutError, ConnectionError):
            sending.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, out: asyncio.Queue) -> None:
    """Everything the session says, in order, until its exit."""
    while True:
        message = await out.get()
        if ws.closed:
            return
        await ws.send_str(json.dumps(message))
        if "exit" in message:
            await ws.close()
            return
