"""How jobs and nodes look to API clients: stored rows in, JSON-ready dicts out."""
from __future__ import annotations

import os
import time

from melond.sched.launch import expand_pattern
from melond.spec.states import SHORT, State

HIDDEN = ("script", "environment", "gid")


def job_view(job: dict, now: float | None = None) -> dict:
    """A job for listings and mshow: no script or environment (they may hold secrets)."""
    now = time.time() if now is None else now
    out = {k: v for k, v in job.items() if k not in HIDDEN and not k.startswith("_")}
    state = State(job["state"])
    node = job.get("node") or "%N"
    out["state_name"] = state.value
    out["state"] = SHORT[state]
    out["output_path"] = os.path.join(job["chdir"], expand_pattern(job["output"], job, node))
    out["error_path"] = (os.path.join(job["chdir"], expand_pattern(job["error"], job, node))
                         if job.get("error") else out["output_path"])
    start, limit = job.get("start_time"), job["time_limit"]
    out["deadline"] = start + limit if start and limit else None
    end = job.get("end_time")
    out["elapsed"] = (end or now) - start if start else 0.0
    out["hold"] = bool(job.get("hold"))
    out["requeue"] = bool(job.get("requeue"))
    return out


def node_view(node, running: list[dict]) -> dict:
    """A node with what is allocated on it, in minfo's terms."""
    used_cpus = sum(j["cpus"] for j in running)
    used_mem = sum(j["memory"] for j in running) // (1024 * 1024)
    if not node.up:
        state = "down"
    elif node.drain is not None:
        state = "draining" if running else "drained"
    elif used_cpus == 0 and used_mem == 0:
        state = "idle"
    elif used_cpus >= node.cpus or used_mem >= node.memory:
        state = "allocated"
    else:
        state = "mixed"
    return {
        "name": node.name, "partition": node.partition, "state": state, "reason": node.drain or (node.reason if not node.up else None),
        "cpus": node.cpus, "cpus_used": used_cpus, "memory": node.memory, "memory_used": used_mem,
        "backend": node.backend, "backend_reason": node.backend_reason, "jobs": len(running),
        "enforcement": node.backend != "none",
    }
