"""melond/sched/admission.py: a submission checked against the partition's nodes, here the nodes
melond reaches as an account that is not root (their helper starts only that account's jobs)."""

import pytest

from melond.errors import BadRequest
from melond.sched.admission import NodeSize, Submitter, admit


class Rules:
    max_time, default_time, default_mem_per_cpu = 3600, None, None
    min_nodes: int | None = None
    max_cpus_per_node: int | None = None


NODES = [NodeSize("n1", "p", 4, 4096, only_users=frozenset({"alice"})), NodeSize("n2", "p", 2, 2048)]
REQ = {"cpus": 1, "name": "x", "script": "#!/bin/sh\ntrue\n", "chdir": "/tmp", "time_limit": 60}


def test_a_job_that_may_only_use_another_accounts_node_is_refused_naming_it():
    with pytest.raises(BadRequest, match=r"n1 as alice.*not bob's"):
        admit({**REQ, "nodelist": ["n1"]}, Submitter("bob", 2002, 2002), "p", Rules(), NODES, 0.0)
    with pytest.raises(BadRequest, match=r"n1 as alice"):
        admit({**REQ, "exclude": ["n2"]}, Submitter("bob", 2002, 2002), "p", Rules(), NODES, 0.0)
    jobs, _ = admit({**REQ, "nodelist": ["n1"]}, Submitter("alice", 2001, 2001), "p", Rules(), NODES, 0.0)
    assert jobs[0].user == "alice"


def test_another_users_job_is_sized_by_the_nodes_it_can_use():
    admit(REQ, Submitter("bob", 2002, 2002), "p", Rules(), NODES, 0.0)  # n2 can run it
    with pytest.raises(BadRequest, match="largest node in partition p has 2"):
        admit({**REQ, "cpus": 4}, Submitter("bob", 2002, 2002), "p", Rules(), NODES, 0.0)
    admit({**REQ, "cpus": 4}, Submitter("alice", 2001, 2001), "p", Rules(), NODES, 0.0)


SIZED = [NodeSize("n1", "p", 4, 8192), NodeSize("n2", "p", 2, 2048)]
ALICE = Submitter("alice", 2001, 2001)


@pytest.mark.parametrize(("shape", "cpus", "tasks"), [
    ({"ntasks": 4}, 4, 4), ({"ntasks": 2, "cpus": 2}, 4, 2), ({"ntasks_per_node": 3}, 3, None), ({}, 1, None),
    ({"nodes": [1, 1], "ntasks": 4}, 4, 4)])
def test_a_job_holds_cpus_for_every_task(shape: dict, cpus: int, tasks) -> None:
    """min_cpus = ntasks x cpus_per_task (slurm_opt_create_job_desc in src/common/slurm_opt.c)."""
    jobs, _ = admit({**REQ, **shape}, ALICE, "p", Rules(), SIZED, 0.0)
    assert jobs[0].cpus == cpus and jobs[0].ntasks == tasks and jobs[0].shape.ntasks == cpus // (shape.get("cpus") or 1)
    assert jobs[0].memory == cpus * 1024 * 1024 * 1024  # the least memory per CPU of a node, for each CPU held


def test_memory_per_cpu_counts_every_tasks_cpus() -> None:
    jobs, _ = admit({**REQ, "ntasks": 3, "cpus": 1, "memory": 100 << 20, "mem_per_cpu": True}, ALICE, "p", Rules(),
                    SIZED, 0.0)
    assert jobs[0].memory == 300 << 20


