"""What every limit backend shares: the cgroup file system, a backend's interface (`NoLimits`,
which is also the backend of a node without cgroups), this process's own cgroups, and pools
of reused cgroups and anchors that a forked child does not inherit.

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import os
from typing import TypeVar

CGROUP_ROOT = "/sys/fs/cgroup"
TREE = "melon"  # the folder of Melon's cgroups in each hierarchy
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
V2_CONTROLLERS = ("cpu", "memory", "pids", "cpuset")  # what a v2 job cgroup is limited by, handed down to it
POOLED_V1 = ("cpu", "pids", "freezer")  # hierarchies whose job cgroups are reused (_Slots)
T = TypeVar("T")


def write_file(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def stat_value(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value or 0)
    return 0


class NoLimits:
    """Process-group only: no memory or CPU enforcement on this node."""

    name = "none"
    wraps = False  # True: the job's command is wrapped (systemd-run), not moved into a cgroup
    cpu_ids: list[int] | None = None  # the CPUs melond pinned the job to: its cpuset, where the backend sets one
    device_allow: list[str] | None = None  # a closed device policy's files, where the backend sets one (systemd)

    def __init__(self, key: str, cpus: int, memory: int, tasks_max: int, scope: str) -> None:
        self.key = key  # the job run's spool key: `17`, or `17.1` once requeued
        self.leader = 0
        # melon/<scope>/job-<id>: the scope (a hash of the spool path) keeps two melonds on one machine apart.
        self.folder = os.path.join(self.tree(), scope)
        self.rel = os.path.join(self.folder, f"job-{key}")

    @staticmethod
    def tree() -> str:
        """Where in each hierarchy this backend's cgroups live: root's under `melon`, an
        account's in the subtree root prepared for it (remote/subtree.py)."""
        return TREE

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

    def signal_once(self, sig: int) -> None:
        """Every process of the job exactly once, for a signal it may handle (`mcancel -s`,
        `--signal`): its cgroup's processes where it has one, else its process group. signal_all
        sends to both, which for a caught signal would run the handler twice."""
        me = os.getpid()
        pids = [p for p in self.pids() if p != me]
        if not pids and self.leader:
            try:
                os.killpg(self.leader, sig)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def oom_killed(self) -> bool:
        return False

    def usage(self) -> tuple[float | None, int | None]:
        """What the job's whole cgroup used, read at its end: (CPU seconds, peak bytes), each None
        where this backend cannot tell (then the job's rusage stands in)."""
        return None, None

    def destroy(self) -> None:
        """Remove the job's cgroup once empty (the supervisor empties it: Job.cleanup, which does
        not block its loop); one still busy is left behind. Nothing to remove here."""


_reused: dict[type, object] = {}  # this process's pools (cgroup slots, scope anchors), by class


def mine(cls: type[T]) -> T:
    """This process's pool of a kind: a forked child starts with none of its parent's."""
    pool = _reused.get(cls)
    if pool is None or pool.pid != os.getpid():
        pool = _reused[cls] = cls()
    return pool


def release_reused() -> None:
    """On the supervisor's way out: remove its free cgroup slots (and the scope's folders, once
    empty) and end its idle scope anchors."""
    for pool in _reused.values():
        if pool.pid == os.getpid():
            pool.release()


_mounted: list[str] | None = None  # the v1 hierarchies we use that are mounted here


def v2_usage(d: str) -> tuple[float | None, int | None]:
    """A v2 cgroup's CPU time (cpu.stat usage_usec) and peak memory (memory.peak, kernel 5.19+)."""
    stat = read_file(os.path.join(d, "cpu.stat"))
    cpu = stat_value(stat, "usage_usec") / 1e6 if "usage_usec" in stat else None
    peak = read_file(os.path.join(d, "memory.peak")).strip()
    return cpu, int(peak) if peak.isdigit() else None


