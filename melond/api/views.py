"""How jobs and nodes look to API clients: stored rows in, JSON-ready dicts out."""
from __future__ import annotations

import time

from melond.errors import BadRequest
from melond.nodes.state import NodeState
from melond.sched.launch import job_file
from melond.sched.policy import Caller, withheld
from melond.spec.cpulist import parse_cpuset
from melond.spec.gres import foreign, format_gres, format_used, held, node_gres
from melond.spec.folding import fold_pending
from melond.spec.states import SHORT, State
from melond.spec.timespec import ranged_hostlist
from melond.state.job import COLUMNS, MIB, PRIVATE, Job

# What job_view gives, for `GET /jobs?fields=`.
JOB_FIELDS = frozenset(c for c in COLUMNS if c not in PRIVATE) | {"state_name", "output_path", "error_path",
                                                                   "deadline", "elapsed", "expected_start",
                                                                   "expected_node", "num_tasks", "num_nodes",
                                                                   "node_list"}


def job_view(job: Job, viewer: Caller, now: float | None = None) -> dict:
    """A job for listings and mshow: its public fields (no script, no environment: they may hold
    secrets) and what follows from them, less those `viewer` may not see (another user's paths,
    arguments, comment: melond.sched.policy)."""
    now = time.time() if now is None else now
    hidden = withheld(viewer, job.user)
    out = {k: v for k, v in job.public().items() if k not in hidden}
    for name, derive in _DERIVED.items():
        if name not in hidden:
            out[name] = derive(job, now)
    return out


def _view(job: Job, viewer: Caller, now: float, fields: list[str] | None, expected: dict[int, float],
          nodes: dict[int, str] | None) -> dict:
    """The one way a listed job becomes JSON: all of its view, or just `fields`, as `viewer` may see it."""
    if not fields:
        return job_view(job, viewer, now)
    hidden = withheld(viewer, job.user)
    shown = [f for f in fields if f not in hidden] if hidden else fields
    return dict(zip(shown, field_view(job, now, shown, expected, nodes)))


def node_list(nodes: list[str]) -> str | None:
    """A job's nodes as Slurm lists them (`node[1-3]`), None before it starts."""
    return ranged_hostlist(nodes) if len(nodes) > 1 else (nodes[0] if nodes else None)


def _output_path(job: Job, now: float) -> str:
    return job_file(job, "output", job.node or "%N")


def _error_path(job: Job, now: float) -> str:
    return job_file(job, "error", job.node or "%N")


def _elapsed(job: Job, now: float) -> float:
    start = job.start_time
    return (job.end_time or now) - start if start else 0.0


# The fields a view adds to the stored ones, each computed only when asked for (`?fields=`).
_DERIVED = {
    "state_name": lambda job, now: job.state.value,
    "state": lambda job, now: SHORT[job.state],
    "output_path": _output_path,
    "error_path": _error_path,
    "deadline": lambda job, now: job.deadline,
    "num_tasks": lambda job, now: job.shape.ntasks,  # what srun runs without -n (SLURM_NTASKS)
    "num_nodes": lambda job, now: len(job.placed) or job.shape.nodes_min,
    "node_list": lambda job, now: node_list(job.nodes),
    "cpus_per_task": lambda job, now: job.shape.cpus_per_task,  # a job from before shapes: its CPUs
    "elapsed": _elapsed,
}


def accounting_rows(rows: list[dict], viewer: Caller, columns: list[str]) -> list[dict]:
    """Accounting rows (`macct`) as `viewer` may see them: `columns` of each, less another user's
    owner-only fields (the same rule as job_view's)."""
    out = []
    for row in rows:
        hidden = withheld(viewer, row["user"])
        out.append({c: row[c] for c in columns if c not in hidden})
    return out


def field_view(job: Job, now: float, fields: list[str], expected: dict[int, float],
               nodes: dict[int, str] | None = None) -> list:
    """Just `fields` of the job's view, in that order, computing nothing else. `expected_start`
    and `expected_node` (only asked for by name) are the scheduler's plan for a waiting job: when
    and where its reservation is, from `expected` and `nodes`."""
    return [expected.get(job.id) if f == "expected_start" else (nodes or {}).get(job.id) if f == "expected_node"
            else _DERIVED[f](job, now) if f in _DERIVED else getattr(job, f) for f in fields]


def parse_fields(text: str | None) -> list[str] | None:
    """`?fields=id,name,state`: only these in each listed job (a queue of 10,000 is 8 MB in full)."""
    if not text:
        return None
    wanted = [f for f in text.split(",") if f]
    unknown = [f for f in wanted if f not in JOB_FIELDS]
    if unknown:
        raise BadRequest(f"unknown job field(s) {', '.join(map(repr, unknown))} in `fields`; "
                         f"known: {', '.join(sorted(JOB_FIELDS))}")
    return wanted


