"""Extension requests: an owner asks for more than policy grants, an operator decides.

A request is a record (its id, the time asked, why, its state: pending, approved, denied,
withdrawn, expired; who decided, when, why) and an event in the job's history at each step.
Approval applies the extension at once, as an operator's, so the node learns the new limit; a
request for a job that ended expires. Owners see their own requests; operators see all and
decide those of others: nobody decides their own.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from melond.engine.operations import Operations
from melond.errors import BadRequest, Conflict, Forbidden, NotFound
from melond.sched import policy
from melond.sched.policy import Caller
from melond.spec.states import FINISHED
from melond.state.store import Store

PENDING = "pending"


class ExtensionRequests:
    def __init__(self, store: Store, ops: Operations) -> None:
        self.store, self.ops = store, ops
        self.on_decided: Callable[[dict], None] | None = None  # tells the owner (their notices)

    async def file(self, job_id: int, caller: Caller, *, add: int | None, to: int | None, reason: str) -> dict:
        job = self.ops.find(job_id)
        policy.check_owner(job, caller, "ask more time for")
        if not reason.strip():
            raise BadRequest("say why the job needs the time: --reason TEXT (the operator who decides reads it)")
        limit = policy.new_limit(job, add=add, to=to)  # refuses a finished job, or one without a limit
        now = time.time()
        row = {"job_id": job_id, "user": caller.user, "uid": caller.uid, "add_seconds": add, "to_limit": to,
               "reason": reason.strip(), "state": PENDING, "created": now}
        rid = await self.store.write(Store.op_file_request, row, caller.user,
                                     {"add": add, "to": to, "limit_now": job.time_limit, "new_limit": limit,
                                      "reason": reason.strip()})
        return {**row, "id": rid, "new_limit": limit}

    async def visible(self, caller: Caller) -> list[dict]:
        """The caller's requests (an operator: everyone's), those of ended jobs expired first."""
        rows = self.store.extension_requests(user=None if caller.operator else caller.user)
        return [await self._settle_if_ended(r) for r in rows]

    async def of_job(self, job_id: int) -> list[dict]:
        return [await self._settle_if_ended(r) for r in self.store.extension_requests(job_id=job_id)]

    async def decide(self, request_id: int, caller: Caller, *, approve: bool, verdict: str | None) -> dict:
        req = self._find(request_id, caller)
        action = "approve" if approve else "deny"
        if not caller.operator:
            raise Forbidden(f"only an operator may {action} extension request {request_id}")
        if caller.user == req["user"]:
            raise Forbidden(f"extension request {request_id} is your own: another operator must {action} it")
        if not approve and not (verdict or "").strip():
            raise BadRequest("say why it is denied: --reason TEXT (its owner reads it)")
        req = await self._settle_if_ended(req)
        if req["state"] != PENDING:
            raise Conflict(f"extension request {request_id} is {req['state']} already")
        result = None
        if approve:
            result = await self.ops.extend(req["job_id"], caller, add=req["add_seconds"], to=req["to_limit"],
                                           via=f"request {request_id}")
        if not await self.store.write(Store.op_decide_request, request_id, "approved" if approve else "denied",
                                      caller.user, (verdict or "").strip() or None, time.time()):
            raise Conflict(f"extension request {request_id} was settled meanwhile")
        decided = self._find(request_id, caller)
        if self.on_decided is not None:
            self.on_decided(decided)
        return {**decided, "extension": result}

    async def withdraw(self, request_id: int, caller: Caller) -> dict:
        req = self._find(request_id, caller)
        if caller.user != req["user"]:
            raise Forbidden(f"extension request {request_id} is {req['user']}'s: only they may withdraw it")
        if not await self.store.write(Store.op_decide_request, request_id, "withdrawn", caller.user, None, time.time()):
            raise Conflict(f"extension request {request_id} is {self._find(request_id, caller)['state']} already")
        return self._find(request_id, caller)

    def _find(self, request_id: int, caller: Caller) -> dict:
        rows = self.store.extension_requests(request_id=request_id)
        if not rows or not (caller.operator or rows[0]["user"] == caller.user):
            # Someone else's request is not shown to exist, as another user's job's details are not.
            raise NotFound(f"no extension request {request_id} of yours; `mextend --requests` lists them")
        return rows[0]

    async def _settle_if_ended(self, req: dict) -> dict:
        if req["state"] == PENDING:
            job = self.ops.find(req["job_id"])
            if job.state in FINISHED:
                await self.store.write(Store.op_decide_request, req["id"], "expired", "melond",
                                       f"the job ended ({job.state.value}) before a decision", time.time())
                return self.store.extension_requests(request_id=req["id"])[0]
        return req
