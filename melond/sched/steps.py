"""How a step takes its job's CPUs (Slurm >= 21.08's srun --exact and --overlap). Pure.

A step without --exact holds all of the job's CPUs, so a second one waits for it; --exact (or -c)
holds ntasks x cpus-per-task of them, never CPUs another running step holds; --overlap holds none.
The store applies `grant` (a one-node job) or `grant_nodes` (a job spanning nodes, whose steps
hold CPUs on each of their nodes) inside the write that records the step, so two sruns at once
never get the same CPUs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from melond.spec.cpulist import parse_cpuset, parse_node_cpusets
from melond.state.step import Step

WHOLE, EXACT, OVERLAP = "whole", "exact", "overlap"


class Busy(Exception):
    """The CPUs a step asks for are held by running steps: srun retries, as Slurm's does."""


def grant(mode: str, want: int, job_cpus: int, job_ids: list[int], running: Sequence[Step]) -> tuple[int, list[int]]:
    """The CPUs a new step gets within its job (pure): `whole` (srun's default) all of the job's,
    `exact` (--exact, -c) `want` of them, `overlap` none held (it shares them all). Running steps
    that hold CPUs keep them: too few left is Busy; more than the job has is a ValueError."""
    if mode == OVERLAP:
        return 0, list(job_ids)
    need = job_cpus if mode == WHOLE else want
    if need > job_cpus:
        raise ValueError(f"More processors requested than permitted ({need} asked, the job has {job_cpus})")
    held = sum(s.cpus for s in running)
    if held + need > job_cpus:
        raise Busy()
    taken = {c for s in running for c in parse_cpuset(s.cpu_ids)}
    return need, [c for c in job_ids if c not in taken][:need] if job_ids else []


def _held(running: Sequence[Step], field: str) -> dict[str, set[int]]:
    """What running steps hold on each node: their CPUs (`cpu_ids`) or GPUs (`gres_ids`)."""
    taken: dict[str, set[int]] = {}
    for s in running:
        for node, ids in parse_node_cpusets(getattr(s, field)).items():
            taken.setdefault(node, set()).update(ids)
    return taken


def _take(need: Mapping[str, int], have: Mapping[str, list[int]], taken: Mapping[str, set[int]],
          refusal: str) -> dict[str, list[int]]:
    """On each node, the first `need` of the job's `have` that no running step holds (`taken`):
    Busy while too few are free; `refusal` (a ValueError) when the job has too few there."""
    out: dict[str, list[int]] = {}
    for node, n in need.items():
        ids = have.get(node, [])
        if n > len(ids):
            raise ValueError(refusal.format(need=n, node=node, has=len(ids)))
        free = [i for i in ids if i not in taken.get(node, ())]
        if len(free) < n:
            raise Busy()
        out[node] = free[:n]
    return out


def grant_gpus(want: Mapping[str, int], job_gpus: Mapping[str, list[int]],
               running: Sequence[Step]) -> dict[str, list[int]]:
    """The job's GPUs a step that asks for some gets (`want` on each of its nodes): the lowest
    that no running step holds (Busy while too few are free), never more than the job has there
    (ValueError). A step that asks for none holds none and sees them all."""
    return _take(want, job_gpus, _held(running, "gres_ids"),
                 "Requested GPUs are not available: {need} asked on {node}, the job has {has} there")


def grant_nodes(mode: str, want: Mapping[str, int], job_ids: Mapping[str, list[int]],
                running: Sequence[Step]) -> tuple[int, dict[str, list[int]]]:
    """A step of a job spanning nodes: on each node it runs on, `whole` all of the job's CPUs
    there, `exact` the CPUs `want` names for that node, `overlap` none held; never CPUs a running
    step holds on that node (Busy), never more than the job has there (ValueError)."""
    if mode == OVERLAP:
        return 0, {node: list(job_ids.get(node, ())) for node in want}
    need = {node: len(job_ids.get(node, [])) if mode == WHOLE else asked for node, asked in want.items()}
    out = _take(need, job_ids, _held(running, "cpu_ids"),
                "More processors requested than permitted ({need} asked on {node}, the job has {has} there)")
    return sum(len(ids) for ids in out.values()), out
