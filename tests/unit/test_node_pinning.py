"""What a node's probe says of its CPUs decides how its jobs are pinned (melond/nodes/state.py)."""
from __future__ import annotations

from melond.nodes.state import NodeState

PROBE = {"cpus": 4, "memory": 8192, "uid": 0, "user": "root", "backend": "systemd", "backend_reason": "",
         "cpu_ids": [0, 2, 1, 3], "cpu_sockets": [0, 0, 1, 1]}


def test_a_node_pins_its_jobs_to_the_cpus_it_reports_in_their_order() -> None:
    node = NodeState("n1", "p", 0, 0)
    node.sized_by({**PROBE, "cpuset": True})
    assert node.cpu_order == (0, 2, 1, 3) and node.cpu_socket == {0: 0, 2: 0, 1: 1, 3: 1}
    assert "cpuset" in node.pinning


def test_an_inventory_that_gives_fewer_cpus_pins_to_the_first_of_them() -> None:
    node = NodeState("n1", "p", 0, 0, cap_cpus=2)
    node.sized_by(PROBE)
    assert node.cpus == 2 and node.cpu_order == (0, 2) and "affinity" in node.pinning


def test_an_inventory_that_gives_more_cpus_than_the_node_has_does_not_pin() -> None:
    node = NodeState("n1", "p", 0, 0, cap_cpus=64)
    node.sized_by(PROBE)
    assert node.cpus == 64 and node.cpu_order == ()
    assert node.pinning == "not pinned: the inventory gives it 64 CPUs and it has 4, so jobs share them"


def test_a_helper_that_names_no_cpus_does_not_pin() -> None:
    node = NodeState("n1", "p", 0, 0)
    node.sized_by({k: v for k, v in PROBE.items() if k not in ("cpu_ids", "cpu_sockets")})
    assert node.cpu_order == () and "names no CPUs" in node.pinning
