"""How jobs and nodes look to API clients: stored rows in, JSON-ready dicts out."""
from __future__ import annotations

import os
import time

from melond.nodes.state import NodeState
from melond.sched.launch import expand_pattern
from melond.spec.states import SHORT
from melond.state.job import MIB, Job


def job_view(job: Job, now: float | None = None) -> dict:
    """A job for listings and mshow: its public fields (no script, no environment: they may hold
    secrets) and what follows from them."""
    now = time.time() if now is None else now
    out = job.public()
    node = job.node or "%N"
    out["state_name"] = job.state.value
    out["state"] = SHORT[job.state]
    out["output_path"] = os.path.join(job.chdir, expand_pattern(job.output, job, node))
    out["error_path"] = (os.path.join(job.chdir, expand_pattern(job.error, job, node))
                         if job.error else out["output_path"])
    out["deadline"] = job.deadline
    start = job.start_time
    out["elapsed"] = (job.end_time or now) - start if start else 0.0
    return out


def node_view(node: NodeState, running: list[Job]) -> dict:
    """A node with what is allocated on it, in minfo's terms."""
    used_cpus = sum(j.cpus for j in running)
    used_mem = sum(j.memory for j in running) // MIB
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
