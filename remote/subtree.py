"""Limits without root from a cgroup subtree that root prepared once for the login account:
`melon/user-<account>` in each hierarchy, owned by the account.

cgroup v1: a process may move any process of its own uid into a cgroup whose `cgroup.procs`
it may write. So the supervisor moves itself into `<subtree>/<scope>/supervisor` in every
hierarchy (the named `systemd` one too, where mounted, so that systemd never counts it in the
unit of the login it came from), and each job gets its memory cgroup and its cpu, pids and
freezer slots beside it, as root's cgroup-v1 backend does under `melon/`.

cgroup v2: a process may move another only below a common ancestor whose `cgroup.procs` it may
write, so nothing of the account's can enter a subtree from outside it. Its logins must start
inside: a PAM session hook root adds once (`melond --print-node-setup`) puts them into the
subtree's `login` leaf. From there the supervisor moves itself into
`<subtree>/<scope>/supervisor` and makes each job's cgroup beside that leaf (cgroup v2 lets
only leaves hold processes once controllers are handed down), as the cgroupfs v2 backend does.

Where the account's own systemd manager can delegate (remote/delegated.py), that is preferred:
it needs no hook in the login path.

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import os
import pwd

from . import cgroup
from .cgroup import CGROUP_ROOT, TREE, hand_down, make_dir, move_into, read_file, v1_mounted, v2_mounted
from .cgroupfs import CgroupV1, CgroupV2

NAMED = "systemd"  # v1's named hierarchy systemd tracks its units in
SUPERVISOR = "supervisor"


def account_tree(user: str | None = None) -> str:
    """The subtree's path inside each hierarchy, for this process's account by default."""
    return os.path.join(TREE, f"user-{user or _me()}")


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def v1_hierarchies() -> list[str]:
    """The v1 hierarchies the subtree must be in: those jobs are limited in, and systemd's."""
    named = [NAMED] if os.path.exists(os.path.join(CGROUP_ROOT, NAMED, "cgroup.procs")) else []
    return v1_mounted() + named


def _owned(folder: str) -> bool:
    """The account may make cgroups in the folder and move processes into it."""
    return os.access(folder, os.W_OK | os.X_OK) and os.access(os.path.join(folder, "cgroup.procs"), os.W_OK)


def facts(user: str) -> dict:
    """What the node offers this account, for melond's setup text (melond/nodes/setup.py)."""
    tree = account_tree(user)
    if v2_mounted():
        base = os.path.join(CGROUP_ROOT, tree)
        login = cgroup.own_v2()
        return {"v2": {"path": base, "prepared": os.path.isdir(base) and _owned(base),
                       "controllers": read_file(os.path.join(base, "cgroup.subtree_control")).split(),
                       "login": login, "inside": (login + "/").startswith(f"/{tree}/")}}
    hierarchies = v1_hierarchies()
    return {"v1": {"hierarchies": hierarchies,
                   "prepared": [h for h in hierarchies if _owned(os.path.join(CGROUP_ROOT, h, tree))]}}


def missing(user: str) -> tuple[str, str | None]:
    """The subtree backend this node would use for the account, and what stops it (None: nothing)."""
    found = facts(user)
    fix = f"`melond --print-node-setup` prints the root commands that prepare it"
    if "v2" in found:
        v2 = found["v2"]
        if not v2["prepared"]:
            return SubtreeV2.name, f"no cgroup subtree is prepared for {user} ({v2['path']}, owned by {user}): {fix}"
        if "memory" not in v2["controllers"]:
            return SubtreeV2.name, (f"{v2['path']} is given no memory controller (its cgroup.subtree_control "
                                    f"has: {' '.join(v2['controllers']) or 'nothing'}): {fix}")
        if not v2["inside"]:
            return SubtreeV2.name, (f"{user}'s SSH logins start in {v2['login'] or 'an unknown cgroup'}, outside "
                                    f"{v2['path']}, and cgroup v2 lets nothing move in from outside: the node's "
                                    f"login hook is missing; {fix}")
        return SubtreeV2.name, None
    v1 = found["v1"]
    if "memory" not in v1["hierarchies"]:
        return SubtreeV1.name, "no cgroup memory controller is mounted"
    lacking = [h for h in v1["hierarchies"] if h not in v1["prepared"]]
    if lacking:
        where = ", ".join(os.path.join(CGROUP_ROOT, h, account_tree(user)) for h in lacking)
        return SubtreeV1.name, f"no cgroup subtree is prepared for {user} in {where}: {fix}"
    return SubtreeV1.name, None


_entered = 0  # the pid of the process that moved into its subtree (a forked child has not)


def enter(scope: str) -> None:
    """Move this process (the supervisor) into `<subtree>/<scope>/supervisor` in every
    hierarchy, with the controllers handed down to its jobs' cgroups (v2). Once per process."""
    global _entered
    if _entered == os.getpid():
        return
    tree = account_tree()
    if v2_mounted():
        folder = os.path.join(CGROUP_ROOT, tree, scope)
        move_into(os.path.join(folder, SUPERVISOR))
        hand_down(folder)
    else:
        for h in v1_hierarchies():
            move_into(os.path.join(CGROUP_ROOT, h, tree, scope, SUPERVISOR))
    cgroup.forget_own_cgroups()  # the jobs' launches return here, not to the SSH session
    _entered = os.getpid()


class SubtreeV2(CgroupV2):
    """cgroup v2 without root: memory.max, cpu.max, pids.max, cgroup.kill on a cgroup per job
    in the account's prepared subtree, beside its supervisor's leaf."""

    name = "cgroup-v2-user"
    tree = staticmethod(account_tree)

    def create(self) -> None:
        make_dir(self.dir)  # its parents are the supervisor's (enter), which hand the controllers down
        self.limit()


class SubtreeV1(CgroupV1):
    """cgroup v1 without root: as root's cgroup-v1 backend, in the account's prepared subtree."""

    name = "cgroup-v1-user"
    tree = staticmethod(account_tree)
