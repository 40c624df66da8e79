"""The HTTP API, on a Unix socket (identity from SO_PEERCRED) and optionally on TCP (bearer tokens).

Handlers are thin: validate the body with pydantic, establish the caller, call
one engine method, return JSON. Every error is `{"error": {"code",
"message"}}` with a 4xx/5xx status. Over TCP every route but the OpenAPI
document needs a token, and a token's user has the same rights as on the socket.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import time
from collections.abc import Sequence

from aiohttp import web
from pydantic import BaseModel, ValidationError

from melond import nss
from melond.api import (allocation, guard, metrics, models, monitor, session, standby, stream, terminal, tokens, ui,
                        webform)
from melond.api.auth import TokenService, peer_uid
from melond.api.views import (accounting_rows, entry_views, folded, job_view, listing, node_list, node_view,
                              parse_fields)
from melond.engine.engine import Engine
from melond.engine.operations import Refusal, label
from melond.engine.slices import SLICE, slices
from melond.errors import BadRequest, Conflict, Forbidden, Internal, MelonError, NotFound, RateLimited, Unauthorized
from melond.nodes.links import split
from melond.sched import caps
from melond.sched.admission import Submitter
from melond.sched.policy import Caller, check_owner
from melond.spec.jobids import parse_one_ref
from melond.spec.request import dry_run_view
from melond.spec.jobrel import MAX_ARRAY_TASKS
from melond.spec.states import ACTIVE, State, parse_states
from melond.spec.timespec import expand_hostlist, signal_name
from melond.state import pages
from melond.state.job import Job
from melond.state.store import ACCOUNTING_COLUMNS

log = logging.getLogger("melond.api")
PENDING = frozenset({State.PENDING})  # the tasks `mhold 13` and `mrelease 13` act on
EACH_AT_ONCE = 500  # an array's tasks acted on concurrently, at most

PREFIX = "/api/v1"
ENGINE = web.AppKey("engine", Engine)
TOKENS = web.AppKey("tokens", TokenService)
SUBMIT_RATE = web.AppKey("submit_rate", caps.SubmitRate)
MAX_WAIT = 300.0
OUTPUT_READ = 64 * 1024  # a page's tail of a job's output, at most
PUBLIC = {"/openapi.json", "/session"}  # served without a token: the API's description and the sign-in
OPEN_READING = {"/jobs", "/nodes", "/partitions", "/events"}  # without a token too, where [web] open_job_list says


async def identify(request: web.Request) -> Caller:
    """The kernel's word on the Unix socket; on TCP the bearer token's user, or the session
    cookie's (the browser's, which must also show the CSRF header to change anything)."""
    engine = request.app[ENGINE]
    uid = peer_uid(request.transport)
    request["over_socket"] = uid is not None
    if uid is not None:
        return engine.ops.caller(nss.user_name(uid), uid)
    guarded = request.path.startswith(PREFIX + "/") and request.path.removeprefix(PREFIX) not in PUBLIC
    if request.path == monitor.METRICS_PATH:
        guarded = not engine.inv.metrics.public  # Prometheus's scrape: a token, unless [metrics] public
    if not guarded:
        return Caller(user="anonymous", uid=-1)  # the API's description, the sign-in, the UI's files, /health
    token = session.cookie_token(request)
    if token is not None:
        found = await request.app[TOKENS].authenticate_cookie(token, time.time())
        session.check_csrf(request)
        request["token_id"] = found.token_id
        return found.caller
    if ("Authorization" not in request.headers and request.method == "GET" and engine.inv.web.open_job_list
            and request.path.removeprefix(PREFIX) in OPEN_READING):
        return Caller(user="anonymous", uid=-1)  # reading the queue, as anyone on a login node may
    found = await request.app[TOKENS].authenticate(request.headers.get("Authorization"), time.time())
    request["token_id"] = found.token_id
    return found.caller


@web.middleware
async def errors_and_identity(request: web.Request, handler):
    try:
        request["caller"] = await identify(request)
        return await handler(request)
    except MelonError as exc:
        return _error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (a body above client_max_size, a wrong method) in our error shape.
        message = f"{exc.reason}: {exc.text or ''}".strip()
        if exc.status == 413:
            message += "; the bound follows the inventory's [limits] (script_size, args_total, env_size)"
        code = "too_large" if exc.status == 413 else "bad_request"
        return web.json_response({"error": {"code": code, "message": message}}, status=exc.status)
    except Exception:  # noqa: BLE001 - never a traceback to the client, always one in the log
        log.exception("unhandled error", extra={"path": request.path})
        return _error(Internal("melond hit an internal error; see its log"))


def _error(exc: MelonError) -> web.Response:
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="melond"'}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return web.json_response(exc.to_wire(), status=exc.status, headers=headers)


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    """A request's JSON body as `model`. A key given twice is refused (models.unique_keys): two
    readers of one body (a proxy, melond) must not each take a different one of its values."""
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}", object_pairs_hook=models.unique_keys)
    except models.DuplicateKey as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid request: the body is not JSON ({str(exc)[:200]}); send a JSON object") from None
    except RecursionError:
        raise BadRequest("invalid request: the body's JSON is nested too deeply to read; send a JSON object "
                         "of the request's fields") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid request: {problems}") from None


def _job_id(request: web.Request) -> int:
    """The job a path names: `13`, or an array task as users type it, `13_4`."""
    return request.app[ENGINE].ops.resolve(parse_one_ref(request.match_info["job_id"]))


async def _each(request: web.Request, states: frozenset[State], act, bulk=None) -> dict:
    """Act on the job a path names or, when a plain id names an array, on each of its tasks now in
    `states` (as `scancel 13` does): the reply lists each task's outcome, refusals included.
    `bulk`: acts on many ids at once (in one transaction), for the array's tasks."""
    jid = _job_id(request)
    tasks = None if "_" in request.match_info["job_id"] else request.app[ENGINE].ops.array_tasks(jid, states)
    if not tasks:
        return await act(jid)
    done, refused = await bulk(tasks) if bulk is not None else await _gathered(request, tasks, act)
    reply = _outcomes(done, refused)
    if not reply["jobs"]:
        raise refused[0][2]
    return {"job_id": jid, "array_job_id": jid, **reply}


