"""Preemption by QOS (Slurm's PreemptType=preempt/qos, PreemptMode=REQUEUE or CANCEL): after a
scheduling pass, the first waiting job (by priority) whose QOS may preempt others and that no
node has room for preempts the fewest running jobs of those QOS on one node
(melond.sched.preempt); a job spanning nodes, or wanting whole ones, preempts the fewest the
planner itself finds it room with, lowest priority first. Victims may span nodes: all of a
victim's nodes are freed. Each is requeued (PreemptMode=requeue: pending again, to run once room is
back; an interactive job cannot be, and is cancelled) or cancelled at once in its history, told
(its --signal, else SIGTERM), and killed `grace_time` later; the preemptor, planned first from
then on, starts on the room they leave.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from melond.engine.jobs import JobTable
from melond.engine.operations import Operations
from melond.engine.tasks import Tasks
from melond.errors import MelonError
from melond.nodes.state import NodeState
from melond.sched import plan as planner
from melond.sched import preempt
from melond.sched.order import PendingOrder, running_views
from melond.sched.policy import Caller
from melond.sched.sharing import NORMAL, Sharing, tres_of
from melond.spec.cpulist import parse_cpuset
from melond.spec.states import State
from melond.spec.timespec import SpecError, signal_spec
from melond.state.job import Job

log = logging.getLogger("melond.engine")
WAITING = ("Resources", "Priority")  # a job held by a limit or a dependency preempts no one
SETTLE = 10.0  # seconds past the victims' grace and kill wait a preemptor waits before preempting again
TRIES = 16  # waiting jobs looked at for victims in one pass, the highest first
MAX_VICTIMS = 256  # running jobs a spanning job's preemption looks at, the lowest priority first
MELOND = Caller(user="melond", uid=0, operator=True)


class Preemption:
    def __init__(self, jobs: JobTable, nodes: Mapping[str, NodeState], ops: Operations, sharing: Sharing,
                 tasks: Tasks, kill_wait: float, order: PendingOrder,
                 node_views: Callable[[], tuple[planner.NodeView, ...]]) -> None:
        self.jobs, self.nodes, self.ops, self.sharing, self.tasks = jobs, nodes, ops, sharing, tasks
        self.node_views = node_views  # the nodes as the scheduler sees them, for a spanning job's what-if plans
        self.order = order  # a preemptor is planned first (its preemptors set) until it starts
        self.kill_wait = kill_wait
        self.enabled = any(q.preempt for q in sharing.qos.values())
        self.victims: set[int] = set()  # being preempted
        self.waiting: dict[int, float] = {}  # preemptor -> until when it waits for its victims' room

    def after_pass(self, reasons: Mapping[int, str]) -> None:
        """Preempt for the first waiting job that needs it (one a pass: the next pass sees the result)."""
        if not self.enabled:
            return
        now = time.time()
        for jid in [j for j, until in self.waiting.items() if until < now or j not in reasons]:
            del self.waiting[jid]
            self.order.preemptors.discard(jid)
            self.order.touch(jid)
        candidates = [self.jobs.active[j] for j, r in reasons.items() if r in WAITING and j in self.jobs.active
                      and j not in self.waiting and self._qos(self.jobs.active[j]).preempt]
        if not candidates:
            return
        free, held = self._room()  # once a pass, whatever the number of candidates tried
        for job in sorted(candidates, key=lambda j: (-j.priority, j.submit_time, j.id))[:TRIES]:
            chosen = self._choose_whole(job, held, now) if job.shape.wide or job.exclusive else \
                self._choose(job, free, held)
            if chosen is not None:
                self._preempt(job, *chosen, now)
                return

    def _qos(self, job: Job):
        return self.sharing.qos.get(job.qos) or self.sharing.qos[NORMAL]

    def _room(self) -> tuple[dict[str, tuple[int, int, int]], list[tuple[Job, preempt.Victim]]]:
        """What is free on each available node (CPUs, MiB, GPUs), and what each running job holds
        on each of its nodes."""
        free = {n.name: [n.usable_cpus, n.memory, sum(1 for d in n.devices if d.name == "gpu")]
                for n in self.nodes.values() if n.available}
        held = []
        for other in self.jobs.active.values():
            if other.state is not State.RUNNING:
                continue
            for part in other.placed:
                if part.node in free:
                    gpus, memory = len(parse_cpuset(part.gres_ids)), part.memory or self.nodes[part.node].memory
                    room = free[part.node]
                    room[0], room[1], room[2] = room[0] - part.cpus, room[1] - memory, room[2] - gpus
                    held.append((other, preempt.Victim(other.id, part.node, part.cpus, memory, gpus, other.priority,
                                                       other.start_time or 0.0)))
        return {name: (c, m, g) for name, (c, m, g) in free.items()}, held

    def _choose(self, job: Job, free: Mapping[str, tuple[int, int, int]],
                held: list[tuple[Job, preempt.Victim]]) -> tuple[str, list[int]] | None:
        """Where `job` may go, and whom it would preempt there."""
        allowed = set(self._qos(job).preempt)
        nodes = {name: room for name, room in free.items()
                 if self.nodes[name].partition == job.partition and name not in job.exclude
                 and (not job.nodelist or name in job.nodelist)
                 and (self.nodes[name].admits is None or job.user in self.nodes[name].admits)}
        victims = [v for other, v in held if v.node in nodes and self._may_preempt(other, allowed)]
        need = (job.cpus, job.memory_mib or 0, tres_of(job).get("gres/gpu", 0))
        return preempt.choose(need, nodes, victims) if victims else None

    def _may_preempt(self, other: Job, allowed: set[str]) -> bool:
        return (other.id not in self.victims and other.id not in self.jobs.cancelling
                and other.id not in self.jobs.requeueing and other.qos in allowed)

    def _choose_whole(self, job: Job, held: list[tuple[Job, preempt.Victim]],
                      now: float) -> tuple[str, list[int]] | None:
        """For a job spanning nodes or wanting whole ones: the fewest victims (lowest priority,
        then latest started, first) with which a plan of it alone, on its partition's available
        nodes, starts it."""
        allowed = set(self._qos(job).preempt)
        views = tuple(v for v in self.node_views() if v.partition == job.partition and v.available)
        names = {v.name for v in views}
        others = {other.id: other for other, v in held if v.node in names and self._may_preempt(other, allowed)}
        if not others:
            return None
        order = [o.id for o in sorted(others.values(), key=lambda o: (o.priority, -(o.start_time or 0.0), o.id))]
        running = [r for other in self.jobs.active.values() if other.state is State.RUNNING
                   for r in running_views(other) if r.node in names]
        view = self.order.view(job, now)

        def fits(preempted: frozenset[int]) -> bool:
            snapshot = planner.Snapshot(views, tuple(r for r in running if r.job_id not in preempted), (view,))
            return bool(planner.plan(snapshot, now, max_reservations=0).starts)
        ids = preempt.fewest(order[:MAX_VICTIMS], fits)
        if ids is None:
            return None
        return ",".join(sorted({p.node for i in ids for p in others[i].placed})), ids

    def _preempt(self, job: Job, node: str, ids: list[int], now: float) -> None:
        grace = max((self._qos(self.jobs.active[i]).grace_time for i in ids if i in self.jobs.active), default=0)
        self.waiting[job.id] = now + grace + self.kill_wait + SETTLE
        self.order.preemptors.add(job.id)  # the room is its: planned before the requeued victims
        self.order.touch(job.id)
        log.info("preempting jobs for a waiting one", extra={"job": job.id, "node": node, "victims": ids})
        for victim in ids:
            self.victims.add(victim)
            self.tasks.spawn(self._end(self.jobs.active[victim], job.id))

    async def _end(self, victim: Job, preemptor: int) -> None:
        """Requeue or cancel it at once (its end, however it comes, is then that), warned first and
        killed `grace_time` later."""
        rules = self._qos(victim)
        grace, warning = float(rules.grace_time), _warning(victim) if rules.grace_time else None
        try:
            if rules.preempt_mode == "requeue" and not victim.interactive:
                await self.ops.requeue(victim.id, MELOND, via=f"preempted by job {preemptor}", grace=grace,
                                       warning=warning)
            else:
                await self.ops.cancel(victim.id, MELOND, grace=grace, warning=warning, preempted_by=preemptor)
        except MelonError as exc:
            log.warning("preemption failed", extra={"job": victim.id, "error": str(exc)})
        finally:
            self.victims.discard(victim.id)


def _warning(job: Job) -> str:
    """The signal a preempted job is warned with: its --signal's, else SIGTERM (Slurm's GraceTime)."""
    if job.signal:
        try:
            return str(signal_spec(job.signal)[0])
        except SpecError:
            pass
    return "TERM"
