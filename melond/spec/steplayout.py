"""Where a step's tasks go within its job's allocation: srun's node and task rules.

Pure and standard library only (srun imports it in the job). The rules are srun's, read from
Slurm's source (shared/SLURM-ALLOCATIONS.md §1.2, §2.5, §3.2): srun takes the job's
`SLURM_JOB_NUM_NODES` as its -N and `SLURM_NTASKS` as its -n where it is not given them; with
neither it runs one task on each of the job's nodes (`_set_nodes`, `_set_ntasks` in srun_job.c);
`-r N` starts at the allocation's node N; `-w`/`-x` pick nodes by name. Tasks are counted out
as Slurm's block layout does (`_task_layout_block`: one per node per round while a node has a
slot, its CPUs over -c), numbered consecutively on each node (block) or round robin (cyclic).
"""
from __future__ import annotations

from collections import namedtuple

from melond.spec.shape import deal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class LayoutError(ValueError):
    """A step the allocation cannot hold, in srun's words."""


class Layout(namedtuple("Layout", "nodes tasks warnings")):
    """The step's nodes (allocation order) and, for each, its global task ids."""

    __slots__ = ()
    nodes: list[str]
    tasks: list[list[int]]
    warnings: list[str]

    @property
    def ntasks(self) -> int:
        return sum(len(t) for t in self.tasks)

    def node_of(self, task: int) -> int:
        return next(i for i, ids in enumerate(self.tasks) if task in ids)


def layout(alloc_nodes: Sequence[str], alloc_cpus: Sequence[int], *, nodes: tuple[int, int] | None = None,
           ntasks: int | None = None, ntasks_per_node: int | None = None, cpus_per_task: int = 1,
           nodelist: Sequence[str] = (), exclude: Sequence[str] = (), relative: int | None = None,
           cyclic: bool = False, overcommit: bool = True) -> Layout:
    """The step's layout on the allocation (`alloc_nodes`, in order, with the job's CPUs on each).
    `nodes` and `ntasks` are srun's -N and -n as given, else the job's (from its environment)."""
    warnings: list[str] = []
    if relative is not None and (nodelist or exclude):
        raise LayoutError("-r,--relative not allowed with -w,--nodelist or -x,--exclude.")
    if relative is not None and not 0 <= relative < len(alloc_nodes):
        raise LayoutError(f"Relative node index {relative} is outside the allocation's {len(alloc_nodes)} nodes")
    unknown = [n for n in nodelist if n not in alloc_nodes]
    if unknown:
        raise LayoutError(f"Requested nodes {','.join(unknown)} not in the job's allocation ({','.join(alloc_nodes)})")
    usable = [i for i, n in enumerate(alloc_nodes) if n not in exclude][relative or 0:]
    count = len(usable)
    if nodes is not None:
        count = nodes[0]
        if count > len(usable):
            raise LayoutError(f"Minimum node count > allocated node count ({count} > {len(usable)})")
        if ntasks is not None and ntasks < count:
            warnings.append(f"can't run {ntasks} processes on {count} nodes, setting nnodes to {ntasks}")
            count = ntasks
    wanted = [alloc_nodes.index(n) for n in dict.fromkeys(nodelist)]
    chosen = sorted(wanted + [i for i in usable if i not in wanted][:max(0, count - len(wanted))])
    if ntasks is None:
        ntasks = len(chosen) * (ntasks_per_node or 1)
    chosen = chosen[:ntasks]  # no node without a task
    slots = [max(1, alloc_cpus[i] // cpus_per_task) for i in chosen]
    if ntasks_per_node:
        slots = [min(n, ntasks_per_node) for n in slots]
    counts = deal(ntasks, slots)
    if counts is None:
        if not overcommit or ntasks_per_node:
            raise LayoutError("More processors requested than permitted")
        counts = deal(ntasks, [ntasks] * len(chosen))  # past the CPUs: the tasks share them, dealt the same way
        assert counts is not None
    ids: list[list[int]] = [[] for _ in chosen]
    if cyclic:  # round robin over the nodes, each up to its count
        left, task = list(counts), 0
        while task < ntasks:
            for k in range(len(chosen)):
                if left[k] and task < ntasks:
                    ids[k].append(task)
                    left[k] -= 1
                    task += 1
    else:
        task = 0
        for k, c in enumerate(counts):
            ids[k] = list(range(task, task + c))
            task += c
    return Layout([alloc_nodes[i] for i in chosen], ids, warnings)
