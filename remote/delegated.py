"""Limits without root on cgroup v2: the login account's own systemd manager delegates a scope to
the node's supervisor, and each job gets a cgroup inside it.

A process may move another between two cgroups only if it may write `cgroup.procs` of their
common ancestor, so an account cannot move anything out of its SSH session's cgroup, which is
root's. Its systemd user manager can: asked over its private socket for a transient scope around
the supervisor with Delegate=yes (`systemd-run --user --scope -p Delegate=yes` does the same),
it puts the supervisor in `user@UID.service/melon.slice/melon-<spool>-<pid>.scope` and hands that
subtree to the account. The supervisor moves itself into a `supervisor` leaf (cgroup v2 lets
only leaves hold processes once controllers are handed down) and makes each job's cgroup beside
it, as the cgroupfs v2 backend does as root under /sys/fs/cgroup/melon. The manager runs only
while the account is logged in unless lingering is on (`loginctl enable-linger`), which the
probe requires: jobs outlive melond's connection.

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import glob
import os
import time

from . import cgroup
from .cgroup import CGROUP_ROOT, make_dir, read_file
from .cgroupfs import CgroupV2
from .sdbus import BusError, SystemdBus

PLACE_TIMEOUT = 10.0  # seconds the user manager has to move the supervisor into its scope
LINGER_DIR = "/var/lib/systemd/linger"


def manager_socket(uid: int) -> str:
    return f"/run/user/{uid}/systemd/private"


def user_service(uid: int) -> str:
    """The cgroup folder of the account's systemd manager, which holds what it delegates."""
    return os.path.join(CGROUP_ROOT, "user.slice", f"user-{uid}.slice", f"user@{uid}.service")


def missing(uid: int, user: str) -> str | None:
    """What stops delegation through the user manager here, or None when it can be used."""
    found = facts(uid, user)
    if found["cgroup"] != "v2":
        return "this node mounts cgroup v1, and a user's systemd manager delegates only on cgroup v2"
    if not found["linger"]:
        return (f"{user}'s systemd manager would stop (and kill the jobs) when {user} logs out: as root, "
                f"run `loginctl enable-linger {user}` once")
    if not found["manager"]:
        return f"{user}'s systemd manager does not run ({manager_socket(uid)} is missing)"
    if "memory" not in found["delegated"]:
        return (f"{user}'s systemd manager is given no memory controller (user@.service "
                f"DelegateControllers); as root, add `Delegate=cpu memory pids` to user@.service")
    return None


def facts(uid: int, user: str) -> dict:
    """What melond needs to print a node's one-time setup for this account (melond/nodes/setup.py)."""
    return {"cgroup": "v2" if cgroup.v2_mounted() else "v1" if os.path.isdir(os.path.join(CGROUP_ROOT, "memory")) else "none",
            "systemd": os.path.isdir("/run/systemd/system"), "linger": os.path.exists(os.path.join(LINGER_DIR, user)),
            "manager": os.path.exists(manager_socket(uid)),
            "delegated": read_file(os.path.join(user_service(uid), "cgroup.controllers")).split()}


_base: tuple[int, str] = (0, "")  # (pid, folder): this supervisor's delegated scope, once it is in it


def enter(scope: str) -> str:
    """Put this process (the supervisor) into a delegated scope of the account's manager, in its
    `supervisor` leaf, with the controllers handed down; return the scope's folder. Once per
    process: later calls return the same folder."""
    global _base
    if _base[0] == os.getpid():
        return _base[1]
    unit = f"melon-{scope}-{os.getpid()}.scope"
    bus = SystemdBus(manager_socket(os.getuid()))
    try:
        serial = bus.start_scope(unit, [os.getpid()], [
            ("Slice", ("s", "melon.slice")), ("Delegate", ("b", True)),
            ("Description", ("s", "melon node supervisor and its jobs")), ("CollectMode", ("s", "inactive-or-failed"))])
        deadline = time.monotonic() + PLACE_TIMEOUT
        while not cgroup.own_v2().endswith("/" + unit):
            for answered, error in bus.replies():
                if answered == serial and error is not None:
                    raise BusError(f"the user's systemd manager refused the delegated scope: {error}")
            if time.monotonic() > deadline:
                raise BusError(f"the user's systemd manager did not move the supervisor into {unit} "
                               f"within {PLACE_TIMEOUT:g} s")
            time.sleep(0.005)
    finally:
        bus.close()
    folder = CGROUP_ROOT + cgroup.own_v2()
    cgroup.move_into(os.path.join(folder, "supervisor"))
    cgroup.hand_down(folder)
    cgroup.forget_own_cgroups()  # the jobs' launches return here, not to the SSH session
    _base = (os.getpid(), folder)
    return folder


class DelegatedV2(CgroupV2):
    """cgroup v2 without root: memory.max, cpu.max, pids.max, cgroup.kill on a cgroup per job
    inside the supervisor's delegated scope."""

    name = "systemd-user"

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(key, cpus, memory, tasks_max, scope)
        if _base[0] == os.getpid():
            self.dir = os.path.join(_base[1], f"job-{key}")
        else:  # the run of a supervisor that died (fence): its scope is named by that supervisor's pid
            found = glob.glob(os.path.join(user_service(os.getuid()), "melon.slice", f"melon-{scope}-*.scope",
                                           f"job-{key}"))
            self.dir = found[0] if found else os.path.join(user_service(os.getuid()), "melon.slice", f"job-{key}")

    def create(self) -> None:
        make_dir(self.dir)
        self.limit()
