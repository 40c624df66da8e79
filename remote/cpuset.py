"""A job's CPUs enforced by the cgroup v1 `cpuset` controller: the job cannot widen its affinity.

Standard library only: streamed to compute nodes with the helper. melond picks the CPUs; the job
starts with them as its affinity on every node (remote/spawn.py), which is what `nproc` and
thread pools read. Where this process may write the v1 cpuset hierarchy (root, cgroup v1 or
hybrid), the job also gets a cpuset cgroup of its own, beside whatever backend limits its memory
and CPU time: systemd leaves the v1 cpuset hierarchy alone, so this holds under its scopes too.
The supervisor joins the job's cpuset around the fork, as it joins the job's other cgroups, so
the job never runs a moment outside it.
"""
from __future__ import annotations

import os

from .cgroup import CGROUP_ROOT, join, move_self, read_file, v1_home, write_file

ROOT = os.path.join(CGROUP_ROOT, "cpuset")


def usable() -> bool:
    """Can this process give jobs v1 cpusets here?"""
    return (os.geteuid() == 0 and os.path.isfile(os.path.join(ROOT, "cpuset.cpus"))
            and os.access(ROOT, os.W_OK))


def enforced(backend: str) -> bool:
    """Does a job here get a cpuset, whichever way: a v1 one of its own (this module), or on
    cgroup v2 its cgroup's cpuset.cpus (root's cgroupfs backend) or systemd's AllowedCPUs=?"""
    if usable():
        return True
    offered = read_file(os.path.join(CGROUP_ROOT, "cgroup.controllers")).split()
    return os.geteuid() == 0 and "cpuset" in offered and backend in ("systemd", "cgroup-v2")


def text(ids: list[int]) -> str:
    return ",".join(str(c) for c in sorted(ids))


def make(rel: str, ids: list[int]) -> str | None:
    """The job's cpuset folder (`rel` under the hierarchy, as its other cgroups), holding `ids`;
    None where v1 cpusets cannot be used. A new v1 cpuset starts with no CPUs and no memory
    nodes, so each folder made on the way takes its parent's."""
    if not ids or not usable():
        return None
    try:
        return _make(rel, ids)
    except OSError:  # a hierarchy this node will not let us write after all: the affinity still holds
        return None


def _make(rel: str, ids: list[int]) -> str:
    path = ROOT
    for part in rel.strip("/").split("/"):
        parent, path = path, os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not read_file(os.path.join(path, name)).strip():
                write_file(os.path.join(path, name), read_file(os.path.join(parent, name)).strip())
    write_file(os.path.join(path, "cpuset.cpus"), text(ids))
    return path


def home() -> str:
    """This process's own cpuset, to return to after a fork."""
    return v1_home("cpuset")


enter = join


def leave(back: str) -> None:
    move_self(back, ROOT)


def remove(rel: str) -> None:
    """Remove the job's cpuset (`rel` as made) once its processes are gone; one still busy, or
    none at all, is left as it is. Called after every run, re-adopted and fenced ones too."""
    try:
        os.rmdir(os.path.join(ROOT, rel.strip("/")))
    except OSError:
        pass
