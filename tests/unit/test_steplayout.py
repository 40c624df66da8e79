"""melond/spec/steplayout.py: srun's tasks over its job's nodes (shared/SLURM-ALLOCATIONS.md §1.3, §3.2)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.steplayout import LayoutError, layout

NODES = ["node1", "node2", "node3", "node4"]
FOUR = [4, 4, 4, 4]


@pytest.mark.parametrize(("job", "kwargs", "nodes", "tasks"), [
    # §1.3: inside `sbatch -n 8 -c 2` (SLURM_NTASKS=8, 4 nodes): 8 tasks, 0-1 on node1 ... 6-7 on node4
    ((NODES, FOUR), {"nodes": (4, 4), "ntasks": 8, "cpus_per_task": 2}, NODES, [[0, 1], [2, 3], [4, 5], [6, 7]]),
    # inside `sbatch -N 2` (no SLURM_NTASKS): -N 2 from the environment, one task per node
    ((NODES[:2], [1, 1]), {"nodes": (2, 2)}, NODES[:2], [[0], [1]]),
    # inside `salloc -N 2 -n 3`: tasks 0,1 on node1, 2 on node2
    ((NODES[:2], [2, 1]), {"nodes": (2, 2), "ntasks": 3}, NODES[:2], [[0, 1], [2]]),
    # `-n 5 --ntasks-per-node=2` over 3 nodes: 0-1, 2-3, 4
    ((NODES[:3], [2, 2, 1]), {"nodes": (3, 3), "ntasks": 5, "ntasks_per_node": 2}, NODES[:3], [[0, 1], [2, 3], [4]]),
    # Open MPI 4's daemons: --ntasks-per-node=1 --nodes=2 --nodelist=node2,node3 --ntasks=2
    ((NODES[:3], [4, 4, 4]), {"nodes": (2, 2), "ntasks": 2, "ntasks_per_node": 1, "nodelist": ["node2", "node3"]},
     ["node2", "node3"], [[0], [1]]),
    # -r 1: from the allocation's second node
    ((NODES[:3], [4, 4, 4]), {"nodes": (1, 1), "ntasks": 2, "relative": 1}, ["node2"], [[0, 1]]),
    # cyclic numbering: the same counts, ranks dealt round robin
    ((NODES[:2], [4, 4]), {"nodes": (2, 2), "ntasks": 4, "cyclic": True}, NODES[:2], [[0, 2], [1, 3]]),
    # -x: never there
    ((NODES[:3], [4, 4, 4]), {"nodes": (2, 2), "ntasks": 2, "exclude": ["node1"]}, ["node2", "node3"], [[0], [1]]),
])
def test_srun_lays_its_tasks_out_as_slurm(job: tuple, kwargs: dict, nodes: list, tasks: list) -> None:
    result = layout(*job, **kwargs)
    assert (result.nodes, result.tasks) == (nodes, tasks)


def test_fewer_tasks_than_nodes_is_sruns_warning() -> None:
    """Inside `sbatch -N 2`, `srun -n 1` prints srun's warning and runs on one node (§2.5)."""
    result = layout(NODES[:2], [1, 1], nodes=(2, 2), ntasks=1)
    assert (result.nodes, result.tasks) == (["node1"], [[0]])
    assert result.warnings == ["can't run 1 processes on 2 nodes, setting nnodes to 1"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"nodes": (3, 3)}, r"^Minimum node count > allocated node count \(3 > 2\)$"),
    ({"relative": 0, "nodelist": ["node1"]}, r"^-r,--relative not allowed with -w,--nodelist or -x,--exclude\.$"),
    ({"nodelist": ["node9"]}, r"not in the job's allocation"),
    ({"ntasks": 9, "ntasks_per_node": 2}, r"More processors requested than permitted"),
])
def test_what_the_allocation_cannot_hold_is_refused_in_sruns_words(kwargs: dict, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        layout(NODES[:2], [2, 2], **kwargs)


@given(st.lists(st.integers(1, 8), min_size=1, max_size=6), st.integers(1, 40), st.integers(1, 3), st.booleans())
def test_every_task_once_on_a_node_of_the_step(cpus: list, ntasks: int, cpt: int, cyclic: bool) -> None:
    names = [f"n{i}" for i in range(len(cpus))]
    result = layout(names, cpus, nodes=(len(names), len(names)), ntasks=ntasks, cpus_per_task=cpt, cyclic=cyclic)
    flat = sorted(t for ids in result.tasks for t in ids)
    assert flat == list(range(ntasks)) and all(result.tasks) and set(result.nodes) <= set(names)
    assert len(result.nodes) == min(len(names), ntasks)
