"""What melond knows of a node: its capacity, whether it can take work, and why not."""
from __future__ import annotations

from dataclasses import dataclass, field

from melond.spec.gres import Device


@dataclass
class NodeState:
    name: str
    partition: str
    cpus: int
    memory: int  # MiB
    up: bool = False
    cap_cpus: int | None = None  # the inventory's CPU count: replaces the probe's (may oversubscribe)
    cap_memory: int | None = None  # the inventory's cap on the probe's memory
    max_cpus: int | None = None  # its partition's MaxCPUsPerNode: the most of `cpus` its jobs use together
    backend: str = "unknown"
    backend_reason: str = ""
    reason: str | None = None
    down_since: float | None = None  # monotonic time the node was lost, while it is down
    drain: str | None = None  # an operator's reason for starting nothing here (drain or down)
    only_user: str | None = None  # the helper's account when not root: only that account's jobs can run here
    personal: dict[str, str] | None = None  # a personal node: each user's jobs run as their own account (user: account)
    links_up: set[str] = field(default_factory=set)  # a personal node: the users whose own connection is up
    links_down_since: dict[str, float] = field(default_factory=dict)  # ... and when each one was lost (monotonic)
    link_limits: dict[str, tuple[str, str]] = field(default_factory=dict)  # ... and each one's (backend, why)
    cpu_order: tuple[int, ...] = ()  # the CPU ids jobs are pinned to, in locality order; () = not pinned
    cpu_socket: dict[int, int] = field(default_factory=dict)  # each CPU's socket
    pinning: str = "not reached yet"  # how jobs' CPUs are pinned here, or why they are not (minfo)
    devices: tuple[Device, ...] = ()  # its generic resources (GPUs, licenses): the inventory's, GPUs detected after
    device_isolation: str | None = None  # how jobs' devices are enforced there; "": they are not; None: not reached
    gpu_busy: dict[int, list[int]] = field(default_factory=dict)  # device position: pids on it at the last probe
    listed: tuple[Device, ...] = ()  # the inventory's own devices (set from `devices` at creation)

    def __post_init__(self) -> None:
        self.listed = self.devices

    def found_gpus(self, gpus: list[dict]) -> None:
        """Take the GPUs the node's driver reports (remote/gpus.py) where the inventory lists none
        (the inventory wins), and which of them run processes now."""
        if any(d.name == "gpu" for d in self.listed):
            return
        self.devices = self.listed + tuple(Device("gpu", g.get("type") or None, g["index"], g.get("file"))
                                           for g in gpus)
        self.busy_now(gpus)

    @property
    def detected(self) -> bool:
        """Are its GPUs the driver's (not the inventory's)? Then their use tells which are busy."""
        return any(d.name == "gpu" for d in self.devices) and not any(d.name == "gpu" for d in self.listed)

    def busy_now(self, gpus: list[dict]) -> None:
        """Which detected GPUs run processes now (Op.GPU_USAGE's answer, by nvidia-smi index)."""
        if self.detected:
            self.gpu_busy = {len(self.listed) + g["index"]: list(g["busy"]) for g in gpus if g.get("busy")}

    @property
    def isolates_devices(self) -> bool:
        """Does a job here see only its own devices (so CUDA numbers them from 0)?"""
        return bool(self.device_isolation) and any(d.file for d in self.devices)

    @property
    def isolation(self) -> str:
        """What `minfo` says of device isolation here: only a node with device files has any."""
        if not any(d.file for d in self.devices):
            return ""
        if self.device_isolation is None:
            return "not reached yet"
        return (f"each job opens only its own devices ({self.device_isolation})" if self.device_isolation else
                "NOT isolated: a job can open every device of the node, as neither a v1 devices cgroup nor "
                "systemd keeps it to its own (cgroup v2 without systemd needs a BPF program, which Melon does not "
                "load; use the systemd backend there)")

    @property
    def usable_cpus(self) -> int:
        """The CPUs its partition's jobs may hold together: all, or MaxCPUsPerNode of them. A node
        is in one partition only, so the cap is the node's for scheduling (sinfo shows all)."""
        return self.cpus if self.max_cpus is None else min(self.cpus, self.max_cpus)

    @property
    def available(self) -> bool:
        return self.up and self.drain is None

    @property
    def runs_for(self) -> frozenset[str] | None:
        """Whose jobs can start here now (None: anyone's): the plan's view."""
        if self.personal is not None:
            return frozenset(self.links_up)
        return None if self.only_user is None else frozenset({self.only_user})

    @property
    def admits(self) -> frozenset[str] | None:
        """Whose jobs may ever run here (None: anyone's): submission's view."""
        return frozenset(self.personal) if self.personal is not None else self.runs_for

    def sized_by(self, info: dict, user: str | None = None) -> None:
        """Take the probe's size; the inventory's count wins, as Slurm's CPUs=, its memory caps.
        On a personal node each user's connection probes its own account's limits (`user`): the
        node's backend is theirs where all agree, else `mixed`, and the reason names each."""
        if info.get("cpus"):
            self.cpus = self.cap_cpus or info["cpus"]
            self.memory = min(info["memory"], self.cap_memory or info["memory"])
            self._cpu_ids(info.get("cpu_ids"), info.get("cpu_sockets"), bool(info.get("cpuset")))
        backend, why = info.get("backend", "none"), info.get("backend_reason", "")
        self.device_isolation = info.get("devices") or ""
        self.found_gpus(info.get("gpus") or [])
        if user is None:
            self.only_user = info.get("user") if info.get("uid") not in (0, None) else None
            self.backend, self.backend_reason = backend, why
            return
        self.link_limits[user] = (backend, why)
        kinds = {b for b, _ in self.link_limits.values()}
        self.backend = kinds.pop() if len(kinds) == 1 else "mixed"
        self.backend_reason = "; ".join(f"{u}: {b} ({w})" for u, (b, w) in sorted(self.link_limits.items()))

    def _cpu_ids(self, ids: list[int] | None, sockets: list[int] | None, cpuset: bool) -> None:
        """Pin jobs to the first `cpus` of the node's CPUs (the inventory may give fewer than it
        has), unless the inventory gives more than it has: then jobs share them, unpinned."""
        if not ids:
            self.cpu_order, self.pinning = (), "not pinned: the node's helper names no CPUs"
        elif self.cpus > len(ids):
            self.cpu_order = ()
            self.pinning = (f"not pinned: the inventory gives it {self.cpus} CPUs and it has {len(ids)}, "
                            f"so jobs share them")
        else:
            self.cpu_order = tuple(ids[:self.cpus])
            self.cpu_socket = dict(zip(ids, sockets or [0] * len(ids)))
            self.pinning = ("each job's own CPUs, in a cgroup cpuset (the job cannot widen them)" if cpuset else
                            "each job's own CPUs, as its affinity (nproc and os.sched_getaffinity show them; this "
                            "node gives no cpuset, so a job may widen it with its own sched_setaffinity)")
