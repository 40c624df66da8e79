"""The cgroupfs backends: cgroup v1 (one memory cgroup per job, reused slots in the cpu, pids
and freezer hierarchies) and cgroup v2 (one cgroup per job).

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import os
import signal

from . import cpuset
from .cgroup import (CGROUP_ROOT, CPU_PERIOD_US, NoLimits, POOLED_V1, hand_down, make_dir, mine, move_self,
                           own_cgroups, read_file, release_scope, stat_value, v1_mounted, v1_peak, v2_usage, write_file)

class CgroupV1(NoLimits):
    """cgroup v1: memory.limit_in_bytes, cpu.cfs_quota_us, pids.max, freezer for clean kills.

    The memory cgroup is the job's own (`job-<key>`: its OOM count and peak usage must start
    at zero); in the cpu, pids and freezer hierarchies, which keep nothing of a job that is
    read afterwards, the job gets a slot that the process reuses for its next jobs (_Slots).
    """

    name = "cgroup-v1"

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(key, cpus, memory, tasks_max, scope)
        self.cpus, self.memory, self.tasks_max = cpus, memory, tasks_max
        present = v1_mounted()
        self.dirs = {c: os.path.join(CGROUP_ROOT, c, self.rel) for c in present if c not in POOLED_V1}
        self.pooled = [c for c in present if c in POOLED_V1]
        self.slot: str | None = None

    def create(self) -> None:
        for d in self.dirs.values():
            make_dir(d)
        if self.pooled:
            self.slot = _slots().take(self.folder, self.pooled)
            for c in self.pooled:
                self.dirs[c] = _slot_dir(c, self.folder, self.slot)
        mem = self.dirs.get("memory")
        if mem and self.memory:
            write_file(os.path.join(mem, "memory.limit_in_bytes"), str(self.memory))
            try:  # without swap accounting the file is absent; the limit above still holds
                write_file(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(self.memory))
            except OSError:
                pass
        # A slot keeps the kernel's default CFS period (ours); its quota and task limit are the
        # last job's until written, so they are always written, "no limit" included.
        cpu = self.dirs.get("cpu")
        if cpu:
            write_file(os.path.join(cpu, "cpu.cfs_quota_us"), str(self.cpus * CPU_PERIOD_US if self.cpus else -1))
        pids = self.dirs.get("pids")
        if pids:
            write_file(os.path.join(pids, "pids.max"), str(self.tasks_max) if self.tasks_max else "max")

    def enter(self) -> None:
        own = own_cgroups()
        self.home = {c: os.path.join(CGROUP_ROOT, c, own[c].lstrip("/")) for c in self.dirs if c in own}
        for d in self.dirs.values():
            write_file(os.path.join(d, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        for c, d in self.home.items():
            move_self(d, os.path.join(CGROUP_ROOT, c))

    def pids(self) -> list[int]:
        d = self.dirs.get("memory") or next(iter(self.dirs.values()), None)
        return [int(p) for p in read_file(os.path.join(d, "cgroup.procs")).split()] if d else []

    def signal_all(self, sig: int) -> None:
        # Freezing first means a fork racing the kill cannot leave a survivor.
        freezer = self.dirs.get("freezer")
        frozen = False
        if sig == signal.SIGKILL and freezer:
            try:
                write_file(os.path.join(freezer, "freezer.state"), "FROZEN")
                frozen = True
            except OSError:
                pass
        try:
            super().signal_all(sig)
        finally:
            if frozen:  # the slot is reused: never leave it frozen
                write_file(os.path.join(freezer, "freezer.state"), "THAWED")

    def oom_killed(self) -> bool:
        mem = self.dirs.get("memory")
        return bool(mem) and stat_value(read_file(os.path.join(mem, "memory.oom_control")), "oom_kill") > 0

    def usage(self) -> tuple[float | None, int | None]:
        # The cpu hierarchy's slots are reused, so CPU time comes from the job's rusage instead.
        mem = self.dirs.get("memory")
        return None, v1_peak(mem) if mem else None

    def destroy(self) -> None:
        """Remove the job's own cgroups; its slot goes back to the pool once they are gone (a
        job still busy keeps both)."""
        gone = True
        for c, d in self.dirs.items():
            if c in POOLED_V1:
                continue
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        if self.slot is not None and gone:
            _slots().give(self.folder, self.slot)
            self.slot = None


class _Slots:
    """cgroups in the v1 hierarchies that keep no per-job state (cpu, pids, freezer), reused by
    one process from one job to the next: a mkdir and a rmdir per hierarchy cost the kernel more
    (and a deferred release) than rewriting two limits.

    A slot is taken again only once its pids count is back to zero. It is named for the process
    that made it, `slot-<pid namespace>-<pid>-<n>`: containers that share the host's cgroup
    tree (the test cluster's nodes) have pids of their own, so the pid alone would not tell
    whose a slot is. A process removes its free slots when it exits; the empty slots of dead
    processes of its own pid namespace are swept, never others'."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.ns = _pid_namespace()
        self.free: dict[str, list[str]] = {}  # by scope folder (melon/<scope>)
        self.made = 0

    def take(self, folder: str, controllers: list[str]) -> str:
        free = self.free.get(folder)
        if free is None:
            free = self.free[folder] = []
            _sweep_slots(folder, self.ns)
        for i in range(len(free) - 1, -1, -1):
            count = read_file(os.path.join(_slot_dir("pids", folder, free[i]), "pids.current")).strip() \
                if "pids" in controllers else "0"
            if count == "0":
                return free.pop(i)
            if not count:  # gone: never reused
                del free[i]
            # Else its last job's processes are dead but not yet reaped (orphans wait for PID 1):
            # they still count against pids.max, so the slot waits until they are released.
        while True:
            self.made += 1
            slot = f"slot-{self.ns}-{self.pid}-{self.made}"
            # One that exists is a leftover of a dead process that had our pid: never shared.
            if all([make_dir(_slot_dir(c, folder, slot)) for c in controllers]):
                return slot

    def give(self, folder: str, slot: str) -> None:
        self.free.setdefault(folder, []).append(slot)

    def release(self) -> None:
        for folder, free in self.free.items():
            for slot in free:
                for c in POOLED_V1:
                    try:
                        os.rmdir(_slot_dir(c, folder, slot))
                    except OSError:
                        pass
            release_scope(folder)
        self.free.clear()


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _slot_dir(controller: str, folder: str, slot: str) -> str:
    return os.path.join(CGROUP_ROOT, controller, folder, slot)


def _slots() -> _Slots:
    return mine(_Slots)


def _sweep_slots(folder: str, ns: int) -> None:
    """Remove the empty slots of processes of this pid namespace that are gone (a supervisor
    killed outright); another namespace's pids cannot be checked from here."""
    for c in POOLED_V1:
        base = os.path.join(CGROUP_ROOT, c, folder)
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            parts = name.split("-")
            if len(parts) != 4 or parts[0] != "slot" or parts[1] != str(ns) or not parts[2].isdigit():
                continue
            if os.path.exists(f"/proc/{parts[2]}"):
                continue  # its process lives (or it is ours): its slots are its own
            try:
                os.rmdir(os.path.join(base, name))
            except OSError:
                pass


class CgroupV2(NoLimits):
    """cgroup v2: memory.max, cpu.max, pids.max, cgroup.kill."""

    name = "cgroup-v2"

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(key, cpus, memory, tasks_max, scope)
        self.cpus, self.memory, self.tasks_max = cpus, memory, tasks_max
        self.dir = os.path.join(CGROUP_ROOT, self.rel)

    def create(self) -> None:
        # Each level must hand the controllers down to the next (cgroup v2's subtree_control).
        level = CGROUP_ROOT
        for part in self.rel.split(os.sep):
            hand_down(level)
            level = os.path.join(level, part)
            os.makedirs(level, exist_ok=True)
        self.limit()

    def limit(self) -> None:
        """The job's limits, written into its (existing) cgroup."""
        if self.memory:
            write_file(os.path.join(self.dir, "memory.max"), str(self.memory))
            try:
                write_file(os.path.join(self.dir, "memory.swap.max"), "0")
            except OSError:
                pass
        if self.cpus:
            write_file(os.path.join(self.dir, "cpu.max"), f"{self.cpus * CPU_PERIOD_US} {CPU_PERIOD_US}")
        if self.tasks_max:
            write_file(os.path.join(self.dir, "pids.max"), str(self.tasks_max))
        if self.cpu_ids and os.path.exists(os.path.join(self.dir, "cpuset.cpus")):  # cpuset handed down
            write_file(os.path.join(self.dir, "cpuset.cpus"), cpuset.text(self.cpu_ids))

    def enter(self) -> None:
        self.home = CGROUP_ROOT + own_cgroups().get("", "/")
        write_file(os.path.join(self.dir, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        move_self(self.home, CGROUP_ROOT)

    def pids(self) -> list[int]:
        return [int(p) for p in read_file(os.path.join(self.dir, "cgroup.procs")).split()]

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            try:
                write_file(os.path.join(self.dir, "cgroup.kill"), "1")
                return
            except OSError:  # kernels before 5.14 lack cgroup.kill
                pass
        super().signal_all(sig)

    def oom_killed(self) -> bool:
        return stat_value(read_file(os.path.join(self.dir, "memory.events")), "oom_kill") > 0

    def usage(self) -> tuple[float | None, int | None]:
        return v2_usage(self.dir)

    def destroy(self) -> None:
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

