"""Resource-limit backends for one job: a cgroup per job, or nothing.

Standard library only: streamed to compute nodes with the helper. Each backend
creates the job's cgroup, moves a process into it, kills everything in it and
reports whether the kernel's OOM killer fired there.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import TypeVar

CGROUP_ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
POOLED_V1 = ("cpu", "pids", "freezer")  # hierarchies whose job cgroups are reused (_Slots)
T = TypeVar("T")


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
    wraps = False  # True: the job's command is wrapped (systemd-run), not moved into a cgroup

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        self.key = key  # the job run's spool key: `17`, or `17.1` once requeued
        self.leader = 0
        # melon/<scope>/job-<id>: the scope (a hash of the spool path) keeps two melonds on one machine apart.
        self.rel = os.path.join("melon", scope, f"job-{key}")

    def create(self) -> None:
        """Nothing to create."""

    def enter(self) -> None:
        """Move this process into the job's cgroup, so that the job it spawns starts there."""

    def leave(self) -> None:
        """Move this process back where it came from."""

    def pids(self) -> list[int]:
        return []

    def signal_all(self, sig: int) -> None:
        """Every process of the job (its cgroup's, for the cgroup backends), then its process group.
        Never the caller: the supervisor is in a job's cgroup only around a fork."""
        me = os.getpid()
        for pid in self.pids():
            if pid == me:
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if self.leader:
            try:
                os.killpg(self.leader, sig)
            except ProcessLookupError:
                pass

    def oom_killed(self) -> bool:
        return False

    def destroy(self) -> None:
        """Remove the job's cgroup once empty (the supervisor empties it: Job.cleanup, which does
        not block its loop); one still busy is left behind. Nothing to remove here."""


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
        self.scope = scope
        present = _v1_mounted()
        self.dirs = {c: os.path.join(CGROUP_ROOT, c, self.rel) for c in present if c not in POOLED_V1}
        self.pooled = [c for c in present if c in POOLED_V1]
        self.slot: str | None = None

    def create(self) -> None:
        for d in self.dirs.values():
            _mkdir(d)
        if self.pooled:
            self.slot = _slots().take(self.scope, self.pooled)
            for c in self.pooled:
                self.dirs[c] = _slot_dir(c, self.scope, self.slot)
        mem = self.dirs.get("memory")
        if mem and self.memory:
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(self.memory))
            try:  # without swap accounting the file is absent; the limit above still holds
                _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(self.memory))
            except OSError:
                pass
        # A slot keeps the kernel's default CFS period (ours); its quota and task limit are the
        # last job's until written, so they are always written, "no limit" included.
        cpu = self.dirs.get("cpu")
        if cpu:
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(self.cpus * CPU_PERIOD_US if self.cpus else -1))
        pids = self.dirs.get("pids")
        if pids:
            _write(os.path.join(pids, "pids.max"), str(self.tasks_max) if self.tasks_max else "max")

    def enter(self) -> None:
        own = _own_cgroups()
        self.home = {c: os.path.join(CGROUP_ROOT, c, own[c].lstrip("/")) for c in self.dirs if c in own}
        for d in self.dirs.values():
            _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        for c, d in self.home.items():
            _move_self(d, os.path.join(CGROUP_ROOT, c))

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
        try:
            super().signal_all(sig)
        finally:
            if frozen:  # the slot is reused: never leave it frozen
                _write(os.path.join(freezer, "freezer.state"), "THAWED")

    def oom_killed(self) -> bool:
        mem = self.dirs.get("memory")
        return bool(mem) and _stat_value(_read(os.path.join(mem, "memory.oom_control")), "oom_kill") > 0

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
            _slots().give(self.scope, self.slot)
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
        self.free: dict[str, list[str]] = {}  # by scope
        self.made = 0

    def take(self, scope: str, controllers: list[str]) -> str:
        free = self.free.get(scope)
        if free is None:
            free = self.free[scope] = []
            _sweep_slots(scope, self.ns)
        for i in range(len(free) - 1, -1, -1):
            count = _read(os.path.join(_slot_dir("pids", scope, free[i]), "pids.current")).strip() \
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
            if all([_mkdir(_slot_dir(c, scope, slot)) for c in controllers]):
                return slot

    def give(self, scope: str, slot: str) -> None:
        self.free.setdefault(scope, []).append(slot)

    def release(self) -> None:
        for scope, free in self.free.items():
            for slot in free:
                for c in POOLED_V1:
                    try:
                        os.rmdir(_slot_dir(c, scope, slot))
                    except OSError:
                        pass
            release_scope(scope)
        self.free.clear()


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _slot_dir(controller: str, scope: str, slot: str) -> str:
    return os.path.join(CGROUP_ROOT, controller, "melon", scope, slot)


