"""The HTTP API, on a Unix socket (identity from SO_PEERCRED) and optionally on TCP.

Handlers are thin: validate the body with pydantic, establish the caller, call
one controller method, return JSON. Every error is `{"error": {"code",
"message"}}` with a 4xx/5xx status. The TCP listener is read-only until tokens
exist (identity there cannot be established yet).
"""
from __future__ import annotations

import logging
import os
import pwd
import socket
import struct
import time

from aiohttp import web
from pydantic import BaseModel, ValidationError

from melond import models
from melond.controller import Controller
from melond.errors import BadRequest, Forbidden, Internal, MelonError, NotFound
from melond.policy import Caller, check_owner
from melond.states import ACTIVE, State, parse_states
from melond.views import job_view, node_view

log = logging.getLogger("melond.api")

PREFIX = "/api/v1"
CONTROLLER = web.AppKey("controller", Controller)
MAX_WAIT = 300.0
PEERCRED = struct.Struct("3i")


def peer_caller(request: web.Request, ctl: Controller) -> Caller | None:
    """The uid on the other end of a Unix socket, as the kernel tells it; None over TCP."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _pid, uid, _gid = PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return ctl.caller(user, uid)


@web.middleware
async def errors_and_identity(request: web.Request, handler):
    ctl = request.app[CONTROLLER]
    caller = peer_caller(request, ctl)
    if caller is None and request.method not in ("GET", "HEAD"):
        return _error(Forbidden("the TCP API is read-only in this version: identity needs a token; "
                                "use the Unix socket (the default endpoint) to submit, cancel or extend"))
    request["caller"] = caller or Caller(user="anonymous", uid=-1)
    try:
        return await handler(request)
    except MelonError as exc:
        return _error(exc)
    except web.HTTPException:
        raise
    except Exception:  # noqa: BLE001 - never a traceback to the client, always one in the log
        log.exception("unhandled error", extra={"path": request.path})
        return _error(Internal("melond hit an internal error; see its log"))


def _error(exc: MelonError) -> web.Response:
    return web.json_response(exc.to_wire(), status=exc.status)


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        raw = await request.read()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid request: {problems}") from None


def _job_id(request: web.Request) -> int:
    try:
        return int(request.match_info["job_id"])
    except ValueError:
        raise BadRequest(f"job id must be a number, not {request.match_info['job_id']!r}") from None


async def whoami(request: web.Request) -> web.Response:
    c: Caller = request["caller"]
    return web.json_response({"user": c.user, "uid": c.uid, "operator": c.operator})


async def submit(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    body: models.SubmitRequest = await _body(request, models.SubmitRequest)
    caller: Caller = request["caller"]
    if os.geteuid() != 0 and caller.uid != os.geteuid():
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise Forbidden(f"melond runs as {me} without root, so it can only run {me}'s jobs; "
                        f"ask {me}, or run melond as root")
    try:
        gid = pwd.getpwuid(caller.uid).pw_gid
    except KeyError:
        raise Forbidden(f"uid {caller.uid} has no account on this machine; jobs need a named user") from None
    ids, warnings = await ctl.submit(body.model_dump(), caller, (caller.user, caller.uid, gid))
    return web.json_response({"job_ids": ids, "warnings": warnings}, status=201)


async def list_jobs(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    q = request.query
    try:
        states = parse_states(q["state"]) if q.get("state") else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    ids = _int_list(q.get("ids"))
    if states is None and not q.get("all") and ids is None:
        states = set(ACTIVE)
    if states is not None and states <= ACTIVE and ids is None:
        rows = [j for j in ctl.active.values() if State(j["state"]) in states]
        if q.get("user"):
            rows = [j for j in rows if j["user"] == q["user"]]
        rows.sort(key=lambda j: j["id"])
    else:
        rows = ctl.store.jobs(states=[s.value for s in states] if states is not None else None,
                              user=q.get("user") or None, ids=ids)
    now = time.time()
    return web.json_response({"jobs": [job_view(j, now) for j in rows]})


async def show_job(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    jid = _job_id(request)
    caller: Caller = request["caller"]
    job = ctl.visible_job(jid, caller)
    if caller.uid >= 0:
        check_owner(job, caller, "show")
    wait = float(request.query.get("wait", 0) or 0)
    if wait > 0 and job["state"] in ACTIVE:
        job = await ctl.wait_ended(jid, min(wait, MAX_WAIT)) or job
    view = job_view(job)
    view["events"] = ctl.store.events(jid)
    ended = [e["data"].get("backend") for e in view["events"] if e["kind"] == "ended"]
    node = ctl.nodes.get(job.get("node") or "")
    view["backend"] = (ended[-1] if ended else None) or (node.backend if node and job.get("node") else None)
    return web.json_response(view)


async def cancel_job(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    return web.json_response(await ctl.cancel(_job_id(request), request["caller"]))


async def extend_job(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    body: models.ExtendRequest = await _body(request, models.ExtendRequest)
    if (body.add is None) == (body.to is None):
        raise BadRequest("give exactly one of `add` (seconds to add) or `to` (a new total limit)")
    return web.json_response(await ctl.extend(_job_id(request), request["caller"], add=body.add, to=body.to))


async def hold_job(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    return web.json_response(await ctl.set_hold(_job_id(request), request["caller"], True))


async def release_job(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    return web.json_response(await ctl.set_hold(_job_id(request), request["caller"], False))


async def list_nodes(request: web.Request) -> web.Response:
    ctl = request.app[CONTROLLER]
    running: dict[str, list[dict]] = {}
    for j in ctl.active.values():
        if j["state"] == State.RUNNING:
            running.setdefault(j["node"], []).append(j)
    return web.json_response({"nodes": [node_view(n, running.get(n.name, [])) for n in ctl.nodes.values()]})


async def drain_node(request: web.Request) -> web.Response:
    body: models.NodeAction = await _body(request, models.NodeAction)
    return web.json_response(await request.app[CONTROLLER].drain(request.match_info["name"], request["caller"],
                                                                 body.reason))


async def resume_node(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CONTROLLER].resume(request.match_info["name"], request["caller"]))


async def down_node(request: web.Request) -> web.Response:
    body: models.NodeAction = await _body(request, models.NodeAction)
    return web.json_response(await request.app[CONTROLLER].down(request.match_info["name"], request["caller"],
                                                                body.reason))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f"no API route {request.method} {request.path}; see {PREFIX}/openapi.json")


ROUTES = [
    ("GET", "/whoami", whoami, None, None, "who the server thinks you are"),
    ("POST", "/jobs", submit, models.SubmitRequest, models.SubmitReply, "submit a batch job (or an array)"),
    ("GET", "/jobs", list_jobs, None, None, "list jobs; ?state=R,PD&user=&ids=1,2&all=1"),
    ("GET", "/jobs/{job_id}", show_job, None, None, "one job with its events; ?wait=SECONDS blocks until it ends"),
    ("POST", "/jobs/{job_id}/cancel", cancel_job, None, None, "cancel a pending or running job"),
    ("POST", "/jobs/{job_id}/extend", extend_job, models.ExtendRequest, None, "extend a job's time limit"),
    ("POST", "/jobs/{job_id}/hold", hold_job, None, None, "hold a pending job"),
    ("POST", "/jobs/{job_id}/release", release_job, None, None, "release a held job"),
    ("GET", "/nodes", list_nodes, None, None, "nodes with allocation and limit backend"),
    ("POST", "/nodes/{name}/drain", drain_node, models.NodeAction, None, "start nothing more on a node (operators)"),
    ("POST", "/nodes/{name}/resume", resume_node, None, None, "return a drained node to service (operators)"),
    ("POST", "/nodes/{name}/down", down_node, models.NodeAction, None, "drain a node and kill its jobs (operators)"),
    ("GET", "/openapi.json", openapi, None, None, "this document"),
]


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    schemas: dict[str, dict] = {"ErrorReply": models.ErrorReply.model_json_schema(ref_template="#/components/schemas/{model}")}
    for method, path, _, req, resp, summary in ROUTES:
        op: dict = {"summary": summary, "responses": {
            "200": {"description": "OK"},
            "4XX": {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorReply"}}}},
        }}
        for model, where in ((req, "request"), (resp, "response")):
            if model is None:
                continue
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            ref = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            if where == "request":
                op["requestBody"] = {"required": True, **ref}
            else:
                op["responses"]["200"] = {"description": "OK", **ref}
        paths.setdefault(PREFIX + path, {})[method.lower()] = op
    return {"openapi": "3.1.0", "info": {"title": "melond", "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}


def _int_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadRequest(f"ids must be comma-separated numbers, not {text!r}") from None


def make_app(ctl: Controller) -> web.Application:
    app = web.Application(middlewares=[errors_and_identity], client_max_size=64 * 1024 * 1024)
    app[CONTROLLER] = ctl
    for method, path, handler, *_ in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app

