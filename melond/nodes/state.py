"""What melond knows of a node: its capacity, whether it can take work, and why not."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NodeState:
    name: str
    partition: str
    cpus: int
    memory: int  # MiB
    up: bool = False
    cap_cpus: int | None = None  # the inventory's CPU count: replaces the probe's (may oversubscribe)
    cap_memory: int | None = None  # the inventory's cap on the probe's memory
    backend: str = "unknown"
    backend_reason: str = ""
    reason: str | None = None
    down_since: float | None = None  # monotonic time the node was lost, while it is down
    drain: str | None = None  # an operator's reason for starting nothing here (drain or down)
    only_user: str | None = None  # the helper's account when not root: only that account's jobs can run here

    @property
    def available(self) -> bool:
        return self.up and self.drain is None

    def sized_by(self, info: dict) -> None:
        """Take the probe's size; the inventory's count wins, as Slurm's CPUs=, its memory caps."""
        if info.get("cpus"):
            self.cpus = self.cap_cpus or info["cpus"]
            self.memory = min(info["memory"], self.cap_memory or info["memory"])
        self.only_user = info.get("user") if info.get("uid") not in (0, None) else None
        self.backend = info.get("backend", "none")
        self.backend_reason = info.get("backend_reason", "")
