"""melond/nodes/setup.py: the one-time root commands printed for a node reached as an account."""
import subprocess

from melond.nodes.setup import ACCOUNTS, DROP_IN, HOOK, HOOK_SCRIPT, PAM_SSHD, setup_text

V2 = {"cgroup": "v2", "systemd": True, "linger": True, "manager": True, "delegated": ["cpu", "memory", "pids"],
      "subtree": {"v2": {"path": "/sys/fs/cgroup/melon/user-alice", "prepared": False, "controllers": [],
                         "login": "/user.slice/user-2001.slice/session-3.scope", "inside": False}}}
V1 = {"cgroup": "v1", "systemd": True, "linger": False, "manager": False, "delegated": [],
      "subtree": {"v1": {"hierarchies": ["memory", "cpu", "pids", "freezer", "systemd"], "prepared": []}}}


def info(base: dict = V2, backend: str = "none", **delegation) -> dict:
    return {"uid": 2001, "user": "alice", "backend": backend, "delegation": {**base, **delegation}}


def blocks(text: str) -> list[str]:
    return text.split("\n\n")


def test_a_root_node_needs_nothing():
    text, ready = setup_text("n1", {"uid": 0, "user": "root", "backend": "systemd"})
    assert ready and "logs in as root" in text


def test_a_node_whose_account_has_delegation_is_ready():
    for backend, says in (("systemd-user", "cpu memory pids"), ("cgroup-v2-user", "subtree"),
                          ("cgroup-v1-user", "subtree")):
        text, ready = setup_text("n1", info(backend=backend))
        assert ready and "Ready" in text and says in text and f"({backend})" in text


def test_lingering_and_delegated_controllers_come_first_then_the_subtree_instead():
    text, ready = setup_text("n1", info(linger=False))
    first, second = blocks(text)
    assert not ready and first.splitlines()[-1] == "loginctl enable-linger alice"
    assert second.startswith("# Or, where user managers may not linger, run once") and HOOK in second
    text, ready = setup_text("n1", info(linger=False, delegated=["pids"]))
    assert not ready and f"> {DROP_IN}" in text and "systemctl daemon-reload" in text
    assert text.index("daemon-reload") < text.index("enable-linger")


def test_cgroup_v2_without_systemd_gets_the_subtree_and_its_login_hook():
    text, ready = setup_text("n1", info(systemd=False, linger=False))
    assert not ready and len(blocks(text)) == 1 and "enable-linger" not in text
    assert HOOK_SCRIPT in text and f"echo alice >> {ACCOUNTS}" in text
    assert f"echo 'session optional pam_exec.so quiet {HOOK}' >> {PAM_SSHD}" in text


def test_the_login_hook_is_valid_sh():
    subprocess.run(["sh", "-n"], input=HOOK_SCRIPT, text=True, check=True)


def test_cgroup_v1_gets_a_folder_per_hierarchy_remade_at_each_boot():
    text, ready = setup_text("n1", info(V1))
    assert not ready and text.splitlines()[-1] == "systemctl enable --now melon-cgroup-alice.service"
    assert "cat > /etc/systemd/system/melon-cgroup-alice.service <<'EOF'" in text and "WantedBy=multi-user.target" in text
    for h in ("memory", "cpu", "pids", "freezer", "systemd"):
        d = f"/sys/fs/cgroup/{h}/melon/user-alice"
        assert f"ExecStart=/bin/mkdir -p {d}\nExecStart=/bin/chown alice {d} {d}/cgroup.procs {d}/tasks" in text
    text, ready = setup_text("n1", info(V1, systemd=False))
    assert not ready and "boot script" in text
    assert ("mkdir -p /sys/fs/cgroup/memory/melon/user-alice && chown alice /sys/fs/cgroup/memory/melon/user-alice "
            "/sys/fs/cgroup/memory/melon/user-alice/cgroup.procs /sys/fs/cgroup/memory/melon/user-alice/tasks") in text


def test_a_node_without_a_memory_controller_is_told_so():
    text, ready = setup_text("n1", info(V1, subtree={"v1": {"hierarchies": ["pids"], "prepared": []}}))
    assert not ready and "no cgroup memory controller" in text
