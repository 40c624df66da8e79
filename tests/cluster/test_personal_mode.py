"""Personal mode on the Docker cluster: node1 is personal, and alice's and bob's jobs there travel
over connections of their own, logged in as their own accounts (bob's is cs123 on the nodes), while
node2 and node3 are reached as root as usual."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

from conftest import BIN, Cluster, Melon, wait_for

ACCOUNTS = '\n[accounts.alice]\n\n[accounts.bob]\nuser = "cs123"\n'


def _runs_as(m: Melon) -> dict:
    return next(n for n in json.loads(m.run("minfo", "--json").stdout) if n["name"] == "node1")["runs_as"]


def test_personal_node_runs_each_users_jobs_over_their_own_connection_as_their_own_account(cluster: Cluster,
                                                                                           short_tmp) -> None:
    key = cluster.dir / "node1" / "authorized_keys" / "cs123"
    made = cluster.node_exec("node1", "useradd", "-m", "-u", "2103", "cs123")
    assert made.returncode == 0, made.stderr
    shutil.copy(cluster.dir / "keys" / "id_ed25519.pub", key)
    key.chmod(0o644)
    inventory = cluster.inventory.read_text().replace("[nodes.node1]\n", "[nodes.node1]\npersonal = true\n", 1)
    # A lost connection ends its user's jobs after 3 s (node_timeout), so the test sees it happen.
    m = Melon(short_tmp, inventory="node_timeout = 3\n" + inventory + ACCOUNTS, work=cluster.shared / f"{short_tmp.name}-pm")
    m.start()
    try:
        wait_for(lambda: all(a["up"] for a in _runs_as(m).values()), timeout=30, what="both of node1's connections")
        assert _runs_as(m) == {"alice": {"account": "alice", "up": True, "backend": "none"},
                               "bob": {"account": "cs123", "up": True, "backend": "none"}}
        assert ("node1 runs only the jobs of alice (as alice, limits none), bob (as cs123, limits none)"
                in m.run("minfo").stdout)
        setup = subprocess.run([str(BIN / "melond"), "--inventory", str(m.inventory), "--state-dir", str(m.state),
                                "--print-node-setup", "node1"], capture_output=True, text=True, timeout=120)
        check = subprocess.run([str(BIN / "melond"), "--check", "--inventory", str(m.inventory), "--state-dir",
                                str(short_tmp / "check")], capture_output=True, text=True, timeout=120)
        rows = {line.split()[0]: line for line in check.stdout.splitlines()[1:]}
        assert check.returncode == 0 and list(rows) == ["alice@node1", "bob@node1", "node2", "node3"], check.stdout
        assert "helper runs as cs123" in rows["bob@node1"]
        heads = [line for line in setup.stdout.splitlines() if line.startswith("# node ")]
        assert heads == ["# node alice@node1: melond logs in as alice, not root; its jobs run as alice.",
                         "# node bob@node1: melond logs in as cs123, not root; its jobs run as cs123."], setup.stdout

        mine = {user: m.submit("-w", "node1", "--wrap", "id -un", user=user) for user in ("alice", "bob")}
        for user, account in (("alice", "alice"), ("bob", "cs123")):
            m.wait_state(mine[user], {"CD"})
            assert (m.work / f"melon-{mine[user]}.out").read_text() == f"{account}\n"
            assert f"RunsAs: {account} (the account" in m.run("mshow", str(mine[user]), user=user).stdout
        helpers = cluster.node_exec("node1", "pgrep", "-u", "cs123", "-f", "melon").stdout.split()
        assert helpers, "no helper of bob's runs as cs123 on node1"
        refused = m.run("mbatch", "-w", "node1", "--wrap", "true", check=False)
        assert refused.returncode == 1 and "node1 as alice or bob" in refused.stderr, refused.stderr
        elsewhere = m.submit("--wrap", "id -un")  # root's job: any node but node1
        m.wait_state(elsewhere, {"CD"})
        assert m.job(elsewhere)["assigned_node"] != "node1"

        # bob's connection goes (his key is withdrawn, his login cut): after node_timeout his running
        # job there ends NODE_FAIL and alice's runs on; his next job waits while alice's start
        # there; his starts once his connection is back, and the lost run is killed (fenced).
        bobs = m.submit("-w", "node1", "--wrap", "sleep 3041", user="bob")
        alices = m.submit("-w", "node1", "--wrap", "sleep 8", user="alice")
        m.wait_state(bobs, {"R"})
        m.wait_state(alices, {"R"})
        key.unlink()
        cluster.node_exec("node1", "pkill", "-KILL", "-u", "cs123", "-x", "sshd")
        wait_for(lambda: not _runs_as(m)["bob"]["up"], timeout=30, what="bob's connection to node1 to be down")
        job = m.wait_state(bobs, {"NF"}, timeout=30)
        assert "bob's connection to node node1 unreachable" in job["detail"], job
        assert m.job(alices)["state"] == "R"
        waiting = m.submit("-w", "node1", "--wrap", "id -un", user="bob")
        meanwhile = m.submit("-w", "node1", "--wrap", "id -un", user="alice")
        m.wait_state(meanwhile, {"CD"})
        assert m.job(waiting)["state"] == "PD"
        assert m.wait_state(alices, {"CD", "NF", "F"}, timeout=30)["state"] == "CD"
        shutil.copy(cluster.dir / "keys" / "id_ed25519.pub", key)
        key.chmod(0o644)
        m.wait_state(waiting, {"CD"}, timeout=60)
        assert (m.work / f"melon-{waiting}.out").read_text() == "cs123\n"
        wait_for(lambda: cluster.node_exec("node1", "pgrep", "-f", "sleep 3041").stdout == "", timeout=30,
                 what="bob's lost run to be fenced")

        # An extension reaches bob's job through his connection; a kill -9 of melond loses nothing.
        extended = m.submit("-w", "node1", "-t", "0:04", "--wrap", "sleep 7; echo done", user="bob")
        m.wait_state(extended, {"R"})
        m.run("mextend", "-j", str(extended), "-t", "+0:06", user="bob")
        assert m.wait_state(extended, {"CD", "TO"}, timeout=30)["state"] == "CD"
        survivor = m.submit("-w", "node1", "--wrap", "sleep 5; echo survived", user="bob")
        m.wait_state(survivor, {"R"})
        m.stop(signal.SIGKILL)
        time.sleep(1)
        m.start()
        assert m.wait_state(survivor, {"CD", "F", "NF"}, timeout=60)["state"] == "CD"
        assert (m.work / f"melon-{survivor}.out").read_text() == "survived\n"
    finally:
        m.cleanup()
        key.unlink(missing_ok=True)
        cluster.node_exec("node1", "pkill", "-KILL", "-u", "cs123")
        cluster.node_exec("node1", "userdel", "-r", "cs123")
        shutil.rmtree(m.work, ignore_errors=True)
