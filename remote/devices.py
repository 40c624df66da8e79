"""A job's devices enforced by its cgroup: a job given GPU 1 of a node cannot open GPU 0.

Standard library only: streamed to compute nodes with the helper. melond names, for each job on a
node with device files (the inventory's gres `files`), the files that are its own and those of
the node that are not; the kernel refuses the latter with EPERM.

- cgroup v1 (root): the job gets a `devices` cgroup of its own, under this process's own (so it
  never has more than the helper has), denying the node's other device files, as Slurm's
  ConstrainDevices does: every device not named as a generic resource stays as it was. systemd
  leaves the v1 devices hierarchy alone for a scope without device properties, so this holds
  under its scopes too; the supervisor joins it around the fork, as it joins the job's cpuset.
- cgroup v2 with systemd: the scope gets `DevicePolicy=closed` and `DeviceAllow=` for the job's
  own files and the GPU drivers' shared control files (remote/scope.py), systemd loading the BPF
  program v2 needs. The standard pseudo-devices stay open; any other device is closed.
- cgroup v2 without systemd: a BPF program would be needed, which this helper does not load:
  jobs are not isolated from each other's devices, and the probe says so (`minfo`).
"""
from __future__ import annotations

import os
import stat

from .cgroup import CGROUP_ROOT, join, move_self, read_file, v1_home, v2_mounted, write_file

ROOT = os.path.join(CGROUP_ROOT, "devices")
# What every GPU job needs beside its own GPU files: the drivers' shared control files
# (libnvidia-container adds these to each GPU container; AMD's compute node is shared by all GPUs).
SHARED = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/kfd")


def usable() -> bool:
    """Can this process give jobs v1 devices cgroups here?"""
    return os.geteuid() == 0 and os.path.isfile(os.path.join(ROOT, "devices.deny")) and os.access(ROOT, os.W_OK)


def isolation(backend: str) -> str:
    """How jobs' devices are enforced on this node, or "" where they are not (the probe's word)."""
    if usable():
        return "cgroup v1 devices controller"
    if backend == "systemd" and os.geteuid() == 0 and v2_mounted():
        return "systemd DevicePolicy=closed (cgroup v2 BPF)"
    return ""


def rule(path: str) -> str | None:
    """`c 195:1 rwm` for a device file; None for anything else (a missing file included)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} rwm" if kind else None


def allowed(own: list[str]) -> list[str]:
    """A job's own device files and the shared control files that exist here: what a closed
    device policy lets it open."""
    return [*own, *(p for p in SHARED if os.path.exists(p) and p not in own)]


def home() -> str:
    """This process's own devices cgroup, which a job's is made under and returned from."""
    return v1_home("devices")


def make(rel: str, others: list[str]) -> str | None:
    """The job's devices cgroup (`rel` under this process's own) denying `others`; None where
    there is nothing to deny or v1 devices cgroups cannot be used here."""
    rules = [r for r in map(rule, others) if r]
    if not rules or not usable():
        return None
    path = home()
    for part in rel.strip("/").split("/"):
        path = os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
    inherited = read_file(os.path.join(path, "devices.list")).split("\n")
    allowed_list = [e for e in inherited if e.strip()]
    if allowed_list == ["a *:* rwm"]:  # everything allowed (the root's way): deny those
        for r in rules:
            write_file(os.path.join(path, "devices.deny"), r)
        return path
    # An allow list (a container's): a deny removes only an entry that names the device exactly,
    # never one that names its whole major, so the list is written again without them.
    write_file(os.path.join(path, "devices.deny"), "a")
    for entry in narrowed(allowed_list, rules):
        write_file(os.path.join(path, "devices.allow"), entry)
    return path


def narrowed(allowed_list: list[str], denied: list[str]) -> list[str]:
    """An allow list (`c 195:* rwm` entries) without the `denied` devices (`c 195:1 rwm`): an
    entry for one of them is left out, an entry for all minors of their major is spelt out minor
    by minor (0-255) but theirs. What only allows mknod is kept: it opens nothing."""
    gone = {(d.split()[0], d.split()[1]) for d in denied}
    majors = {(kind, dev.split(":")[0]) for kind, dev in gone}
    out = []
    for entry in allowed_list:
        kind, dev, access = entry.split()
        major, _, minor = dev.partition(":")
        if not set(access) & set("rw"):
            out.append(entry)
        elif (kind, dev) in gone:
            continue
        elif minor == "*" and (kind, major) in majors:
            out += [f"{kind} {major}:{m} {access}" for m in range(256) if (kind, f"{major}:{m}") not in gone]
        else:
            out.append(entry)
    return out


enter = join


def leave(back: str) -> None:
    move_self(back, ROOT)


def remove(rel: str) -> None:
    """Remove the job's devices cgroup once its processes are gone (one still busy is left)."""
    try:
        os.rmdir(os.path.join(home(), rel.strip("/")))
    except OSError:
        pass
