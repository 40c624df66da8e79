"""Personal mode's pure parts: the inventory's [logins] (once spelled [accounts]) and personal
nodes, a node's connections (user@node), and who may run where."""
import pytest

from melond import config
from melond.errors import BadRequest, MelonError
from melond.nodes.links import link_name, split
from melond.nodes.state import NodeState
from melond.sched.admission import NodeSize, Submitter, admit
from melond.sched.plan import NodeView

PERSONAL = """
[defaults]
user = "root"
spool = "/var/lib/melon/spool"

[accounts.alice]
[accounts.carol]
user = "cs123"
identity_file = "carol.key"

[nodes.lab1]
host = "10.0.0.1"
personal = true

[nodes.lab2]
host = "10.0.0.2"
"""


def load(tmp_path, text: str) -> config.Inventory:
    (tmp_path / "carol.key").write_text("not a real key\n")
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return config.load(str(path))


@pytest.mark.parametrize("spelling", ["accounts", "logins"])  # the old spelling is still read
def test_a_personal_node_has_a_connection_per_login_and_takes_no_login_from_defaults(tmp_path, spelling):
    inv = load(tmp_path, PERSONAL.replace("[accounts.", f"[{spelling}."))
    assert set(inv.logins) == {"alice", "carol"} and not inv.accounts
    links = inv.links()
    assert list(links) == ["alice@lab1", "carol@lab1", "lab2"]
    node, user, login = links["carol@lab1"]
    assert (node, user, login.user, login.identity_file) == ("lab1", "carol", "cs123", str(tmp_path / "carol.key"))
    assert login.spool is None and not login.personal  # each account's own spool, ~/.local/state/melon/spool
    assert links["alice@lab1"][2].user == "alice"
    assert links["lab2"] == ("lab2", None, inv.nodes["lab2"]) and inv.nodes["lab2"].user == "root"


@pytest.mark.parametrize("change, words", [
    (("[accounts.alice]\n[accounts.carol]\nuser = \"cs123\"\nidentity_file = \"carol.key\"\n", ""),
     "no [logins.USER] table"),
    (("personal = true\n", "personal = true\nuser = \"svc\"\n"), "nodes.lab1.user: a personal node logs in as each"),
    (("personal = true\n", "personal = true\nspool = \"/srv/spool\"\n"), "nodes.lab1.spool: each account"),
    (("host = \"10.0.0.1\"\npersonal = true\n", "personal = true\n"), "only a node reached over SSH"),
    (("[nodes.lab2]", "[nodes.\"lab@2\"]"), "may not contain '@'"),
])
def test_a_personal_node_that_cannot_work_is_refused_naming_the_field(tmp_path, change, words):
    with pytest.raises(MelonError, match=r"inventory .*inventory\.toml: .*" + words.replace("[", r"\[")):
        load(tmp_path, PERSONAL.replace(*change))


def test_a_connection_name_says_its_node_and_user():
    assert link_name("lab1", None) == "lab1" and split("lab1") == ("lab1", None)
    assert link_name("lab1", "alice") == "alice@lab1" and split("alice@lab1") == ("lab1", "alice")


def test_a_personal_node_admits_its_accounts_and_plans_for_those_connected():
    node = NodeState("lab1", "p", 4, 4096, personal={"alice": "alice", "carol": "cs123"})
    assert node.admits == {"alice", "carol"} and node.runs_for == frozenset()
    node.links_up.add("carol")
    assert node.runs_for == {"carol"}
    node.sized_by({"cpus": 4, "memory": 4096, "uid": 2001, "user": "cs123", "backend": "none",
                   "backend_reason": "no subtree for cs123"}, "carol")
    assert node.only_user is None and node.admits == {"alice", "carol"}  # the login account is not the user
    assert (node.backend, node.backend_reason) == ("none", "carol: none (no subtree for cs123)")
    node.sized_by({"cpus": 4, "memory": 4096, "uid": 2002, "user": "alice", "backend": "cgroup-v1-user",
                   "backend_reason": "a subtree"}, "alice")
    assert (node.backend, node.backend_reason) == ("mixed", "alice: cgroup-v1-user (a subtree); "
                                                            "carol: none (no subtree for cs123)")
    plain = NodeState("lab2", "p", 4, 4096)
    plain.sized_by({"cpus": 4, "memory": 4096, "uid": 2001, "user": "alice"})
    assert plain.admits == plain.runs_for == {"alice"}
    assert NodeView("lab1", "p", 4, 4096, only_users=node.runs_for).only_users == {"carol"}


class Rules:
    max_time = 0
    default_time = None
    default_mem_per_cpu = None
    min_nodes = None
    max_cpus_per_node = None


def test_a_user_without_an_account_on_the_only_personal_node_is_refused_naming_who_has_one():
    nodes = [NodeSize("lab1", "p", 4, 4096, only_users=frozenset({"alice", "carol"}))]
    req = {"cpus": 1, "script": "#!/bin/sh\n", "nodelist": ["lab1"]}
    with pytest.raises(BadRequest, match=r"lab1 as alice or carol.*not bob's.*\[logins\]"):
        admit(req, Submitter("bob", 2002, 2002), "p", Rules(), nodes, 0.0)


def test_accounts_with_a_projects_fields_are_accounts_beside_personal_logins(tmp_path):
    """Where both are meant, [logins] holds the logins and [accounts] the projects."""
    text = PERSONAL.replace("[accounts.", "[logins.") + '\n[accounts.physics]\nusers = ["alice"]\n'
    inv = load(tmp_path, text)
    assert set(inv.logins) == {"alice", "carol"} and inv.accounts["physics"].users == ["alice"]