async def _gathered(request: web.Request, ids: list[int], act) -> tuple[list[dict], list[Refusal]]:
    """`act` on each id, a chunk at a time together, so that their writes share group commits."""
    jobs = request.app[ENGINE].ops.jobs
    done, refused = [], []
    for first in range(0, len(ids), EACH_AT_ONCE):
        chunk = ids[first:first + EACH_AT_ONCE]
        names = [label(jobs.get(tid)) if jobs.get(tid) else str(tid) for tid in chunk]
        for tid, name, outcome in zip(chunk, names, await asyncio.gather(*map(act, chunk), return_exceptions=True)):
            if isinstance(outcome, MelonError):
                refused.append((tid, name, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                done.append({"job": name, **outcome})
    return done, refused


def _outcomes(done: list[dict], refused: list[Refusal]) -> dict:
    """Each job's outcome and each refusal (named as squeue names them: `13_4` for a task)."""
    return {"jobs": done, "errors": [{"job": name, "job_id": jid, **exc.to_wire()["error"]}
                                     for jid, name, exc in refused]}


async def bulk_cancel(request: web.Request) -> web.Response:
    """Cancel the jobs a filter picked, by their ids: the pending ones in one transaction."""
    body: models.JobIds = await _body(request, models.JobIds)
    ops = request.app[ENGINE].ops
    return await _json(_outcomes(*await ops.cancel_many(body.ids, request["caller"])), len(body.ids))


async def bulk_hold(request: web.Request) -> web.Response:
    body: models.JobIds = await _body(request, models.JobIds)
    ops = request.app[ENGINE].ops
    return await _json(_outcomes(*await ops.set_hold_many(body.ids, request["caller"], True)), len(body.ids))


async def bulk_release(request: web.Request) -> web.Response:
    body: models.JobIds = await _body(request, models.JobIds)
    ops = request.app[ENGINE].ops
    return await _json(_outcomes(*await ops.set_hold_many(body.ids, request["caller"], False)), len(body.ids))


def _id(text: str, what: str) -> int:
    """A job id from a path or query: a number SQLite can hold (a bigger one names no job)."""
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{what}, not {text[:100]!r}") from None
    if not 0 <= value < 2**63:
        raise BadRequest(f"{what} between 0 and {2**63 - 1}, not {text[:100]}")
    return value


async def whoami(request: web.Request) -> web.Response:
    c: Caller = request["caller"]
    return web.json_response({"user": c.user, "uid": c.uid, "operator": c.operator})


async def submit(request: web.Request) -> web.Response:
    request.app[SUBMIT_RATE].take(request["caller"].user, time.monotonic())
    body: models.SubmitRequest = await _body(request, models.SubmitRequest)
    ids, warnings = await _admit(request, body.model_dump())
    return web.json_response({"job_ids": ids, "warnings": warnings}, status=201)


async def submit_form(request: web.Request) -> web.Response:
    """The web UI's submit: the script and the form's fields, built into a request here by
    mbatch's own code (melond/api/webform.py), then admitted as mbatch's would be."""
    caller: Caller = request["caller"]
    request.app[SUBMIT_RATE].take(caller.user, time.monotonic())
    body: models.FormSubmission = await _body(request, models.FormSubmission)
    built, warnings = webform.request(body.script, body.options, body.args, _account(caller), time.time())
    try:
        req = models.SubmitRequest.model_validate(built).model_dump()
    except ValidationError as exc:
        raise BadRequest("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    ids, admitted = await _admit(request, req)
    return web.json_response({"job_ids": ids, "warnings": warnings + admitted}, status=201)


async def read_directives(request: web.Request) -> web.Response:
    """What the script's directives set, for the form; a value mbatch would refuse is a 400 now."""
    body: models.ScriptText = await _body(request, models.ScriptText)
    fields, _ = webform.directives(body.script)
    built, warnings = webform.request(body.script, {}, [], _account(request["caller"]), time.time())
    return web.json_response({"options": fields, "warnings": warnings, "request": dry_run_view(built, warnings)})


def _account(caller: Caller):
    entry = nss.by_uid(caller.uid)
    if entry is None:
        raise Forbidden(f"uid {caller.uid} has no account on this machine; jobs need a named user")
    return entry


async def _admit(request: web.Request, req: dict) -> tuple[list[int], list[str]]:
    """A whole request through the caps and the caller's account into the queue: ids, warnings."""
    engine = request.app[ENGINE]
    caller: Caller = request["caller"]
    caps.check_submission(req, engine.inv.limits)
    if os.geteuid() != 0 and caller.uid != os.geteuid():
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise Forbidden(f"melond runs as {me} without root, so it can only run {me}'s jobs; "
                        f"ask {me}, or run melond as root")
    entry = _account(caller)
    return await engine.ops.submit(req, caller, Submitter(caller.user, caller.uid, entry.pw_gid))


async def list_jobs(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    q = request.query
    try:
        states = parse_states(q["state"]) if q.get("state") else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    ids = _int_list(q.get("ids"))
    if states is None and not q.get("all") and ids is None:
        states = set(ACTIVE)
    if ids is None and any(k in q for k in PAGE_PARAMETERS):
        return web.json_response(await _page(request, states))
    if states is not None and states <= ACTIVE and ids is None:
        rows = [j for j in engine.jobs.listed() if j.state in states]
        if q.get("user"):
            rows = [j for j in rows if j.user == q["user"]]
        rows.sort(key=lambda j: j.id)
    else:  # the history: read off the event loop
        wanted = [s.value for s in states] if states is not None else None
        since = _seconds(q["ended_since"], "ended_since") if q.get("ended_since") else None
        rows = await engine.store.read(lambda db: db.jobs(states=wanted, user=q.get("user") or None, ids=ids,
                                                          ended_since=since))
    fields = parse_fields(q.get("fields"))
    caller, now, loop, fold = request["caller"], time.time(), engine.loop, bool(q.get("fold"))
    # A long listing in slices, other requests answered between them: each job's view is of one
    # moment, the listing's of a few (a job may change between slices, as between pages)
    views: list[dict] = []
    async for part in slices(folded(rows) if fold else rows):
        views += entry_views(part, caller, now, fields, loop.expected_starts, loop.expected_nodes) if fold \
            else listing(part, caller, now, fields, False, loop.expected_starts, loop.expected_nodes)
    return await _json({"jobs": views}, len(views))


async def _json_each(data: dict) -> web.Response:
    """`_each`'s reply: one job's, or an array's tasks' outcomes."""
    return await _json(data, len(data.get("jobs", ())))


async def _json(data: dict, items: int) -> web.Response:
    """A reply; a long one (a listing or a bulk act over 100,000 jobs) has its long lists encoded
    a slice at a time, other users' requests answered between slices. (Not on a thread: the JSON
    encoder holds the interpreter throughout, so a thread would stop the event loop as long.)"""
    if items <= SLICE:
        return web.json_response(data)
    members = []
    for key, value in data.items():
        if isinstance(value, list) and len(value) > SLICE:
            parts = [json.dumps(part)[1:-1] async for part in slices(value)]
            members.append(f"{json.dumps(key)}: [{', '.join(parts)}]")
        else:
            members.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return web.Response(text="{" + ", ".join(members) + "}", content_type="application/json")


PAGE_PARAMETERS = ("limit", "sort", "after", "name", "node", "partition")


async def _page(request: web.Request, states: set[State] | None) -> dict:
    """One page of the job list (the web UI's): filtered, sorted, from a cursor. The queue is
    paged from memory, arrays' pending tasks folded when asked; anything reaching into the
    history is paged from the store by keyset (melond.state.pages)."""
    engine, q = request.app[ENGINE], request.query
    sort, descending = pages.parse_sort(q.get("sort"))
    req = pages.PageRequest(
        states=tuple(sorted(s.value for s in states)) if states is not None else None,
        user=q.get("user") or None, name=q.get("name") or None, node=q.get("node") or None,
        partition=q.get("partition") or None, sort=sort, descending=descending,
        after=pages.decode_cursor(q["after"], sort) if q.get("after") else None, limit=pages.parse_limit(q.get("limit")))
    fields = parse_fields(q.get("fields"))
    loop, now = engine.loop, time.time()
    if states is not None and states <= ACTIVE:
        selected = pages.select(engine.jobs.listed(), req)
        entries = folded(selected) if q.get("fold") else [(j, None, 1) for j in selected]
        total = len(entries)
        entries, more = pages.window(entries, req, lambda e: e[0])
    else:
        jobs, more, total = await engine.store.read(lambda db: db.page(req))
        entries = [(j, None, 1) for j in jobs]
    last = entries[-1][0] if entries and more else None
    return {"jobs": entry_views(entries, request["caller"], now, fields, loop.expected_starts, loop.expected_nodes),
            "next": pages.encode_cursor(getattr(last, sort), last.id) if last else None, "total": total}


async def accounting(request: web.Request) -> web.Response:
    """`macct`: jobs pending or running at some time in [start, end] (epoch seconds; default the
    last day), read from the store off the event loop."""
    q = request.query
    now = time.time()
    end = _seconds(q["end"], "end") if q.get("end") else now
    start = _seconds(q["start"], "start") if q.get("start") else end - 86400
    if start > end:
        raise BadRequest("start is after end; give a start time before the end time")
    try:
        states = [s.value for s in parse_states(q["state"])] if q.get("state") else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    users = [u for u in q["user"].split(",") if u] if q.get("user") else None
    ids = _int_list(q.get("ids"))
    columns = [c for c in q.get("fields", "").split(",") if c] or list(ACCOUNTING_COLUMNS)
    unknown = [c for c in columns if c not in ACCOUNTING_COLUMNS]
    if unknown:
        raise BadRequest(f"unknown accounting field(s) {', '.join(map(repr, unknown))} in `fields`; "
                         f"known: {', '.join(ACCOUNTING_COLUMNS)}")
    read = columns if "user" in columns else [*columns, "user"]  # whose each row is decides what it shows
    if "node" in columns and "parts" not in columns:
        read = [*read, "parts"]
    rows = await request.app[ENGINE].store.read(
        lambda db: db.accounting(start, end, states=states, users=users, ids=ids, columns=read))
    shown = accounting_rows(rows, request["caller"], columns)
    if "node" in columns:  # a spanning job's nodes as sacct's NodeList, and how many
        for row, raw in zip(shown, rows):
            nodes = [p[0] for p in json.loads(raw["parts"])] if raw.get("parts") else [raw["node"]] * bool(raw["node"])
            row["node"], row["num_nodes"], row["batch_host"] = node_list(nodes), len(nodes), raw["node"]
    if q.get("steps") == "1":  # sacct's step rows: each job's srun steps, for the row to show under it
        steps = await request.app[ENGINE].store.read(lambda db: db.steps([r["id"] for r in rows]))
        by_job: dict[int, list] = {}
        for s in steps:
            by_job.setdefault(s.job_id, []).append({**s.public(), "num_nodes": len(expand_hostlist(s.node or ""))})
        for row, raw in zip(shown, rows):
            row["steps"] = by_job.get(raw["id"], [])
    return web.json_response({"jobs": shown, "start": start, "end": end})


async def running_steps(request: web.Request) -> web.Response:
    """`squeue -s`: every running step, with its job's owner, name and partition."""
    engine = request.app[ENGINE]
    srun_steps: dict[int, list] = {}
    for s in engine.store.running_steps():
        srun_steps.setdefault(s.job_id, []).append(s.public())
    out = []
    for job in engine.jobs.running():
        batch = {"job_id": job.id, "run": job.run, "step_id": "batch", "name": "batch", "state": "RUNNING",
                 "node": job.node, "ntasks": 1, "cpus": job.placed[0].cpus if job.placed else job.cpus,
                 "start_time": job.start_time}
        for s in [batch, *srun_steps.get(job.id, [])]:
            out.append({**s, "user": job.user, "partition": job.partition, "array_job_id": job.array_job_id,
                        "array_task_id": job.array_task_id})
    return web.json_response({"steps": out})


async def show_job(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    jid = _job_id(request)
    caller: Caller = request["caller"]
    job = engine.ops.find(jid)
    check_owner(job, caller, "show")
    wait = _seconds(request.query.get("wait"), "wait")
    if wait > 0 and job.state in ACTIVE:
        job = await engine.ops.wait_ended(jid, min(wait, MAX_WAIT)) or job
    view = job_view(job, caller)
    view["events"] = engine.store.events(jid)
    view["steps"] = [s.public() for s in engine.store.steps([jid])]
    view["attached"] = engine.terminals.attached(jid)  # terminals open in it now (salloc, srun --pty)
    # a limit that holds it, or the jobs ahead of it and the plan's start for it, in words
    view["why_waiting"] = engine.ops.why_waiting(job, engine.loop.expected_starts.get(jid),
                                                 engine.loop.expected_nodes.get(jid))
    view["extension_requests"] = await engine.requests.of_job(jid)
    ended = [e["data"].get("backend") for e in view["events"] if e["kind"] == "ended"]
    node = engine.nodes.get(job.node or "")
    here = node.link_limits.get(job.user, (node.backend,))[0] if node else None  # a personal node: the user's own
    view["backend"] = (ended[-1] if ended else None) or here
    if node is not None and (node.personal is not None or node.only_user):  # not the user's own uid switch
        view["runs_as"] = engine.sessions.login(node.name, job.user) or node.only_user
    return web.json_response(view)


async def job_output(request: web.Request) -> web.Response:
    """A job's output file from `offset` (default: its last `limit` bytes), read on its node."""
    q = request.query
    stream = q.get("stream", "output")
    if stream not in ("output", "error"):
        raise BadRequest(f"stream is output or error, not {stream[:50]!r}")
    offset = int(_seconds(q["offset"], "offset")) if q.get("offset") else -1
    limit = int(_seconds(q.get("limit") or str(OUTPUT_READ), "limit"))
    return web.json_response(await request.app[ENGINE].ops.read_output(
        _job_id(request), request["caller"], stream, offset, min(limit, OUTPUT_READ)))


async def job_terminal(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    return await terminal.serve(request, engine, lambda: engine.ops.find(_job_id(request)))


async def job_ask(request: web.Request) -> web.StreamResponse:
    """srun's asks from an allocation's shell on the login node (melond/api/allocation.py)."""
    engine = request.app[ENGINE]
    body: models.StepAsk = await _body(request, models.StepAsk)
    return await allocation.ask(request, engine, engine.ops.find(_job_id(request)), body)


async def job_allocation(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response(allocation.shell_environment(engine, engine.ops.find(_job_id(request)),
                                                          request["caller"]))


async def relinquish_job(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body: models.Relinquish = await _body(request, models.Relinquish)
    return web.json_response(await allocation.relinquish(engine, engine.ops.find(_job_id(request)),
                                                         request["caller"], body.exit_code))


async def job_script(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].ops.script(_job_id(request), request["caller"]))


async def cancel_job(request: web.Request) -> web.Response:
    ops, caller = request.app[ENGINE].ops, request["caller"]
    return await _json_each(await _each(request, ACTIVE, lambda jid: ops.cancel(jid, caller),
                                        lambda ids: ops.cancel_many(ids, caller)))


async def extend_job(request: web.Request) -> web.Response:
    body: models.ExtendRequest = await _body(request, models.ExtendRequest)
    if (body.add is not None) + (body.to is not None) + body.max != 1:
        raise BadRequest("give exactly one of `add` (seconds to add), `to` (a new total limit) or `max` (as much "
                         "as delays no waiting job)")
    ops, caller = request.app[ENGINE].ops, request["caller"]
    # An array's tasks in one transaction, except where each gets an answer of its own (--max, --dry-run)
    bulk = None if body.max or body.dry_run else lambda ids: ops.extend_many(ids, caller, add=body.add, to=body.to)
    return await _json_each(await _each(request, ACTIVE, lambda jid: ops.extend(
        jid, caller, add=body.add, to=body.to, largest=body.max, dry_run=body.dry_run), bulk))


async def signal_job(request: web.Request) -> web.Response:
    body: models.SignalRequest = await _body(request, models.SignalRequest)
    sig = signal_name(body.signal)  # a ParseError (400) that names the value and the forms
    ops, caller = request.app[ENGINE].ops, request["caller"]
    states = frozenset({State.RUNNING})
    return web.json_response(await _each(request, states, lambda jid: ops.signal(jid, caller, sig, body.to,
                                                                                  body.step)))


async def hold_job(request: web.Request) -> web.Response:
    ops, caller = request.app[ENGINE].ops, request["caller"]
    return await _json_each(await _each(request, PENDING, lambda jid: ops.set_hold(jid, caller, True),
                                        lambda ids: ops.set_hold_many(ids, caller, True)))


async def release_job(request: web.Request) -> web.Response:
    ops, caller = request.app[ENGINE].ops, request["caller"]
    return await _json_each(await _each(request, PENDING, lambda jid: ops.set_hold(jid, caller, False),
                                        lambda ids: ops.set_hold_many(ids, caller, False)))


async def file_extension_request(request: web.Request) -> web.Response:
    body: models.ExtensionRequestBody = await _body(request, models.ExtensionRequestBody)
    if (body.add is None) == (body.to is None):
        raise BadRequest("give exactly one of `add` (seconds to add) or `to` (a new total limit)")
    engine = request.app[ENGINE]
    return web.json_response(await engine.requests.file(_job_id(request), request["caller"], add=body.add,
                                                        to=body.to, reason=body.reason))


async def list_extension_requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": await request.app[ENGINE].requests.visible(request["caller"])})


def _request_id(request: web.Request) -> int:
    return _id(request.match_info["request_id"], "an extension request's id is a number (mextend --requests)")


async def approve_extension_request(request: web.Request) -> web.Response:
    body: models.Verdict = await _body(request, models.Verdict)
    return web.json_response(await request.app[ENGINE].requests.decide(
        _request_id(request), request["caller"], approve=True, verdict=body.reason))


async def deny_extension_request(request: web.Request) -> web.Response:
    body: models.Verdict = await _body(request, models.Verdict)
    return web.json_response(await request.app[ENGINE].requests.decide(
        _request_id(request), request["caller"], approve=False, verdict=body.reason))


async def withdraw_extension_request(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].requests.withdraw(_request_id(request),
                                                                         request["caller"]))


async def sign_in(request: web.Request) -> web.Response:
    """A token traded for a browser session of its own in a cookie (see melond/api/session.py)."""
    session.check_sign_in(request)
    body: models.SessionRequest = await _body(request, models.SessionRequest)
    found, cookie, expires = await request.app[TOKENS].sign_in(body.token, time.time())
    caller = found.caller
    response = web.json_response({"user": caller.user, "uid": caller.uid, "operator": caller.operator,
                                  "expires": expires})
    session.set_cookie(response, cookie, secure=request.secure, max_age=None)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """End the browser's session: its token is revoked, the cookie cleared (the token it was
    signed in with lives on)."""
    session.check_sign_in(request)
    token = session.cookie_token(request)
    ended = await request.app[TOKENS].sign_out(token, time.time()) if token else False
    response = web.json_response({"signed_out": True, "session_ended": ended})
    session.clear_cookie(response)
    return response


async def job_events(request: web.Request) -> web.StreamResponse:
    token_id = request.get("token_id")
    tokens_ = request.app[TOKENS]
    refusal = (lambda now: tokens_.refusal(token_id, now)) if token_id else None
    return await stream.events(request, request.app[ENGINE].store, request["caller"], refusal)


async def extension_budget(request: web.Request) -> web.Response:
    """What the caller's extension budgets have left (mextend --budget); `?user=` an operator's view of another's."""
    engine, caller = request.app[ENGINE], request["caller"]
    user = request.query.get("user") or caller.user
    if user != caller.user and not caller.operator:
        raise Forbidden(f"{caller.user} may see their own extension budget, not {user}'s")
    return web.json_response({"user": user, "budgets": engine.ops.budget(user)})


def _pending_job(request: web.Request) -> Job:
    job = request.app[ENGINE].ops.find(_job_id(request))
    if job.state is not State.PENDING:
        raise Conflict(f"job {job.id} is {job.state.value}; only a pending job's priority can be set")
    return job


async def set_priority(request: web.Request) -> web.Response:
    """scontrol update JobId=ID Priority=N: operators only, as in Slurm; kept until the job starts."""
    body: models.PriorityBody = await _body(request, models.PriorityBody)
    caller: Caller = request["caller"]
    if not caller.operator:
        raise Forbidden(f"{caller.user} is not an operator; only operators set a job's priority (scontrol top "
                        f"puts one of your jobs before your others)")
    job = _pending_job(request)
    await request.app[ENGINE].priorities.set(job, body.priority, caller.user)
    return web.json_response({"job_id": job.id, "priority": job.priority})


async def top_job(request: web.Request) -> web.Response:
    """scontrol top ID: the job first among its owner's jobs of its partition, account and QOS."""
    job = _pending_job(request)
    check_owner(job, request["caller"], "top")
    await request.app[ENGINE].priorities.top(job, request["caller"].user)
    return web.json_response({"job_id": job.id, "priority": job.priority})


async def list_priorities(request: web.Request) -> web.Response:
    """sprio: pending jobs' priorities and weighted factors, and the weights."""
    engine = request.app[ENGINE]
    return web.json_response({"weights": engine.priorities.weights_view(), "jobs": engine.priorities.pending()})


async def list_shares(request: web.Request) -> web.Response:
    """sshare: the association tree's shares, decayed usage, LevelFS and fair-share."""
    return web.json_response({"shares": request.app[ENGINE].priorities.shares()})


async def list_associations(request: web.Request) -> web.Response:
    """sacctmgr show: the inventory's accounts, users, QOS and associations (read-only)."""
    inv = request.app[ENGINE].inv
    accounts = {name: a.model_dump() for name, a in inv.accounts.items()}
    qos = {"normal": {}, **{name: q.model_dump(exclude_none=True) for name, q in inv.qos.items()}}
    users = {user: {"default_account": u.default_account} for user, u in inv.users.items()}
    return web.json_response({"accounts": accounts, "qos": qos, "users": users})


async def show_config(request: web.Request) -> web.Response:
    """The settings a Slurm tool asks `scontrol show config` for, as this melond has them."""
    inv = request.app[ENGINE].inv
    return web.json_response({
        "cluster_name": "melon", "kill_wait": inv.kill_wait, "max_batch_requeue": inv.max_batch_requeue,
        "max_array_tasks": MAX_ARRAY_TASKS, "node_timeout": inv.node_timeout,
        "return_to_service": inv.return_to_service, "tasks_max": inv.tasks_max,
        "default_partition": inv.default_partition(), "operators": inv.operators,
        "launch_parameters": "use_interactive_step" if inv.use_interactive_step else "",
    })


async def requeue_job(request: web.Request) -> web.Response:
    ops, caller = request.app[ENGINE].ops, request["caller"]
    states = frozenset({State.RUNNING})
    return web.json_response(await _each(request, states, lambda jid: ops.requeue(jid, caller)))


async def list_partitions(request: web.Request) -> web.Response:
    """Each partition's time and size rules and nodes (`sinfo`); the default one marked."""
    engine = request.app[ENGINE]
    inv, default = engine.inv, engine.inv.default_partition()
    out = []
    for name in dict.fromkeys([*inv.partition_names(), *(n.partition for n in engine.nodes.values())]):
        p = inv.partition(name)
        out.append({"name": name, "default": name == default, "max_time": p.max_time, "default_time": p.default_time,
                    "max_extension": p.max_extension, "max_extensions": p.max_extensions,
                    "max_nodes": p.max_nodes, "min_nodes": p.min_nodes, "max_cpus_per_node": p.max_cpus_per_node,
                    "nodes": sorted(n.name for n in engine.nodes.values() if n.partition == name)})
    return web.json_response({"partitions": out})


async def list_nodes(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    running: dict[str, list[Job]] = {}  # from the index of running jobs, not a walk over 100,000 pending
    for j in [*engine.jobs.running(), *(j for j in engine.jobs.ending.values() if j.state is State.RUNNING)]:
        for node in j.nodes:
            running.setdefault(node, []).append(j)
    heard: dict[str, float] = {}  # a node's last word on any of its connections
    for link, session in engine.sessions.items():
        node, _ = split(link)
        if session.last_heard is not None and session.last_heard > heard.get(node, 0):
            heard[node] = session.last_heard
    reply: dict = {"nodes": [node_view(n, running.get(n.name, []), heard.get(n.name)) for n in engine.nodes.values()]}
    if engine.leadership is not None:  # two melonds over one database: who leads, since when, which epoch
        reply["leader"] = metrics.leader_info(engine.leadership).model_dump(exclude_none=True)
    return web.json_response(reply)


async def drain_node(request: web.Request) -> web.Response:
    body: models.NodeAction = await _body(request, models.NodeAction)
    return web.json_response(await request.app[ENGINE].nodes_life.drain(request.match_info["name"],
                                                                        request["caller"], body.reason))


async def resume_node(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].nodes_life.resume(request.match_info["name"],
                                                                         request["caller"]))


async def down_node(request: web.Request) -> web.Response:
    body: models.NodeAction = await _body(request, models.NodeAction)
    return web.json_response(await request.app[ENGINE].nodes_life.take_down(request.match_info["name"],
                                                                            request["caller"], body.reason))


async def create_token(request: web.Request) -> web.Response:
    body: models.TokenRequest = await _body(request, models.TokenRequest)
    reply = await request.app[TOKENS].issue(request["caller"], body.ttl or tokens.DEFAULT_TTL, time.time(),
                                            request["over_socket"])
    return web.json_response(reply, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    everyone = bool(request.query.get("all"))
    return web.json_response({"tokens": request.app[TOKENS].list(request["caller"], everyone)})


async def revoke_tokens(request: web.Request) -> web.Response:
    body: models.RevokeRequest = await _body(request, models.RevokeRequest)
    done = await request.app[TOKENS].revoke(request["caller"], body.ids, body.all, time.time())
    return web.json_response({"revoked": done})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[monitor.MONITOR].stats().model_dump())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f"no API route {request.method} {request.path}; see {PREFIX}/openapi.json")


ROUTES = [
    ("GET", "/whoami", whoami, None, None, "who the server thinks you are"),
    ("POST", "/jobs", submit, models.SubmitRequest, models.SubmitReply, "submit a batch job (or an array)"),
    ("POST", "/jobs/form", submit_form, models.FormSubmission, models.SubmitReply,
     "submit a script with options by mbatch's names (the web UI's form); they win over its directives"),
    ("POST", "/directives", read_directives, models.ScriptText, None,
     "the options a script's #MBATCH/#SBATCH lines set, read by mbatch's parser (the web UI pre-fills its form)"),
    ("GET", "/jobs", list_jobs, None, None,
     "list jobs; ?state=R,PD&user=&ids=1,2&all=1&ended_since=EPOCH&fields=id,state (only these)&fold=1 (arrays' pending "
     "tasks folded). Paged (reply: jobs, next, total) when given any of ?limit=N (1-500) &sort=COLUMN or -COLUMN "
     "&after=NEXT &name=PREFIX &node= &partition="),
    ("GET", "/accounting", accounting, None, None,
     "jobs pending or running at some time in [start, end] (epoch seconds), with what they used; "
     "?start=&end=&state=&user=&ids=&fields="),
    ("GET", "/steps", running_steps, None, None, "running steps (squeue -s)"),
    ("GET", "/jobs/{job_id}", show_job, None, None,
     "one job (`13` or an array task `13_4`) with its events; ?wait=SECONDS blocks until it ends"),
    ("GET", "/jobs/{job_id}/output", job_output, None, None,
     "a job's output file read on its node (owner and operators): ?stream=output|error&offset=BYTES (default: "
     "the tail)&limit=BYTES (at most 65536); reply: text, offset, size"),
    ("GET", "/jobs/{job_id}/script", job_script, None, None, "a job's script and arguments (owner and operators)"),
    ("GET", "/jobs/{job_id}/terminal", job_terminal, models.TerminalOpen, None,
     "a WebSocket: a terminal on a running interactive job's first node (its owner); send TerminalOpen, then "
     "TerminalInput frames; receive step, data, notice, error and exit frames"),
    ("POST", "/jobs/{job_id}/ask", job_ask, models.StepAsk, None,
     "srun's step asks from an allocation's shell on the login node (use_interactive_step off); step_launch "
     "answers with JSON lines"),
    ("GET", "/jobs/{job_id}/allocation", job_allocation, None, None,
     "where salloc runs its command (interactive_step) and the allocation's SLURM_* variables for a login shell"),
    ("POST", "/jobs/{job_id}/relinquish", relinquish_job, models.Relinquish, None,
     "end an interactive allocation whose command ran on the login node, with its exit code (salloc)"),
    ("POST", "/jobs/cancel", bulk_cancel, models.JobIds, None,
     "cancel many jobs by their own ids (what a filter picked): pending ones in one transaction (reply: jobs, "
     "errors)"),
    ("POST", "/jobs/hold", bulk_hold, models.JobIds, None, "hold many pending jobs by their ids, in one transaction"),
    ("POST", "/jobs/release", bulk_release, models.JobIds, None,
     "release many held jobs by their ids, in one transaction"),
    ("POST", "/jobs/{job_id}/cancel", cancel_job, None, None,
     "cancel a pending or running job; an array's id cancels each task (reply: jobs, errors)"),
    ("POST", "/jobs/{job_id}/extend", extend_job, models.ExtendRequest, None,
     "extend a job's time limit; an array's id extends each unfinished task"),
    ("POST", "/jobs/{job_id}/signal", signal_job, models.SignalRequest, None,
     "send a signal to a running job's processes (all, its steps, or its batch shell); an array's id "
     "signals each running task"),
    ("POST", "/jobs/{job_id}/hold", hold_job, None, None, "hold a pending job; an array's id holds each pending task"),
    ("POST", "/jobs/{job_id}/release", release_job, None, None,
     "release a held job; an array's id releases each pending task"),
    ("POST", "/jobs/{job_id}/requeue", requeue_job, None, None,
     "send a running or ended job back to the queue under its own id (scontrol requeue)"),
    ("POST", "/jobs/{job_id}/extension-requests", file_extension_request, models.ExtensionRequestBody, None,
     "ask an operator for more time than policy grants"),
    ("GET", "/extension-requests", list_extension_requests, None, None,
     "your extension requests (operators: everyone's), newest first"),
    ("POST", "/extension-requests/{request_id}/approve", approve_extension_request, models.Verdict, None,
     "approve another user's request (operators): the extension applies at once"),
    ("POST", "/extension-requests/{request_id}/deny", deny_extension_request, models.Verdict, None,
     "deny another user's request, saying why (operators)"),
    ("POST", "/extension-requests/{request_id}/withdraw", withdraw_extension_request, None, None,
     "withdraw your own pending request"),
    ("POST", "/session", sign_in, models.SessionRequest, None,
     "sign a browser in (Content-Type: application/json, X-Melon-CSRF: 1, same Origin): a token traded for a "
     "session token of its own in an HttpOnly cookie (then send X-Melon-CSRF: 1 to change things)"),
    ("DELETE", "/session", sign_out, None, None,
     "sign the browser out: its session token is revoked and the cookie cleared (the token pasted lives on)"),
    ("GET", "/events", job_events, None, None,
     "the job event log as server-sent events (id: seq; data: seq, job_id, kind, time), only the events the "
     "caller may learn of; ?after=SEQ|now. Ends with an `end` event when the caller's token is revoked or expires"),
    ("POST", "/jobs/{job_id}/priority", set_priority, models.PriorityBody, None,
     "set a pending job's priority (operators; scontrol update Priority=)"),
    ("POST", "/jobs/{job_id}/top", top_job, None, None,
     "put a pending job first among its owner's jobs of its partition, account and QOS (scontrol top)"),
    ("GET", "/extension-budget", extension_budget, None, None,
     "what your extension budgets (per QOS and account) have left, and when what was spent frees up"),
    ("GET", "/priorities", list_priorities, None, None, "pending jobs' priorities and weighted factors (sprio)"),
    ("GET", "/shares", list_shares, None, None, "the association tree's shares, usage and fair-share (sshare)"),
    ("GET", "/associations", list_associations, None, None,
     "accounts, users and QOS as the inventory has them (sacctmgr show)"),
    ("GET", "/config", show_config, None, None, "the settings Slurm tools read from `scontrol show config`"),
    ("GET", "/nodes", list_nodes, None, None, "nodes with allocation and limit backend"),
    ("GET", "/partitions", list_partitions, None, None, "partitions: time rules, extension policy, nodes, the default"),
    ("POST", "/nodes/{name}/drain", drain_node, models.NodeAction, None, "start nothing more on a node (operators)"),
    ("POST", "/nodes/{name}/resume", resume_node, None, None, "return a drained node to service (operators)"),
    ("POST", "/nodes/{name}/down", down_node, models.NodeAction, None, "drain a node and kill its jobs (operators)"),
    ("POST", "/tokens", create_token, models.TokenRequest, models.TokenReply,
     "a new token for the TCP API (Unix socket only)"),
    ("GET", "/tokens", list_tokens, None, None, "your tokens, never their secrets; ?all=1 everyone's (operators)"),
    ("POST", "/tokens/revoke", revoke_tokens, models.RevokeRequest, None, "revoke tokens at once"),
    ("GET", "/stats", stats, None, models.StatsReply,
     "melond's figures since it started: jobs submitted, started and ended, scheduling passes, commits, requests "
     "by route (`minfo --stats`, `sdiag`)"),
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
    schemas.update(models.HealthReply.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {}))
    schemas["HealthReply"] = models.HealthReply.model_json_schema(ref_template="#/components/schemas/{model}")
    health = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HealthReply"}}}}
    paths[monitor.HEALTH_PATH] = {"get": {"summary": "no token, no job's data: whether a write reaches the "
                                                     "database, and nodes up; 503 when it does not",
                                          "responses": {"200": {"description": "healthy", **health},
                                                        "503": {"description": "not healthy", **health}}}}
    paths[monitor.METRICS_PATH] = {"get": {
        "summary": "Prometheus text (OpenMetrics when asked for): jobs, nodes, scheduler, API, store and node "
                   "figures; a token over TCP unless the inventory's [metrics] public",
        "responses": {"200": {"description": "the series", "content": {"text/plain": {}}}}}}
    return {"openapi": "3.1.0", "info": {"title": "melond", "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}


def _int_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    return [_id(x, "ids must be comma-separated numbers") for x in text.split(",") if x.strip()]


def _seconds(text: str | None, name: str) -> float:
    """A non-negative, finite number of seconds from a query parameter (absent = 0)."""
    try:
        value = float(text or 0)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds, not {text[:100]!r}") from None
    if not 0 <= value < float("inf"):
        raise BadRequest(f"{name} must be a finite number of seconds, at least 0, not {text[:100]}")
    return value


@web.middleware
async def only_while_leading(request: web.Request, handler) -> web.StreamResponse:
    """The leader's API, while it may act: a melond that has lost (or may have lost) its lease,
    one waking from a pause included, answers `not_leader` to every request but /health and
    /metrics, before anything else of it runs."""
    leadership = request.app[ENGINE].leadership
    if leadership is None or leadership.valid() or request.path in (monitor.HEALTH_PATH, monitor.METRICS_PATH):
        return await handler(request)
    return standby.refusal_response(leadership)


def make_app(engine: Engine, before: Sequence = ()) -> web.Application:
    """The API. `before`: middlewares that see each request first (a standby's, api/standby.py)."""
    limits = engine.inv.limits
    app = web.Application(middlewares=[guard.watch, *before, monitor.timed, only_while_leading, errors_and_identity],
                          client_max_size=caps.body_cap(limits))
    app[ENGINE] = engine
    app[monitor.MONITOR] = monitor.Monitor(engine)
    app[SUBMIT_RATE] = caps.SubmitRate(limits.submit_burst, limits.submit_rate)
    app[TOKENS] = TokenService(engine.store, engine.ops.caller)
    for method, path, handler, *_ in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
    ui.add_routes(app.router)
    monitor.add_routes(app.router)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app