_reused: dict[type, _Slots | _Anchors] = {}  # this process's pools, by class


def _mine(cls: type[T]) -> T:
    """This process's pool of a kind: a forked child starts with none of its parent's."""
    pool = _reused.get(cls)
    if pool is None or pool.pid != os.getpid():
        pool = _reused[cls] = cls()
    return pool


def _slots() -> _Slots:
    return _mine(_Slots)


def _anchors() -> _Anchors:
    return _mine(_Anchors)


def release_reused() -> None:
    """On the supervisor's way out: remove its free cgroup slots (and the scope's folders, once
    empty) and end its idle scope anchors."""
    for pool in _reused.values():
        if pool.pid == os.getpid():
            pool.release()


def _sweep_slots(scope: str, ns: int) -> None:
    """Remove the empty slots of processes of this pid namespace that are gone (a supervisor
    killed outright); another namespace's pids cannot be checked from here."""
    for c in POOLED_V1:
        base = os.path.join(CGROUP_ROOT, c, "melon", scope)
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

    def enter(self) -> None:
        self.home = CGROUP_ROOT + _own_cgroups().get("", "/")
        _write(os.path.join(self.dir, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        _move_self(self.home, CGROUP_ROOT)

    def pids(self) -> list[int]:
        return [int(p) for p in _read(os.path.join(self.dir, "cgroup.procs")).split()]

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            try:
                _write(os.path.join(self.dir, "cgroup.kill"), "1")
                return
            except OSError:  # kernels before 5.14 lack cgroup.kill
                pass
        super().signal_all(sig)

    def oom_killed(self) -> bool:
        return _stat_value(_read(os.path.join(self.dir, "memory.events")), "oom_kill") > 0

    def destroy(self) -> None:
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


_mounted: list[str] | None = None


def _v1_mounted() -> list[str]:
    """The v1 hierarchies we use that are mounted here; looked up once per process."""
    global _mounted
    if _mounted is None:
        _mounted = [c for c in V1_CONTROLLERS if os.path.isdir(os.path.join(CGROUP_ROOT, c))]
    return _mounted


def _mkdir(path: str) -> bool:
    """Create a job's cgroup (and its parents the first time); False if it existed already."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path)
    except FileExistsError:
        return False
    return True


def _move_self(home: str, root: str) -> None:
    """Back to where we came from, or else to the hierarchy's root: the supervisor must never stay
    inside the job's cgroup, where its memory would count and the job's kills would reach it."""
    try:
        _write(os.path.join(home, "cgroup.procs"), str(os.getpid()))
    except OSError:
        _write(os.path.join(root, "cgroup.procs"), str(os.getpid()))


_own: tuple[int, dict[str, str]] = (0, {})


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per controller (v1, one entry per controller) or "" (v2).

    Read once per process: the supervisor returns to the same cgroups after every launch."""
    global _own
    if _own[0] != os.getpid():
        _own = (os.getpid(), _read_own_cgroups())
    return _own[1]


def _read_own_cgroups() -> dict[str, str]:
    out = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _hierarchy(controllers: str) -> str | None:
    """Where a /proc/<pid>/cgroup line's hierarchy is mounted: v2 (at the root, or at unified/ in
    hybrid mode), v1 named (name=systemd) or v1 controllers."""
    if controllers == "":
        for base in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified")):
            if os.path.exists(os.path.join(base, "cgroup.controllers")):
                return base
        return None
    name = controllers[5:] if controllers.startswith("name=") else controllers
    base = os.path.join(CGROUP_ROOT, name)
    return base if os.path.isdir(base) else None


class SystemdScope(NoLimits):
    """A transient systemd scope per job, `melon-job-<id>.scope`, with MemoryMax, CPUQuota, TasksMax.

    With a bus connection the supervisor asks systemd (remote/sdbus.py) for the scope around an
    idle process of its own, the scope's anchor, and once systemd has put the anchor there in
    every hierarchy that enforces a limit it forks the job inside, stepping into the scope
    around the fork as the cgroupfs backends do: the job never runs a moment outside its limits,
    and no gate process or setpriv is exec'd per job. The anchor stays until the job's end is
    classified, so systemd keeps the scope's folders (and its OOM count) until then. Without a
    bus, systemd-run (as root) creates the scope around its own process and execs setpriv,
    which becomes the user and execs the job; an anchor is moved in once the job is seen there.
    """

    name = "systemd"

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        super().__init__(key, cpus, memory, tasks_max, scope)
        self.cpus, self.memory, self.tasks_max = cpus, memory, tasks_max
        self.unit = f"melon-job-{key}"
        self.wraps = True  # systemd-run wraps the job's command, unless the scope is made around an anchor
        self.dirs: dict[str, str] = {}  # the scope's folder per hierarchy (its /proc/<pid>/cgroup name)
        self.procs: str | None = None  # cgroup.procs of the scope
        self.anchored: list[str] = []  # the hierarchies holding the anchor in the scope
        self.oom_file: tuple[str, str] | None = None  # (file, key) that counts OOM kills
        self.anchor = 0

    def around_anchor(self) -> int:
        """The pid to make the scope around; the job is then launched into the scope."""
        self.anchor = _anchors().take()
        self.wraps = False
        return self.anchor

    def properties(self) -> list[tuple[str, tuple[str, object]]]:
        """The scope's properties for StartTransientUnit, as `systemd-run --scope -p` sets them."""
        props: list[tuple[str, tuple[str, object]]] = [
            ("Slice", ("s", "melon.slice")), ("Description", ("s", f"melon job {self.key}")),
            ("CollectMode", ("s", "inactive-or-failed"))]
        if self.memory:
            props.append(("MemoryMax", ("t", self.memory)))
        if self.cpus:
            props.append(("CPUQuotaPerSecUSec", ("t", self.cpus * 1_000_000)))
        if self.tasks_max:
            props.append(("TasksMax", ("t", self.tasks_max)))
        return props

    def wrap(self, argv: list[str], uid: int, gid: int) -> list[str]:
        cmd = [SYSTEMD_RUN, "--scope", "--quiet", "--collect", f"--unit={self.unit}", "--slice=melon.slice"]
        if self.memory:
            cmd += ["-p", f"MemoryMax={self.memory}"]
        if self.cpus:
            cmd += ["-p", f"CPUQuota={self.cpus * 100}%"]
        if self.tasks_max:
            cmd += ["-p", f"TasksMax={self.tasks_max}"]
        return [*cmd, "--", *_become(uid, gid), *argv]

    def find_scope(self, pid: int) -> bool | None:
        """Whether `pid` (the anchor, or systemd-run's job) sits in the scope yet; once it does the
        scope's folders are remembered. True; None for not yet; False if the process is gone."""
        lines = _read(f"/proc/{pid}/cgroup").splitlines()
        if not lines:
            return False
        paths, mounted = {}, set()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            mounted.update(controllers.split(","))
            if f"/{self.unit}.scope" in path:
                paths[controllers] = path
        if not paths or not self._limited_everywhere(paths, mounted):
            return None
        self._remember(paths)
        if self.wraps:
            self._anchor()
        else:
            self.anchored = list(self.dirs)
        return True

    def _limited_everywhere(self, paths: dict[str, str], mounted: set[str]) -> bool:
        """On cgroup v1 systemd moves a pid into the scope one hierarchy at a time: the scope is
        ready only once it holds the pid in every hierarchy that enforces one of its limits (else
        the job could run, or be OOM-killed, before its memory cgroup is known)."""
        if mounted <= {""}:
            return True  # pure cgroup v2: one hierarchy, one move
        wanted = {"memory"} if self.memory else set()
        wanted |= {"cpu"} if self.cpus else set()
        wanted |= {"pids"} if self.tasks_max else set()
        placed = {name for controllers in paths for name in controllers.split(",")}
        return (wanted & mounted) <= placed

    def _remember(self, paths: dict[str, str]) -> None:
        for controllers, path in paths.items():
            base = _hierarchy(controllers)
            if base:
                self.dirs[controllers] = os.path.join(base, path.lstrip("/"))
        if "" in self.dirs and os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # pure cgroup v2
            d = self.dirs[""]
            self.procs, self.oom_file = os.path.join(d, "cgroup.procs"), (os.path.join(d, "memory.events"), "oom_kill")
            return
        for controllers, d in self.dirs.items():
            names = controllers.split(",")
            if "memory" in names:
                self.oom_file = (os.path.join(d, "memory.oom_control"), "oom_kill")
                self.procs = self.procs or os.path.join(d, "cgroup.procs")
            if "name=systemd" in names:
                self.procs = os.path.join(d, "cgroup.procs")

    def _anchor(self) -> None:
        """Keep one idle process of ours in systemd-run's scope, so that systemd does not remove
        the scope's folders, and with them the OOM count, the moment the job's last process dies."""
        try:
            self.anchor = _anchors().take()
            for controllers in sorted(self.dirs, key=_tracked_last):  # as it leaves (_Anchors.give)
                _write(os.path.join(self.dirs[controllers], "cgroup.procs"), str(self.anchor))
                self.anchored.append(controllers)
        except OSError:
            pass  # without an anchor the OOM check may come too late; the job itself is unaffected

    def enter(self) -> None:
        own = _own_cgroups()  # read before the first move: it is where leave() returns to
        self.home = {c: _home_dir(c, own) for c in self.dirs}
        for d in self.dirs.values():
            _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        for controllers in sorted(self.home, key=_tracked_last):
            root = _hierarchy(controllers) or CGROUP_ROOT
            _move_self(self.home[controllers] or root, root)

    def pids(self) -> list[int]:
        procs = [int(p) for p in _read(self.procs).split()] if self.procs else []
        return [p for p in procs if p != self.anchor]

    def oom_killed(self) -> bool:
        return bool(self.oom_file) and _stat_value(_read(self.oom_file[0]), self.oom_file[1]) > 0

    def destroy(self) -> None:
        """Last one out: the anchor goes home and systemd collects the scope. An anchor systemd
        was asked to place but was never seen placed may sit in part of the scope: it is killed."""
        if self.anchor:
            if self.anchored:
                _anchors().give(self.anchor, self.anchored)
            else:
                _anchors().discard(self.anchor)
            self.anchor = 0


def _home_dir(controllers: str, own: dict[str, str]) -> str | None:
    """The supervisor's own cgroup folder in a hierarchy (a /proc/<pid>/cgroup name)."""
    base, home = _hierarchy(controllers), own.get(controllers.split(",")[0])
    return None if base is None or home is None else os.path.join(base, home.lstrip("/"))


def _tracked_last(controllers: str) -> bool:
    return controllers in ("", "name=systemd")


class _Anchors:
    """The supervisor's idle `sleep` processes that hold systemd scopes open (SystemdScope._anchor),
    reused: once a job's end is classified its anchor goes back to the supervisor's own cgroups
    (the scope, empty then, is collected) and waits for the next job, instead of a `sleep` being
    started and killed per job. One that cannot be moved, or died, is killed and replaced."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.free: list[int] = []
        self.dead: list[int] = []  # killed, to be reaped without waiting

    def take(self) -> int:
        self._reap()
        while self.free:
            anchor = self.free.pop()
            try:
                if os.waitpid(anchor, os.WNOHANG) == (0, 0):
                    return anchor
            except ChildProcessError:
                pass
        return os.posix_spawn(SLEEP, ["sleep", "infinity"], {})

    def give(self, anchor: int, hierarchies: list[str]) -> None:
        own = _own_cgroups()
        try:
            # Out of the controllers' hierarchies first, systemd's own last: systemd sees the
            # scope empty only then, and removes its folders, all empty by that time.
            for controllers in sorted(hierarchies, key=_tracked_last):
                home = _home_dir(controllers, own)
                if home is None:
                    raise OSError(f"no home for the anchor in {controllers!r}")
                _write(os.path.join(home, "cgroup.procs"), str(anchor))
        except OSError:
            self.discard(anchor)
            return
        self.free.append(anchor)

    def release(self) -> None:
        for anchor in self.free:
            self.discard(anchor)
        self.free.clear()
        for anchor in self.dead:
            try:
                os.waitpid(anchor, 0)
            except ChildProcessError:
                pass
        self.dead.clear()

    def discard(self, anchor: int) -> None:
        """Killed, never reused: it could not be moved home, or its whereabouts are unknown."""
        try:
            os.kill(anchor, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.dead.append(anchor)

    def _reap(self) -> None:
        left = []
        for anchor in self.dead:
            try:
                if os.waitpid(anchor, os.WNOHANG) == (0, 0):
                    left.append(anchor)
            except ChildProcessError:
                pass
        self.dead = left


def _become(uid: int, gid: int) -> list[str]:
    """setpriv taking the user's ids and groups, inside the scope (nothing for root's jobs):
    `systemd-run --uid` would keep root's supplementary groups."""
    return [] if uid == 0 else [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]


SYSTEMD_RUN = next((p for p in ("/usr/bin/systemd-run", "/bin/systemd-run") if os.path.exists(p)), "systemd-run")
SLEEP = next((p for p in ("/usr/bin/sleep", "/bin/sleep") if os.path.exists(p)), "sleep")
SETPRIV = next((p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.path.exists(p)), "setpriv")
SYSTEMCTL = next((p for p in ("/usr/bin/systemctl", "/bin/systemctl") if os.path.exists(p)), "systemctl")
BACKENDS = {cls.name: cls for cls in (SystemdScope, CgroupV2, CgroupV1, NoLimits)}


def fence(backend: str, scope: str, key: str) -> None:
    """Kill what is left of a run whose supervisor died, found by its cgroup's name, and remove
    that cgroup: the backend, made for the run's key, names the job's own cgroup (its memory
    cgroup on v1, its cgroup on v2); with systemd, systemctl finds its scope."""
    if backend == "systemd":
        try:
            subprocess.run([SYSTEMCTL, "kill", "--signal=SIGKILL", f"melon-job-{key}.scope"],
                           capture_output=True, timeout=10)  # its anchor too: systemd then collects it
        except (OSError, subprocess.SubprocessError):
            pass
        return
    lim = BACKENDS.get(backend, NoLimits)(key, 0, 0, 0, scope)
    for _ in range(50):  # a fork racing the kill joins the cgroup: go round until it is empty
        if not lim.pids():
            break
        lim.signal_all(signal.SIGKILL)
        time.sleep(0.01)
    lim.destroy()


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
    out = {}
    if os.path.isdir("/run/systemd/system") and os.path.exists(SYSTEMD_RUN) and os.path.exists(SETPRIV):
        if os.geteuid() == 0:
            out["systemd"] = "systemd-run transient scopes (MemoryMax, CPUQuota, TasksMax)"
        elif not os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            out["none"] = ("the helper is not root, and limits through systemd --user delegation need cgroup v2; "
                           "this node mounts cgroup v1: log in as root, or boot the node with cgroup v2")
        else:
            out["none"] = ("the helper is not root; limits through systemd --user delegation are not supported "
                           "yet: log in as root")
    v2 = os.path.join(CGROUP_ROOT, "cgroup.controllers")
    mem = os.path.join(CGROUP_ROOT, "memory")
    if os.path.exists(v2):
        if "memory" in _read(v2).split() and _can_make_dir(CGROUP_ROOT):
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
