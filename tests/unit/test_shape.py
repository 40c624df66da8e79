"""melond/spec/shape.py: Slurm's rules for nodes and tasks (shared/SLURM-ALLOCATIONS.md §1-2)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.shape import Shape, compressed, layout, make_shape, nodes_needed, parse_distribution, parse_nodes
from melond.spec.timespec import SpecError


@pytest.mark.parametrize(("options", "nodes", "tasks_per_node"), [
    # §1.3's worked examples: node[1-4], 4 CPUs each, idle
    ({"ntasks": 8, "cpus_per_task": 2}, 4, [2, 2, 2, 2]),
    ({"nodes": (2, 2)}, 2, [1, 1]),
    ({"nodes": (2, 2), "ntasks": 3}, 2, [2, 1]),
    ({"ntasks": 5, "ntasks_per_node": 2}, 3, [2, 2, 1]),
    ({"nodes": (4, 4), "ntasks": 2}, 2, [1, 1]),
])
def test_the_worked_examples(options: dict, nodes: int, tasks_per_node: list) -> None:
    shape = make_shape(**options)
    assert nodes_needed(shape, 4) == nodes
    assert layout(shape, [4] * nodes) == tasks_per_node


def test_client_side_normalisation_warns_as_sbatch() -> None:
    warnings: list[str] = []
    shape = make_shape(nodes=(4, 4), ntasks=2, warnings=warnings)
    assert (shape.nodes_min, shape.nodes_max, shape.ntasks) == (2, 2, 2)
    assert warnings == ["can't run 2 processes on 4 nodes, setting nnodes to 2"]
    assert make_shape(nodes=(1, 8), ntasks=3).nodes_max == 3  # max_nodes := min(max_nodes, ntasks)
    assert make_shape(nodes=(3, 3)) == Shape(nodes_min=3, nodes_max=3, ntasks=3)  # one task per node, not "given"
    assert make_shape(nodes=(2, 2), ntasks_per_node=4).ntasks == 8
    assert make_shape(ntasks_per_node=4).exact and not make_shape(ntasks_per_node=4, ntasks=3).exact


@pytest.mark.parametrize(("text", "expected"), [("2", (2, 2)), ("1-3", (1, 3)), ("2k", (2048, 2048)), (" 4 ", (4, 4))])
def test_node_counts(text: str, expected: tuple) -> None:
    assert parse_nodes(text) == expected


@pytest.mark.parametrize("text", ["0", "3-1", "x", "", "-2", "1-", "2g"])
def test_bad_node_counts(text: str) -> None:
    with pytest.raises(SpecError, match="invalid number of nodes"):
        parse_nodes(text)


@pytest.mark.parametrize("text", ["block", "cyclic", "plane=4", "arbitrary", "block:cyclic", "cyclic:fcyclic,Pack", "*"])
def test_distributions_slurm_takes(text: str) -> None:
    assert parse_distribution(text) == text


@pytest.mark.parametrize("text", ["blocky", "plane", "plane=x", ""])
def test_distributions_refused(text: str) -> None:
    with pytest.raises(SpecError, match="invalid distribution"):
        parse_distribution(text)


def test_arbitrary_needs_a_task_count() -> None:
    with pytest.raises(SpecError, match="task count required for arbitrary distribution"):
        make_shape(distribution="arbitrary")


def test_layout_refuses_what_the_nodes_cannot_hold() -> None:
    assert layout(make_shape(ntasks=3, cpus_per_task=2), [4]) is None  # 2 slots
    assert layout(make_shape(ntasks=2), [4, 4, 4]) is None  # a node would get no task
    assert layout(make_shape(nodes=(2, 2), ntasks_per_node=2), [4, 1]) is None
    assert nodes_needed(make_shape(cpus_per_task=8), 4) == 0
    assert nodes_needed(make_shape(nodes=(1, 2), ntasks=12), 4) == 0  # needs 3, at most 2


@pytest.mark.parametrize(("values", "text"), [
    ([2, 2, 2, 1], "2(x3),1"), ([1, 2, 1, 1, 1, 3, 2], "1,2,1(x3),3,2"), ([4], "4"), ([], ""), ([72, 72, 36], "72(x2),36")])
def test_compressed_counts(values: list, text: str) -> None:
    """uint32_compressed_to_str (src/common/env.c), as SLURM_TASKS_PER_NODE writes them."""
    assert compressed(values) == text


@given(st.integers(1, 64), st.integers(1, 4), st.none() | st.integers(1, 8), st.lists(st.integers(1, 16), min_size=1,
                                                                                   max_size=6))
def test_a_layout_holds_every_task_within_each_nodes_room(ntasks, cpt, per_node, cpus) -> None:
    shape = make_shape(ntasks=ntasks, cpus_per_task=cpt, ntasks_per_node=per_node)
    tasks = layout(shape, cpus)
    room = [min(c // cpt, per_node or c) for c in cpus]
    if tasks is None:
        assert sum(room) < ntasks or len(cpus) > ntasks or min(room) < 1
        return
    assert sum(tasks) == ntasks and all(1 <= t <= r for t, r in zip(tasks, room))
    assert max(tasks) - min(tasks) <= 1 or any(t == r for t, r in zip(tasks, room))  # dealt round-robin
