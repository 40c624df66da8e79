"""melond/sched/cpus.py: a job's own CPUs, close together, never another job's."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.sched.cpus import pick
from melond.spec.cpulist import cpuset_text, node_cpusets_text, parse_cpuset, parse_node_cpusets


def test_a_job_takes_the_socket_that_fits_it_most_tightly() -> None:
    order = [0, 4, 1, 5, 2, 6, 3, 7]  # two sockets (0-3 with their hyperthreads 4-7)... as the helper orders them
    socket = {0: 0, 4: 0, 1: 0, 5: 0, 2: 1, 6: 1, 3: 1, 7: 1}
    assert pick(order, set(), 2, socket) == [0, 4]  # a core and its sibling
    assert pick(order, {0, 4, 1}, 2, socket) == [2, 6]  # socket 0 has 1 free: socket 1 fits it whole
    assert pick(order, {0, 4, 1}, 1, socket) == [5]  # the tightest fit for one CPU
    assert pick(order, {0}, 6, socket) == [4, 1, 5, 2, 6, 3]  # larger than any socket: in order across them
    assert pick(order, {0, 1, 2}, 6, socket) is None


@given(st.lists(st.integers(1, 4), max_size=12), st.randoms())
def test_jobs_on_a_node_never_share_a_cpu(sizes: list, rnd: random.Random) -> None:
    order = list(range(16))
    socket = {c: c // 8 for c in order}
    held: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        if held and rnd.random() < 0.3:
            held.pop(rnd.choice(list(held)))  # a job ends
        taken = {c for ids in held.values() for c in ids}
        ids = pick(order, taken, n, socket)
        if ids is None:
            assert len(order) - len(taken) < n
            continue
        assert len(ids) == n and not taken & set(ids)
        held[i] = ids


@pytest.mark.parametrize(("ids", "text"), [([0, 1, 2, 3], "0-3"), ([8, 0, 1], "0-1,8"), ([5], "5"), ([], "")])
def test_cpuset_text_is_the_kernels_list_form(ids: list, text: str) -> None:
    assert cpuset_text(ids) == text
    assert parse_cpuset(text) == sorted(ids)


def test_a_spanning_steps_cpus_by_node_read_back() -> None:
    by_node = {"node1": [0, 1], "gpu-2": [4], "x": []}
    assert node_cpusets_text(by_node) == "node1:0-1;gpu-2:4;x:"
    assert parse_node_cpusets("node1:0-1;gpu-2:4;x:") == by_node
    assert parse_node_cpusets("0-3") == {"": [0, 1, 2, 3]} and parse_node_cpusets(None) == {}
