"""Which running jobs to preempt for a waiting one (Slurm's PreemptType=preempt/qos): on one node
of its partition, the fewest jobs of the QOS its own QOS may preempt (then the lowest priority,
then the latest started, as Slurm picks), whose resources with what is free there let it start.
A job that spans nodes, or wants whole ones, is fitted by the planner itself (`fewest`). Pure."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Victim:
    """A running job that may be preempted: what it holds on its (one) node."""

    job_id: int
    node: str
    cpus: int
    memory: int  # MiB
    gpus: int
    priority: int
    start_time: float


def choose(need: tuple[int, int, int], free: Mapping[str, tuple[int, int, int]],
           victims: Iterable[Victim]) -> tuple[str, list[int]] | None:
    """(node, the jobs to preempt there) freeing `need` (cpus, MiB, GPUs) beside what is `free` on
    each node, or None where preempting does not make room anywhere (or is not needed)."""
    by_node: dict[str, list[Victim]] = {}
    for v in victims:
        by_node.setdefault(v.node, []).append(v)
    best: tuple[tuple, str, list[int]] | None = None
    for node, (cpus, memory, gpus) in free.items():
        taken: list[Victim] = []
        for v in sorted(by_node.get(node, ()), key=lambda v: (v.priority, -v.start_time, v.job_id)):
            if cpus >= need[0] and memory >= need[1] and gpus >= need[2]:
                break
            taken.append(v)
            cpus, memory, gpus = cpus + v.cpus, memory + v.memory, gpus + v.gpus
        if taken and cpus >= need[0] and memory >= need[1] and gpus >= need[2]:
            key = (len(taken), sum(v.cpus for v in taken), node)
            if best is None or key < best[0]:
                best = (key, node, [v.job_id for v in taken])
    return None if best is None else (best[1], best[2])


def fewest(victims: Sequence[int], fits: Callable[[frozenset[int]], bool]) -> list[int] | None:
    """The victims to preempt, from `victims` in the order they should go (lowest priority first),
    such that `fits(preempted)`: the shortest leading run that makes room (found by halving, as
    fits is a plan), less each one the room turns out not to need. None where even all of them
    do not make room, or none need go."""
    if not victims or fits(frozenset()) or not fits(frozenset(victims)):
        return None
    low, high = 1, len(victims)
    while low < high:
        mid = (low + high) // 2
        if fits(frozenset(victims[:mid])):
            high = mid
        else:
            low = mid + 1
    chosen = list(victims[:low])
    for victim in reversed(chosen[:-1]):  # the last is needed: without it the run did not fit
        if fits(frozenset(chosen) - {victim}):
            chosen.remove(victim)
    return chosen
