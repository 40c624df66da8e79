"""Each running job's GPU use, from its nodes' nvidia-smi, recorded with its end (mshow's GPU
utilization and peak GPU memory); and which detected GPUs others' processes use now.

Every `gpu_sample_interval` melond asks each up node where a running job holds GPUs, and each
whose GPUs it detected, for its GPUs' use now (Op.GPU_USAGE: one nvidia-smi per node, not per
job); the compute processes on detected GPUs say which others use now (never handed out). A
job's GPUs are its own (its cgroup opens no other), so what nvidia-smi reports for them is the
job's: its mean utilization over the samples and over its GPUs, and the most memory its GPUs
held together. A GPU is matched by its device file where it has one (nvidia-smi's index order
is the PCI bus's, which the inventory's need not be). Samples live in melond's memory: a job
that ends after a restart of melond counts those since.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from melond.engine.jobs import JobTable
from melond.engine.tasks import every
from melond.errors import MelonError
from melond.nodes.links import Sessions
from melond.nodes.state import NodeState
from melond.spec.cpulist import parse_cpuset
from melond.spec.gres import Device
from melon_remote.protocol import Op

log = logging.getLogger("melond.engine")
MIB = 1024 * 1024


@dataclass
class _Use:
    samples: int = 0
    util_sum: float = 0.0  # of each sample's mean over the job's GPUs
    memory_peak: int = 0  # MiB, the job's GPUs together


class GpuUsage:
    def __init__(self, jobs: JobTable, nodes: Mapping[str, NodeState], sessions: Sessions, interval: float) -> None:
        self.jobs, self.nodes, self.sessions, self.interval = jobs, nodes, sessions, interval
        self.use: dict[tuple[int, int], _Use] = {}  # (job, run): what its samples add up to
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_forever(self) -> None:
        await every(self.interval, self._stopping, self.sample)

    def _holders(self) -> dict[str, list[tuple[tuple[int, int], list[Device], str]]]:
        """For each node: the running jobs (job, run) holding GPUs there, those GPUs, and the jobs'
        users (whose connection reaches a personal node); and every node whose GPUs were
        detected, to learn which run others' processes."""
        out: dict[str, list[tuple[tuple[int, int], list[Device], str]]] = {
            name: [] for name, state in self.nodes.items() if state.detected and state.up and state.personal is None}
        for job in self.jobs.running():
            if not (job.gres_ids or job.parts):
                continue
            for part in job.placed:
                state = self.nodes.get(part.node)
                if state is None or not part.gres_ids:
                    continue
                gpus = [state.devices[i] for i in parse_cpuset(part.gres_ids)
                        if i < len(state.devices) and state.devices[i].name == "gpu"]
                if gpus:
                    out.setdefault(part.node, []).append(((job.id, job.run), gpus, job.user))
        return out

    async def sample(self) -> None:
        """One look at every node where running jobs hold GPUs, or whose GPUs were detected."""
        try:
            holders = self._holders()
            await asyncio.gather(*(self._sample(node, jobs) for node, jobs in holders.items()))
        except Exception:  # noqa: BLE001 - a bad answer must not end the sampling
            log.exception("GPU use sampling failed")

    async def _sample(self, node: str, jobs: list[tuple[tuple[int, int], list[Device], str]]) -> None:
        session = self.sessions.of(node, jobs[0][2] if jobs else None)
        if session is None or not session.up:
            return
        try:
            reply = await session.request(Op.GPU_USAGE, timeout=30.0)
        except MelonError as exc:
            log.warning("GPU use not read", extra={"node": node, "error": str(exc)})
            return
        answered = list(reply.get("gpus") or [])
        self.nodes[node].busy_now(answered)
        by_file = {g.get("file"): g for g in answered}
        by_index = {g["index"]: g for g in answered}
        for key, gpus, _ in jobs:  # a GPU is its device file where it has one (nvidia-smi's index may differ)
            seen = [g for g in (by_file.get(d.file) if d.file else by_index.get(d.index) for d in gpus) if g]
            if not seen:
                continue
            use = self.use.setdefault(key, _Use())
            use.samples += 1
            use.util_sum += sum(g["util"] for g in seen) / len(seen)
            use.memory_peak = max(use.memory_peak, sum(g["memory"] for g in seen))

    def take(self, job_id: int, run: int) -> dict:
        """A run's GPU figures for its end's record (none without a sample), forgotten here."""
        use = self.use.pop((job_id, run), None)
        if use is None or not use.samples:
            return {}
        return {"gpu_util": round(use.util_sum / use.samples, 1), "gpu_mem_peak": use.memory_peak * MIB}
