"""The systemd backend: a transient scope per job, asked of systemd by the supervisor, around a
reused idle anchor process.

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import os
import signal

from . import cpuset
from .cgroup import (CGROUP_ROOT, NoLimits, hierarchy, mine, move_self, own_cgroups, read_file, stat_value,
                           v1_peak, v2_mounted, v2_usage, write_file)

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
        if oom_policy.supported:
            # systemd's default (stop) would SIGTERM the rest of the job at a kernel OOM kill and tear
            # the scope down, its OOM count with it, before the job's end is classified.
            props.append(("OOMPolicy", ("s", "continue")))
        if self.memory:
            props.append(("MemoryMax", ("t", self.memory)))
        if self.cpus:
            props.append(("CPUQuotaPerSecUSec", ("t", self.cpus * 1_000_000)))
        if self.tasks_max:
            props.append(("TasksMax", ("t", self.tasks_max)))
        if self.cpu_ids and v2_mounted():  # systemd sets cpusets on cgroup v2 only
            props.append(("AllowedCPUs", ("ay", _cpu_mask(self.cpu_ids))))
        if self.device_allow is not None and v2_mounted():  # on v1 the job has a devices cgroup of its own
            props.append(("DevicePolicy", ("s", "closed")))
            props.append(("DeviceAllow", ("a(ss)", [[path, "rw"] for path in self.device_allow])))
        return props

    def wrap(self, argv: list[str], uid: int, gid: int) -> list[str]:
        cmd = [SYSTEMD_RUN, "--scope", "--quiet", "--collect", f"--unit={self.unit}", "--slice=melon.slice"]
        if self.memory:
            cmd += ["-p", f"MemoryMax={self.memory}"]
        if self.cpus:
            cmd += ["-p", f"CPUQuota={self.cpus * 100}%"]
        if self.tasks_max:
            cmd += ["-p", f"TasksMax={self.tasks_max}"]
        if self.cpu_ids and v2_mounted():
            cmd += ["-p", f"AllowedCPUs={cpuset.text(self.cpu_ids)}"]
        if self.device_allow is not None and v2_mounted():
            cmd += ["-p", "DevicePolicy=closed", *(f"-pDeviceAllow={path} rw" for path in self.device_allow)]
        return [*cmd, "--", *_become(uid, gid), *argv]

    def find_scope(self, pid: int) -> bool | None:
        """Whether `pid` (the anchor, or systemd-run's job) sits in the scope yet; once it does the
        scope's folders are remembered. True; None for not yet; False if the process is gone."""
        lines = read_file(f"/proc/{pid}/cgroup").splitlines()
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
            base = hierarchy(controllers)
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
                write_file(os.path.join(self.dirs[controllers], "cgroup.procs"), str(self.anchor))
                self.anchored.append(controllers)
        except OSError:
            pass  # without an anchor the OOM check may come too late; the job itself is unaffected

    def enter(self) -> None:
        own = own_cgroups()  # read before the first move: it is where leave() returns to
        self.home = {c: _home_dir(c, own) for c in self.dirs}
        for d in self.dirs.values():
            write_file(os.path.join(d, "cgroup.procs"), str(os.getpid()))

    def leave(self) -> None:
        for controllers in sorted(self.home, key=_tracked_last):
            root = hierarchy(controllers) or CGROUP_ROOT
            move_self(self.home[controllers] or root, root)

    def pids(self) -> list[int]:
        procs = [int(p) for p in read_file(self.procs).split()] if self.procs else []
        return [p for p in procs if p != self.anchor]

    def oom_killed(self) -> bool:
        return bool(self.oom_file) and stat_value(read_file(self.oom_file[0]), self.oom_file[1]) > 0

    def usage(self) -> tuple[float | None, int | None]:
        """The scope's own cgroups, which systemd made for this job alone."""
        if "" in self.dirs and os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            return v2_usage(self.dirs[""])
        cpu = peak = None
        for controllers, d in self.dirs.items():
            names = controllers.split(",")
            if "memory" in names:
                peak = v1_peak(d)
            if "cpuacct" in names:
                ns = read_file(os.path.join(d, "cpuacct.usage")).strip()
                cpu = int(ns) / 1e9 if ns.isdigit() else None
        return cpu, peak

    def destroy(self) -> None:
        """Last one out: the anchor goes home and systemd collects the scope. An anchor systemd
        was asked to place but was never seen placed may sit in part of the scope: it is killed."""
        if self.anchor:
            if self.anchored:
                _anchors().give(self.anchor, self.anchored)
            else:
                _anchors().discard(self.anchor)
            self.anchor = 0


class _OOMPolicy:
    """Whether this node's systemd takes OOMPolicy= for scopes (an older one refuses the scope)."""

    supported = True


oom_policy = _OOMPolicy()


def _home_dir(controllers: str, own: dict[str, str]) -> str | None:
    """The supervisor's own cgroup folder in a hierarchy (a /proc/<pid>/cgroup name)."""
    base, home = hierarchy(controllers), own.get(controllers.split(",")[0])
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
        own = own_cgroups()
        try:
            # Out of the controllers' hierarchies first, systemd's own last: systemd sees the
            # scope empty only then, and removes its folders, all empty by that time.
            for controllers in sorted(hierarchies, key=_tracked_last):
                home = _home_dir(controllers, own)
                if home is None:
                    raise OSError(f"no home for the anchor in {controllers!r}")
                write_file(os.path.join(home, "cgroup.procs"), str(anchor))
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


def _anchors() -> _Anchors:
    return mine(_Anchors)


def discard_anchor(scope: SystemdScope) -> None:
    """A scope systemd refused: its anchor, never placed, is killed (the next ask takes another)."""
    if scope.anchor:
        _anchors().discard(scope.anchor)
        scope.anchor = 0


def _become(uid: int, gid: int) -> list[str]:
    """setpriv taking the user's ids and groups, inside the scope (nothing for root's jobs):
    `systemd-run --uid` would keep root's supplementary groups."""
    return [] if uid == 0 else [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]


SYSTEMD_RUN = next((p for p in ("/usr/bin/systemd-run", "/bin/systemd-run") if os.path.exists(p)), "systemd-run")
SLEEP = next((p for p in ("/usr/bin/sleep", "/bin/sleep") if os.path.exists(p)), "sleep")
SETPRIV = next((p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.path.exists(p)), "setpriv")
SYSTEMCTL = next((p for p in ("/usr/bin/systemctl", "/bin/systemctl") if os.path.exists(p)), "systemctl")


def _cpu_mask(ids: list[int]) -> list[int]:
    """AllowedCPUs as systemd's D-Bus property carries it: a bitmask, CPU n at bit n % 8 of byte n // 8."""
    mask = [0] * (max(ids) // 8 + 1)
    for c in ids:
        mask[c // 8] |= 1 << (c % 8)
    return mask
