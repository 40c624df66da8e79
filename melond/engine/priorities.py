"""Pending jobs' priorities, recomputed every `[priority] calc_period` (Slurm's
PriorityCalcPeriod) from the cluster's decayed usage (melond.sched.priority), and given to each
new job at submission from the last fair-share figures.

Usage is read from the jobs themselves (the accounting window of the last ten half-lives and the
running ones), so nothing is kept that a restart could lose or count twice. An operator's
`scontrol update Priority=` is kept as set, and `--nice` lowers a job's. Those and `scontrol top`
are events of the job's history, read back at start, so a restart keeps them until the job starts.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping

from melond.config import Inventory
from melond.engine.jobs import JobTable
from melond.engine.tasks import every
from melond.errors import Conflict
from melond.nodes.state import NodeState
from melond.sched import priority as pr
from melond.sched.order import PendingOrder
from melond.sched.sharing import NORMAL, Sharing, tres_of
from melond.spec.gres import parse_list
from melond.spec.states import State
from melond.spec.tres import NAMES, billing, job_tres, parse_billing
from melond.state.job import Job
from melond.state.store import Store

WINDOW_HALF_LIVES = 10  # usage older than this many half-lives is under a thousandth: not read


class Priorities:
    def __init__(self, jobs: JobTable, store: Store, inv: Inventory, nodes: Mapping[str, NodeState],
                 order: PendingOrder, sharing: Sharing, kick: Callable[[], None]) -> None:
        self.jobs, self.store, self.nodes, self.order = jobs, store, nodes, order
        self.sharing, self.kick = sharing, kick
        p = inv.priority
        self.weights = pr.Weights(p.weight_age, p.weight_fairshare, p.weight_jobsize, p.weight_partition, p.weight_qos,
                                  p.favor_small)
        self.half_life, self.period, self.max_age = float(p.decay_half_life), p.calc_period, float(p.max_age)
        self.billing_weights = parse_billing(p.tres_billing_weights)
        self.fairshare: dict[str, float] = {}  # by association: "account/user", or "user" where no accounts
        self.usage: dict[tuple[str | None, str], float] = {}
        self.factors: dict[int, dict[str, float]] = {}  # each pending job's, for sprio
        self.fixed: dict[int, int] = {}  # operators' priorities (scontrol update Priority=), until they start
        self.tops: dict[int, float] = {}  # jobs their owners put first (scontrol top), when (epoch seconds)
        self.max_qos = max((q.priority for q in sharing.qos.values()), default=0)
        self.factored = {q.name: q.usage_factor for q in sharing.qos.values() if q.usage_factor != 1.0}
        self.cluster = (sum(n.cpus for n in nodes.values()), len(nodes))  # its CPUs and nodes, for job size
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_forever(self) -> None:
        """At start, then every period; a failed pass leaves the last priorities."""
        await self.load()
        await every(self.period, self._stopping, self.recompute, first=True)

    async def load(self) -> None:
        """Operators' priorities and `scontrol top`s of the pending jobs' current runs, from
        their histories (the latest of each kind wins)."""
        pending = [j.id for j in self.jobs.active.values() if j.state is State.PENDING]
        for jid, kind, at, data in await self.store.read(
                lambda db: db.events_this_run(pending, ("prioritized", "topped"))):
            if kind == "prioritized":
                self.fixed[jid] = int(data["priority"])
            else:
                self.tops[jid] = at

    async def recompute(self) -> None:
        """Usage from the jobs, fair-share from the tree, and every pending job's priority; the
        pending order is rebuilt where any changed."""
        now = time.time()
        start = now - WINDOW_HALF_LIVES * self.half_life if self.half_life else 0.0
        columns = ["user", "account", "cpus", "memory", "gres_total", "parts", "start_time", "end_time", "state"]
        if self.factored:  # a job's QOS is among its Slurm options: read only where it weighs
            columns.append("slurm_options")
        rows = await self.store.read(lambda db: db.accounting(start, now, columns=columns))
        self.usage = self._usage(rows, now)
        self.fairshare = pr.fair_tree(self._tree())
        self.cluster = (sum(n.cpus for n in self.nodes.values()), len(self.nodes))
        changed = False
        pending = [job for job in self.jobs.active.values() if job.state is State.PENDING]
        for jid in [j for j in self.fixed if not self._pending(j)]:
            del self.fixed[jid]
        for job in pending:
            changed |= self.assign(job, now)
        changed |= self._tops(pending)
        if changed:
            self.order.reorder()
            self.kick()

    def _pending(self, job_id: int) -> bool:
        job = self.jobs.active.get(job_id)
        return job is not None and job.state is State.PENDING

    async def set(self, job: Job, value: int, by: str) -> None:
        """An operator's priority for a job (scontrol update Priority=): kept until it starts."""
        if not await self.store.write(Store.op_transition, job.id, "prioritized", {}, by,
                                      {"run": job.run, "priority": value}, time.time()):
            raise Conflict(f"job {job.id} is no longer pending; only a pending job's priority can be set")
        self.fixed[job.id] = value
        job.priority = value
        self.order.touch(job.id)
        self.kick()

    async def top(self, job: Job, by: str) -> None:
        """scontrol top: the job first among its user's pending jobs of the same partition,
        account and QOS, by giving it the highest of their priorities and moving the others'
        down (ties broken downwards): no one else's job is passed."""
        now = time.time()
        if not await self.store.write(Store.op_transition, job.id, "topped", {}, by, {"run": job.run}, now):
            raise Conflict(f"job {job.id} is no longer pending; only a pending job can be put first")
        self.tops[job.id] = now
        if self._tops([j for j in self.jobs.active.values() if j.state is State.PENDING]):
            self.order.reorder()
            self.kick()

    def _tops(self, pending: list[Job]) -> bool:
        """Within each group that holds topped jobs, the group's priorities dealt out again: the
        latest topped first, then the rest in their own order (jobs an operator gave a priority
        keep theirs). Whether any changed."""
        for jid in [j for j in self.tops if not self._pending(j)]:
            del self.tops[jid]
        if not self.tops:
            return False
        groups: dict[tuple, list[Job]] = {}
        for job in pending:
            if job.id not in self.fixed:  # an operator's priority stays as set
                groups.setdefault(_group(job), []).append(job)
        changed = False
        for group in (groups[g] for g in {_group(self.jobs.active[j]): None for j in self.tops} if g in groups):
            values = sorted((j.priority for j in group), reverse=True)
            for i in range(1, len(values)):  # strictly apart, downwards: a tie would leave the order to age
                values[i] = max(min(values[i], values[i - 1] - 1), 1)
            ordered = sorted(group, key=lambda j: (j.id not in self.tops, -self.tops.get(j.id, 0), -j.priority,
                                                   j.submit_time, j.id))
            for job, value in zip(ordered, values):
                if job.priority != value:
                    job.priority, changed = value, True
        return changed

    def _usage(self, rows: list[dict], now: float) -> dict[tuple[str | None, str], float]:
        usage: dict[tuple[str | None, str], float] = {}
        for row in rows:
            if not row.get("start_time"):
                continue
            counts: dict[str, int] = {}
            for g in parse_list(row.get("gres_total")):
                counts[g.name] = counts.get(g.name, 0) + g.count
            tres = job_tres(row["cpus"] or 0, (row["memory"] or 0) // (1024 * 1024), 1, counts)
            rate = billing(tres, self.billing_weights)
            if self.factored:
                rate *= self.factored.get(_qos_of(row.get("slurm_options")), 1.0)
            key = (row["account"] if self.sharing.configured else None, row["user"])
            usage[key] = usage.get(key, 0.0) + pr.decayed(rate, row["start_time"], row["end_time"] or now, now,
                                                          self.half_life)
        return usage

    def _tree(self) -> pr.Assoc:
        """The association tree with the last usage: the accounts', else every user with a job."""
        accounts = {a.name: (a.parent, float(a.shares), a.users) for a in self.sharing.accounts.values()}
        return pr.tree({job.user for job in self.jobs.active.values()}, self.usage, accounts)

    def shares(self, now: float | None = None) -> list[dict]:
        """sshare's rows from the last recomputation, with what each association's running jobs
        hold times the time they have left (TRESRunMins): each job's TRES and billing, for the
        cluster's TRES (its GRES included, 0 where none runs). A job without a limit adds none."""
        now = time.time() if now is None else now
        held = []
        for job in self.jobs.active.values():
            if job.state is State.RUNNING and job.start_time and job.time_limit:
                tres = tres_of(job)
                tres["billing"] = int(billing(tres, self.billing_weights))
                held.append((self.association(job), tres, job.time_limit - (now - job.start_time)))
        gres = sorted({f"gres/{d.name}" for node in self.nodes.values() for d in node.devices})
        return pr.rows(self._tree(), self.fairshare, pr.run_seconds(held), (*NAMES, *gres))

    def pending(self) -> list[dict]:
        """sprio's rows: each pending job's priority and its weighted factors."""
        out = []
        for job in self.jobs.active.values():
            values = self.factors.get(job.id)
            if job.state is State.PENDING and values is not None:
                out.append({"job_id": job.id, "partition": job.partition, "user": job.user, "account": job.account,
                            "qos": job.qos, "priority": job.priority,
                            "nice": _nice(job), "factors": values, "weighted": pr.weighted(values, self.weights)})
        return sorted(out, key=lambda r: r["job_id"])

    def weights_view(self) -> dict[str, int]:
        w = self.weights
        return {"age": w.age, "fairshare": w.fairshare, "jobsize": w.jobsize, "partition": w.partition, "qos": w.qos}

    def association(self, job: Job) -> str:
        return f"{job.account}/{job.user}" if self.sharing.configured else job.user

    def assign(self, job: Job, now: float | None = None) -> bool:
        """A pending job's priority from its factors (an operator's stays); whether it changed."""
        if job.id in self.fixed:
            changed, job.priority = job.priority != self.fixed[job.id], self.fixed[job.id]
            return changed
        now = time.time() if now is None else now
        tres = tres_of(job)
        qos = self.sharing.qos.get(job.qos)
        values = pr.factors(submitted=job.submit_time, eligible=job.begin_time, now=now,
                            fairshare=self.fairshare.get(self.association(job), 1.0), cpus=tres.get("cpu", 1),
                            nodes=tres.get("node", 1), cluster_cpus=self.cluster[0], cluster_nodes=self.cluster[1],
                            qos_priority=qos.priority if qos else 0,
                            max_qos_priority=self.max_qos, weights=self.weights, max_age=self.max_age)
        self.factors[job.id] = values
        value = pr.priority(values, self.weights, _nice(job))
        if value == job.priority:
            return False
        job.priority = value
        return True


def _nice(job: Job) -> int:
    """--nice[=N]: N, 100 when bare (sbatch's default adjustment)."""
    text = job.slurm_options.get("nice")
    if text is None:
        return 0
    try:
        return int(text) if str(text).strip() else 100
    except ValueError:
        return 0


def _qos_of(options: str | None) -> str:
    """The QOS recorded among a stored job's Slurm options (JSON text)."""
    try:
        return (json.loads(options or "{}") or {}).get("qos") or NORMAL
    except (ValueError, AttributeError):
        return NORMAL


def _group(job: Job) -> tuple:
    """The jobs scontrol top orders among: one user's, in one partition, account and QOS."""
    return (job.user, job.partition, job.account, job.qos)