def v1_peak(memory_dir: str) -> int | None:
    """A v1 memory cgroup's high-water mark (memory.max_usage_in_bytes): the job's own cgroup,
    so it started at zero."""
    peak = read_file(os.path.join(memory_dir, "memory.max_usage_in_bytes")).strip()
    return int(peak) if peak.isdigit() else None


def v1_mounted() -> list[str]:
    """The v1 hierarchies we use that are mounted here; looked up once per process."""
    global _mounted
    if _mounted is None:
        _mounted = [c for c in V1_CONTROLLERS if os.path.isdir(os.path.join(CGROUP_ROOT, c))]
    return _mounted


def v2_mounted() -> bool:
    """Pure cgroup v2 at CGROUP_ROOT."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def hand_down(folder: str) -> None:
    """Enable in a v2 folder's subtree_control the controllers jobs are limited by that it is
    offered and does not hand down yet (allowed only while it holds no process itself)."""
    offered = set(read_file(os.path.join(folder, "cgroup.controllers")).split())
    enabled = set(read_file(os.path.join(folder, "cgroup.subtree_control")).split())
    wanted = [c for c in V2_CONTROLLERS if c in offered and c not in enabled]
    needed = [c for c in wanted if c != "cpuset"]
    if needed:
        write_file(os.path.join(folder, "cgroup.subtree_control"), " ".join(f"+{c}" for c in needed))
    if "cpuset" in wanted:
        try:  # pinning the job's CPUs is a plus: a folder that will not hand cpuset down still limits the rest
            write_file(os.path.join(folder, "cgroup.subtree_control"), "+cpuset")
        except OSError:
            pass


def move_into(leaf: str) -> None:
    """Move this process into a cgroup leaf, made if missing (a supervisor entering its own)."""
    make_dir(leaf)
    write_file(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))


def make_dir(path: str) -> bool:
    """Create a job's cgroup (and its parents the first time); False if it existed already."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path)
    except FileExistsError:
        return False
    return True


def move_self(home: str, root: str) -> None:
    """Back to where we came from, or else to the hierarchy's root: the supervisor must never stay
    inside the job's cgroup, where its memory would count and the job's kills would reach it."""
    try:
        write_file(os.path.join(home, "cgroup.procs"), str(os.getpid()))
    except OSError:
        write_file(os.path.join(root, "cgroup.procs"), str(os.getpid()))


_own: tuple[int, dict[str, str]] = (0, {})


def own_cgroups() -> dict[str, str]:
    """This process's cgroup path per controller (v1, one entry per controller) or "" (v2).

    Read once per process: the supervisor returns to the same cgroups after every launch."""
    global _own
    if _own[0] != os.getpid():
        _own = (os.getpid(), read_own_cgroups())
    return _own[1]


def forget_own_cgroups() -> None:
    """This process has moved for good (into a delegated scope): read its cgroups again."""
    global _own
    _own = (0, {})


def own_v2() -> str:
    """This process's v2 cgroup path, read now ("" where it has none)."""
    return read_own_cgroups().get("", "")


def v1_home(controller: str) -> str:
    """This process's own cgroup in a v1 hierarchy (where a job's own cpuset or devices cgroup is
    made beside its backend's), to return to after a fork."""
    path = read_own_cgroups().get(controller)
    base = os.path.join(CGROUP_ROOT, controller)
    return os.path.join(base, path.lstrip("/")) if path is not None else base


def join(path: str) -> None:
    """Move this process into the cgroup at `path` (around a fork: the child starts there)."""
    write_file(os.path.join(path, "cgroup.procs"), str(os.getpid()))


def read_own_cgroups() -> dict[str, str]:
    out = {}
    for line in read_file("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def hierarchy(controllers: str) -> str | None:
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


def release_scope(folder: str) -> None:
    """Remove a spool's (empty) cgroup folders (`melon/<scope>`, in each hierarchy) when its
    helper or supervisor leaves; busy ones stay."""
    dirs = [os.path.join(CGROUP_ROOT, folder)]
    dirs += [os.path.join(CGROUP_ROOT, c, folder) for c in V1_CONTROLLERS]
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            pass
