"""melond/sched/admission.py: a submission checked against the partition's nodes, here the nodes
melond reaches as an account that is not root (their helper starts only that account's jobs)."""

import pytest

from melond.errors import BadRequest
from melond.sched.admission import NodeSize, Submitter, admit


class Rules:
    max_time, default_time, default_mem_per_cpu = 3600, None, None


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
