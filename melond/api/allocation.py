"""An interactive allocation whose shell runs on the login node (the inventory's
`use_interactive_step = false`): the srun typed in it asks through the API what an srun on a
node asks through its job channel (`POST /jobs/{id}/ask`, the same requests and answers,
melond/engine/asks.py), salloc learns where its command runs and the allocation's variables
(`GET /jobs/{id}/allocation`), and ends the allocation with its command's exit code
(`POST /jobs/{id}/relinquish`).

A streamed ask (`step_launch`) is answered as JSON lines: each of its tasks' lines as it comes,
the answer last. Should the srun's connection go first, its tasks are killed, as when an srun on
a node is killed.
"""
from __future__ import annotations

import asyncio
import itertools
import json

from aiohttp import web

from melond.api.models import StepAsk
from melond.api.terminal import check_attachable
from melond.engine.engine import Engine
from melond.engine.relay import LOGIN
from melond.sched.launch import job_environment
from melond.sched.policy import Caller
from melond.state.job import Job

_asks = itertools.count(1)
NODE_OWN = frozenset({"SLURMD_NODENAME", "SLURM_NODENAME", "MELON_NODENAME", "SLURM_NODEID", "SLURM_PROCID",
                      "SLURM_LOCALID", "SLURM_CPUS_ON_NODE", "SLURM_UMASK", "MELON_UMASK"})
WATCH = 1.0  # seconds between looks at whether the srun waiting on a stream is still there


async def ask(request: web.Request, engine: Engine, job: Job, body: StepAsk) -> web.StreamResponse:
    check_attachable(job, request["caller"])
    wanted = body.model_dump(exclude_none=True)
    origin = (LOGIN, next(_asks))
    if body.op != "step_launch":
        return web.json_response(await engine.asks.step_ask(job, None, wanted, origin, _nowhere))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    lost: list[bool] = []

    def srun_gone() -> None:
        if not lost:
            lost.append(True)
            engine.tasks.spawn(engine.asks.gone(origin))  # its tasks go too, as an srun's on a node

    async def deliver(line: dict) -> None:
        if lost:
            return
        try:
            await response.write(json.dumps(line).encode() + b"\n")
        except (ConnectionError, OSError):
            srun_gone()
    # shielded: the tasks are stopped when srun's connection goes, not orphaned with this handler
    answering = asyncio.ensure_future(engine.asks.step_ask(job, None, wanted, origin, deliver))
    try:
        while not answering.done():
            await asyncio.wait([answering], timeout=WATCH)
            if request.transport is None or request.transport.is_closing():
                srun_gone()
        await deliver(answering.result())
    except asyncio.CancelledError:
        srun_gone()
        raise
    if not lost:
        await response.write_eof()
    return response


def shell_environment(engine: Engine, job: Job, caller: Caller) -> dict:
    """What salloc needs to run its command on the login node: whether the inventory has it run
    there at all (not with use_interactive_step), and the allocation's SLURM_* and MELON_*
    variables as a shell outside its nodes has them (Slurm's salloc sets these: no node's own)."""
    check_attachable(job, caller)
    hosts = engine.inv.job_host_names()
    env = job_environment(job, hosts.get(job.node or "", job.node or ""), hosts=hosts)
    return {"interactive_step": engine.inv.use_interactive_step,
            "environment": {k: v for k, v in env.items() if k.startswith(("SLURM_", "MELON_")) and k not in NODE_OWN}}


async def relinquish(engine: Engine, job: Job, caller: Caller, exit_code: int) -> dict:
    check_attachable(job, caller)
    await engine.terminals.release(job, exit_code)
    return {"job_id": job.id, "exit_code": exit_code}


async def _nowhere(line: dict) -> None:
    """A plain ask streams nothing."""
