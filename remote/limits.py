"""Resource-limit backends for one job: a cgroup per job, or nothing; which one a node can use.

Standard library only: streamed to compute nodes with the helper. Each backend creates the
job's cgroup, moves a process into it, kills everything in it and reports whether the kernel's
OOM killer fired there: `remote.cgroup` holds what they share, `remote.cgroupfs` the cgroup
v1 and v2 backends, `remote.scope` the systemd one.
"""
from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time

from . import cgroup, cpuset, delegated, devices, subtree
from .cgroup import CGROUP_ROOT, NoLimits, read_file
from .cgroupfs import CgroupV1, CgroupV2
from .delegated import DelegatedV2
from .scope import SETPRIV, SYSTEMCTL, SYSTEMD_RUN, SystemdScope, discard_anchor, oom_policy
from .subtree import SubtreeV1, SubtreeV2

BACKENDS = {cls.name: cls for cls in (SystemdScope, DelegatedV2, SubtreeV2, SubtreeV1, CgroupV2, CgroupV1, NoLimits)}


def fence(backend: str, scope: str, key: str) -> None:
    """Kill what is left of a run whose supervisor died, found by its cgroup's name, and remove
    that cgroup: the backend, made for the run's key, names the job's own cgroup (its memory
    cgroup on v1, its cgroup on v2); with systemd, systemctl finds its scope."""
    lim = BACKENDS.get(backend, NoLimits)(key, 0, 0, 0, scope)
    if backend == "systemd":
        try:
            subprocess.run([SYSTEMCTL, "kill", "--signal=SIGKILL", f"melon-job-{key}.scope"],
                           capture_output=True, timeout=10)  # its anchor too: systemd then collects it
        except (OSError, subprocess.SubprocessError):
            pass
        cpuset.remove(lim.rel)  # empty once the kill is through; else the next sweep's
        devices.remove(lim.rel)
        return
    for _ in range(50):  # a fork racing the kill joins the cgroup: go round until it is empty
        if not lim.pids():
            break
        lim.signal_all(signal.SIGKILL)
        time.sleep(0.01)
    lim.destroy()
    cpuset.remove(lim.rel)
    devices.remove(lim.rel)


def _can_make_dir(parent: str) -> bool:
    probe = os.path.join(parent, "melon", f"probe-{os.getpid()}")
    try:
        os.makedirs(probe, exist_ok=True)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def detect(wanted: str = "auto") -> tuple[str, str]:
    """Pick the best backend this process can use here (or the one the inventory asks for, if it
    can be used); return (backend, why)."""
    if wanted == "none":
        return "none", 'the inventory turns enforcement off (limits = "none")'
    usable = _usable()
    if wanted != "auto":
        if wanted in usable:
            return wanted, f"{usable[wanted]} (asked for by the inventory)"
        best, why = next(iter(usable.items()))
        return best, f"the inventory asks for {wanted}, which this node cannot use; using {best}: {why}"
    return next(iter(usable.items()))


def _usable() -> dict[str, str]:
    """Every backend this process could use here, best first; `none` always."""
    if os.geteuid() != 0:
        return _usable_as_account(pwd.getpwuid(os.geteuid()).pw_name)
    out = {}
    if os.path.isdir("/run/systemd/system") and os.path.exists(SYSTEMD_RUN) and os.path.exists(SETPRIV):
        out["systemd"] = "systemd-run transient scopes (MemoryMax, CPUQuota, TasksMax)"
    v2 = os.path.join(CGROUP_ROOT, "cgroup.controllers")
    mem = os.path.join(CGROUP_ROOT, "memory")
    if os.path.exists(v2):
        if "memory" in read_file(v2).split() and _can_make_dir(CGROUP_ROOT):
            out["cgroup-v2"] = "cgroup v2 with the memory controller, writable"
        else:
            out.setdefault("none", "cgroup v2 is mounted but not writable by the helper (not root, no delegation)")
    elif os.path.isdir(mem):
        if _can_make_dir(mem):
            out["cgroup-v1"] = "cgroup v1 memory/cpu controllers, writable"
        else:
            out.setdefault("none", "cgroup v1 is mounted but not writable by the helper (not root)")
    out.setdefault("none", "no cgroup filesystem mounted")
    return out


def _usable_as_account(user: str) -> dict[str, str]:
    """A helper that is not root limits jobs through delegation: its systemd manager's (cgroup
    v2), else a subtree root prepared for it (remote/subtree.py); `none`, saying what each lacks."""
    out, lacks = {}, []
    if os.path.isdir("/run/systemd/system") and cgroup.v2_mounted():
        why = delegated.missing(os.geteuid(), user)
        if why is None:
            out[DelegatedV2.name] = (f"cgroup v2 delegated by {user}'s own systemd manager (lingering): a cgroup "
                                     f"per job inside a scope with Delegate=yes")
        else:
            lacks.append(why)
    if os.path.isdir(os.path.join(CGROUP_ROOT, "memory")) or cgroup.v2_mounted():
        name, why = subtree.missing(user)
        if why is None:
            out[name] = f"a cgroup per job in the subtree root prepared for {user} ({subtree.account_tree(user)})"
        else:
            lacks.append(why)
    else:
        lacks.append("no cgroup filesystem is mounted")
    out["none"] = (f"the helper runs as {user}, not root, and has no cgroup delegation: {'; or '.join(lacks)}")
    return out
