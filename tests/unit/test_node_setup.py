"""melond/nodes/setup.py: the one-time root commands printed for a node reached as an account."""

from melond.nodes.setup import DROP_IN, setup_text

V2 = {"cgroup": "v2", "systemd": True, "linger": True, "manager": True, "delegated": ["cpu", "memory", "pids"]}


def info(**delegation) -> dict:
    return {"uid": 2001, "user": "alice", "backend": "none", "delegation": {**V2, **delegation}}


def test_a_root_node_needs_nothing():
    text, ready = setup_text("n1", {"uid": 0, "user": "root", "backend": "systemd"})
    assert ready and "logs in as root" in text


def test_lingering_and_delegated_controllers_are_what_is_asked_for():
    text, ready = setup_text("n1", info(linger=False))
    assert not ready and text.splitlines()[-1] == "loginctl enable-linger alice"
    text, ready = setup_text("n1", info(linger=False, delegated=["pids"]))
    assert not ready and f"> {DROP_IN}" in text and "systemctl daemon-reload" in text
    assert text.index("daemon-reload") < text.index("enable-linger")
    text, ready = setup_text("n1", info())
    assert ready and "Ready" in text and "cpu memory pids" in text


def test_a_cgroup_v1_node_is_told_what_would_work_instead():
    text, ready = setup_text("n1", info(cgroup="v1"))
    assert not ready and "cgroup v1" in text and "log in as root" in text