def listing(jobs: list[Job], viewer: Caller, now: float, fields: list[str] | None, fold: bool,
            expected: dict[int, float], nodes: dict[int, str] | None = None) -> list[dict]:
    """The jobs as `GET /jobs` lists them. With `fold`, each array's pending tasks are folded the
    way mqueue shows them (melond.spec.folding) before any view is built, and each entry gets
    its `label` (`12`, `13_4` or `13_[5-9%3]`) and `folded` (how many tasks it stands for)."""
    if not fold:
        return [_view(j, viewer, now, fields, expected, nodes) for j in jobs]
    return entry_views(folded(jobs), viewer, now, fields, expected, nodes)


def folded(jobs: list[Job]) -> list[tuple[Job, str | None, int]]:
    """Each job, or for an array's pending tasks their first one, with its folded label and the
    number of tasks it stands for (1 and None for a job folded with nothing)."""
    sizes: dict = {}
    for j in jobs:
        if (k := _fold_key(j)) is not None:
            sizes[k] = sizes.get(k, 0) + 1
    return [(job, label, sizes[_fold_key(job)] if label else 1)
            for job, label in fold_pending(jobs, _fold_key, lambda j: j.array_task_id, lambda j: j.array_job_id,
                                           lambda j: j.array_throttle)]


def entry_views(entries: list[tuple[Job, str | None, int]], viewer: Caller, now: float, fields: list[str] | None,
                expected: dict[int, float], nodes: dict[int, str] | None = None) -> list[dict]:
    out = []
    for job, label, size in entries:
        view = _view(job, viewer, now, fields, expected, nodes)
        view["label"] = label or (f"{job.array_job_id}_{job.array_task_id}" if job.array_task_id is not None
                                  else str(job.id))
        view["folded"] = size
        out.append(view)
    return out


def _fold_key(job: Job) -> tuple | None:
    if job.state is not State.PENDING or job.array_task_id is None:
        return None
    return job.array_job_id, job.name, job.user, job.time_limit, job.array_throttle


NODE_STATES = ("idle", "mixed", "allocated", "draining", "drained", "down")


def node_state(node: NodeState, running: list[Job], used_cpus: int, used_mem: int) -> str:
    """One of NODE_STATES, as sinfo words it, from what runs there (used_mem in MiB)."""
    if not node.up:
        return "down"
    if node.drain is not None:
        return "draining" if running else "drained"
    if used_cpus == 0 and used_mem == 0:
        return "idle"
    if used_cpus >= node.cpus or used_mem >= node.memory:
        return "allocated"
    return "mixed"


def node_view(node: NodeState, running: list[Job], last_contact: float | None = None) -> dict:
    """A node with what is allocated on it, in minfo's terms."""
    parts = [j.part_on(node.name) for j in running]
    used_cpus = sum(p.cpus for p in parts if p)
    used_mem = sum(p.memory for p in parts if p)
    state = node_state(node, running, used_cpus, used_mem)
    used = {i for p in parts if p for i in parse_cpuset(p.gres_ids)}
    return {
        "name": node.name, "partition": node.partition, "state": state, "reason": node.drain or (node.reason if not node.up else None),
        "cpus": node.cpus, "cpus_used": used_cpus, "memory": node.memory, "memory_used": used_mem,
        "backend": node.backend, "backend_reason": node.backend_reason, "jobs": len(running),
        "enforcement": node.backend != "none", "last_contact": last_contact,
        "pinned": bool(node.cpu_order), "pinning": node.pinning,
        "gres": format_gres(node_gres(node.devices)) or None,  # sinfo's %G, scontrol's Gres=
        "gres_used": format_used(node.devices, used) if node.devices else None,  # scontrol's GresUsed=
        "gres_alloc": format_gres(held(node.devices, sorted(used))) or None,  # ...its AllocTRES
        "device_isolation": node.isolation or None,  # how jobs' devices are kept apart (minfo)
        # GPUs running processes melond did not start, when it last reached the node: not handed out
        "gpus_busy": {str(node.devices[i].index): pids for i, pids in foreign(node.gpu_busy, used).items()
                      if i < len(node.devices)} or None,
        # Whose jobs run there and as which account: the login account's alone (a node reached
        # as an account that is not root), each user's own (a personal node), or anyone's (null).
        "runs_as": ({u: {"account": a, "up": u in node.links_up, "backend": node.link_limits.get(u, ("unknown",))[0]}
                     for u, a in sorted(node.personal.items())}
                    if node.personal is not None else
                    {node.only_user: {"account": node.only_user, "up": node.up, "backend": node.backend}}
                    if node.only_user else None),
    }