@pytest.mark.parametrize(("shape", "message"), [
    ({"ntasks": 8, "cpus": 2}, r"^-n 8 -c 2 needs 4 nodes, and partition p has 2; the most it holds is "
                               r"-N 2 -n 3 -c 2 \(6 CPUs\)$"),
    ({"nodes": [3, 3]}, r"^-N 3 needs 3 nodes, and partition p has 2"),
    ({"ntasks": 6, "ntasks_per_node": 2}, r"needs 3 nodes.*holds is -N 2 -n 4 "),
    ({"nodes": [1, 1], "ntasks": 5}, r"^-N 1 -n 5 needs 2 nodes.*the most 1 of its nodes \(as many as -N allows\) hold is -N 1 -n 4"),
    ({"cpus": 5}, r"requested 5 CPUs but the largest node in partition p has 4; ask for at most -c 4"),
])
def test_what_the_partition_cannot_hold_is_refused_naming_what_fits(shape: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        admit({**REQ, **shape}, ALICE, "p", Rules(), SIZED, 0.0)


@pytest.mark.parametrize("shape", [{"nodes": [2, 2]}, {"ntasks": 3, "cpus": 2}, {"ntasks": 4, "ntasks_per_node": 2},
                                   {"ntasks_per_node": 2, "nodes": [2, 2]}])
def test_a_job_spanning_the_partitions_nodes_is_admitted(shape: dict) -> None:
    jobs, _ = admit({**REQ, **shape}, ALICE, "p", Rules(), SIZED, 0.0)
    assert jobs[0].cpus == jobs[0].shape.cpus and jobs[0].shape.wide


def test_memory_per_cpu_of_a_spanning_job_is_kept_per_cpu() -> None:
    """Each node's part is sized by the CPUs it gets there (plan() reads mem_per_cpu)."""
    jobs, _ = admit({**REQ, "ntasks": 3, "cpus": 2, "memory": 200 << 20, "mem_per_cpu": True}, ALICE, "p", Rules(),
                    SIZED, 0.0)
    assert jobs[0].mem_per_cpu == 100 and jobs[0].memory == 600 << 20


def test_an_exclusive_job_takes_all_memory_unless_it_asks() -> None:
    jobs, _ = admit({**REQ, "exclusive": True}, ALICE, "p", Rules(), SIZED, 0.0)
    assert jobs[0].exclusive and jobs[0].memory == 0
    jobs, _ = admit({**REQ, "exclusive": True, "memory": 1 << 30}, ALICE, "p", Rules(), SIZED, 0.0)
    assert jobs[0].memory == 1 << 30


class Capped(Rules):
    max_cpus_per_node = 2


@pytest.mark.parametrize(("shape", "message"), [
    ({"cpus": 3}, r"^Requested node configuration is not available: requested 3 CPUs but partition p's jobs may "
                  r"use 2 of a node's CPUs \(MaxCPUsPerNode\); ask for at most -c 2$"),
    ({"nodes": [1, 1], "ntasks": 3}, r"^Requested node configuration is not available: -N 1 -n 3 needs 2 nodes.*"
                                     r"is -N 1 -n 2 \(2 CPUs\), as partition p's jobs may use 2 of a node's CPUs"),
    ({"ntasks": 5}, r"-n 5 needs 3 nodes, and partition p has 2; the most it holds is -N 2 -n 4 "),
])
def test_a_partitions_max_cpus_per_node_sizes_its_nodes(shape: dict, message: str) -> None:
    """MaxCPUsPerNode: n1's 4 CPUs count as 2 for the partition's jobs; a job that needs more on
    one node is refused as Slurm refuses a node configuration none has."""
    with pytest.raises(BadRequest, match=message):
        admit({**REQ, **shape}, ALICE, "p", Capped(), SIZED, 0.0)
    jobs, _ = admit({**REQ, "ntasks": 4}, ALICE, "p", Capped(), SIZED, 0.0)  # 2 on each node
    assert jobs[0].shape.wide


class Wide(Rules):
    min_nodes = 2


def test_a_job_without_nodes_gets_the_partitions_min_nodes() -> None:
    """Slurm's controller gives a job without -N the partition's MinNodes (one task on each);
    a job with -N keeps its own, which submission then checks (sharing.check_submit)."""
    jobs, _ = admit(REQ, ALICE, "p", Wide(), SIZED, 0.0)
    assert (jobs[0].nodes_min, jobs[0].nodes_max, jobs[0].shape.ntasks) == (2, None, 2)
    jobs, _ = admit({**REQ, "nodes": [1, 1]}, ALICE, "p", Wide(), SIZED, 0.0)
    assert jobs[0].nodes_min == 1
