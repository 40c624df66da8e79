"""Resource-limit backends for one job: a cgroup per job, or nothing.

Standard library only: streamed to compute nodes with the helper. Each backend
creates the job's cgroup, moves a process into it, kills everything in it and
reports whether the kernel's OOM killer fired there.
"""
from __future__ import annotations

import os
import signal
import time

CGROUP_ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _stat_value(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value or 0)
    return 0


class NoLimits:
    """Process-group only: no memory or CPU enforcement on this node."""

    name = "none"

    def __init__(self, job_id: int, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        self.job_id = job_id
        self.leader = 0
        # melon/<scope>/job-<id>: the scope (a hash of the spool path) keeps two melonds on one machine apart.
        self.rel = os.path.join("melon", scope, f"job-{job_id}")

    def create(self) -> None:
        """Nothing to create."""

    def attach(self, pid: int) -> None:
        """Remember the job's process group leader (the job calls setsid)."""
        self.leader = pid

    def pids(self) -> list[int]:
        return []

    def signal_all(self, sig: int) -> None:
        if self.leader:
            try:
                os.killpg(self.leader, sig)
            except ProcessLookupError:
                pass

    def oom_killed(self) -> bool:
        return False

    def destroy(self) -> None:
        """Nothing to remove."""


class CgroupV1(NoLimits):
    """cgroup v1: memory.limit_in_bytes, cpu.cfs_quota_us, pids.max, freezer for clean kills."""

    name = "cgroup-v1"

    def __init__(self, job_id: int, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(job_id, cpus, memory, tasks_max, scope)
        self.cpus, self.memory, self.tasks_max = cpus, memory, tasks_max
        self.dirs = {c: os.path.join(CGROUP_ROOT, c, self.rel)
                     for c in V1_CONTROLLERS if os.path.isdir(os.path.join(CGROUP_ROOT, c))}

    def create(self) -> None:
        for d in self.dirs.values():
            os.makedirs(d, exist_ok=True)
        mem = self.dirs.get("memory")
        if mem and self.memory:
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(self.memory))
            try:  # without swap accounting the file is absent; the limit above still holds
                _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(self.memory))
            except OSError:
                pass
        cpu = self.dirs.get("cpu")
        if cpu and self.cpus:
            _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(self.cpus * CPU_PERIOD_US))
        pids = self.dirs.get("pids")
        if pids and self.tasks_max:
            _write(os.path.join(pids, "pids.max"), str(self.tasks_max))

    def attach(self, pid: int) -> None:
        super().attach(pid)
        for d in self.dirs.values():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        d = self.dirs.get("memory") or next(iter(self.dirs.values()), None)
        return [int(p) for p in _read(os.path.join(d, "cgroup.procs")).split()] if d else []

    def signal_all(self, sig: int) -> None:
        # Freezing first means a fork racing the kill cannot leave a survivor.
        freezer = self.dirs.get("freezer")
        frozen = False
        if sig == signal.SIGKILL and freezer:
            try:
                _write(os.path.join(freezer, "freezer.state"), "FROZEN")
                frozen = True
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if frozen:
            _write(os.path.join(freezer, "freezer.state"), "THAWED")
        super().signal_all(sig)

    def oom_killed(self) -> bool:
        mem = self.dirs.get("memory")
        return bool(mem) and _stat_value(_read(os.path.join(mem, "memory.oom_control")), "oom_kill") > 0

    def destroy(self) -> None:
        _drain(self)
        for d in self.dirs.values():
            try:
                os.rmdir(d)
            except OSError:
                pass


class CgroupV2(NoLimits):
    """cgroup v2: memory.max, cpu.max, pids.max, cgroup.kill."""

    name = "cgroup-v2"

    def __init__(self, job_id: int, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(job_id, cpus, memory, tasks_max, scope)
        self.cpus, self.memory, self.tasks_max = cpus, memory, tasks_max
        self.dir = os.path.join(CGROUP_ROOT, self.rel)

    def create(self) -> None:
        # Each level must hand the controllers down to the next (cgroup v2's subtree_control).
        level = CGROUP_ROOT
        for part in self.rel.split(os.sep):
            wanted = {"memory", "cpu", "pids"} & set(_read(os.path.join(level, "cgroup.controllers")).split())
            enabled = set(_read(os.path.join(level, "cgroup.subtree_control")).split())
            if wanted - enabled:
                _write(os.path.join(level, "cgroup.subtree_control"), " ".join(f"+{c}" for c in sorted(wanted - enabled)))
            level = os.path.join(level, part)
            os.makedirs(level, exist_ok=True)
        if self.memory:
            _write(os.path.join(self.dir, "memory.max"), str(self.memory))
            try:
                _write(os.path.join(self.dir, "memory.swap.max"), "0")
            except OSError:
                pass
        if self.cpus:
            _write(os.path.join(self.dir, "cpu.max"), f"{self.cpus * CPU_PERIOD_US} {CPU_PERIOD_US}")
        if self.tasks_max:
            _write(os.path.join(self.dir, "pids.max"), str(self.tasks_max))

    def attach(self, pid: int) -> None:
        super().attach(pid)
        _write(os.path.join(self.dir, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in _read(os.path.join(self.dir, "cgroup.procs")).split()]

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            try:
                _write(os.path.join(self.dir, "cgroup.kill"), "1")
                return
            except OSError:  # kernels before 5.14 lack cgroup.kill
                pass
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        super().signal_all(sig)

    def oom_killed(self) -> bool:
        return _stat_value(_read(os.path.join(self.dir, "memory.events")), "oom_kill") > 0

    def destroy(self) -> None:
        _drain(self)
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


def _drain(group: NoLimits) -> None:
    """Kill until the cgroup is empty (a cgroup with members cannot be removed); about a second at most."""
    for _ in range(50):
        if not group.pids():
            return
        group.signal_all(signal.SIGKILL)
        time.sleep(0.02)


BACKENDS = {cls.name: cls for cls in (CgroupV2, CgroupV1, NoLimits)}


def _can_make_dir(parent: str) -> bool:
    probe = os.path.join(parent, "melon", f"probe-{os.getpid()}")
    try:
        os.makedirs(probe, exist_ok=True)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def release_scope(scope: str) -> None:
    """Remove this spool's (empty) cgroup folders when its helper leaves; busy ones stay."""
    dirs = [os.path.join(CGROUP_ROOT, "melon", scope)]
    dirs += [os.path.join(CGROUP_ROOT, c, "melon", scope) for c in V1_CONTROLLERS]
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            pass


def detect() -> tuple[str, str]:
    """Pick the best backend this process can use here; return (backend, why)."""
    v2 = os.path.join(CGROUP_ROOT, "cgroup.controllers")
    if os.path.exists(v2):
        if "memory" in _read(v2).split() and _can_make_dir(CGROUP_ROOT):
            return "cgroup-v2", "cgroup v2 with the memory controller, writable"
        return "none", "cgroup v2 is mounted but not writable by the helper (not root, no delegation)"
    mem = os.path.join(CGROUP_ROOT, "memory")
    if os.path.isdir(mem):
        if _can_make_dir(mem):
            return "cgroup-v1", "cgroup v1 memory/cpu controllers, writable"
        return "none", "cgroup v1 is mounted but not writable by the helper (not root)"
    return "none", "no cgroup filesystem mounted"
