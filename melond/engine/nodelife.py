"""A node's life as melond sees it: up (reconciled), down, lost after node_timeout, drained.

When a node's helper connects (melond's start, or a reconnect), melond lists the node's spool
and reconciles it with the store, which wins (the table is `melond.nodes.reconcile`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping

from melond.config import Inventory
from melond.engine.dispatch import Dispatcher, lost
from melond.engine.ends import Ends
from melond.engine.jobs import JobTable
from melond.engine.tasks import Tasks
from melond.errors import Forbidden, MelonError, NotFound
from melond.nodes.links import Sessions, split
from melond.nodes.reconcile import Action, reconcile
from melond.nodes.state import NodeState
from melond.sched.policy import Caller
from melond.spec.states import State
from melond.state.store import Store
from melon_remote.protocol import KillCause, Op

log = logging.getLogger("melond.engine")


class NodeLife:
    def __init__(self, nodes: Mapping[str, NodeState], sessions: Sessions, jobs: JobTable,
                 store: Store, dispatcher: Dispatcher, ends: Ends, tasks: Tasks, kick: Callable[[], None],
                 inventory: Inventory) -> None:
        self.nodes, self.sessions, self.jobs, self.store = nodes, sessions, jobs, store
        self.dispatcher, self.ends, self.tasks, self.kick = dispatcher, ends, tasks, kick
        self.inv = inventory
        self.on_back: Callable[[str], None] = lambda node: None  # a node's connection is back, reconciled

    async def up(self, link: str, info: dict) -> None:
        """Reconcile the spool a node's connection holds with the store: the store wins, nothing
        runs twice. A personal node's connection holds its user's jobs only."""
        name, user = split(link)
        node = self.nodes[name]
        node.sized_by(info, user)
        session = self.sessions[link]
        listing = (await session.request(Op.LIST))["jobs"]
        mine = {j.id: j for j in self.jobs.running_on(name) if user is None or j.user == user}
        # What was asked of this run before a restart of melond is still asked: one read for all
        asked: dict[str, set[int]] = {"cancel_requested": set(), "preempt_requested": set(), "requeue_requested": set()}
        for jid, kind, _, _ in await self.store.read(lambda db, ids: db.events_this_run(ids, asked), list(mine)):
            asked[kind].add(jid)
        for jid in asked["preempt_requested"]:  # it still ends PREEMPTED
            self.jobs.end_as.setdefault(jid, State.PREEMPTED)
        cancels = self.jobs.cancelling | asked["cancel_requested"] | asked["preempt_requested"]
        self.jobs.requeueing |= asked["requeue_requested"]
        limits, kills, stale = [], [], []
        for step in reconcile([(j.id, j.run) for j in mine.values()], listing):
            job = mine.get(step.job_id)
            if step.action is Action.START:
                self.tasks.spawn(self.dispatcher.start(job, name))
            elif step.action is Action.RECORD_END:
                await self.ends.record(job.id, step.seen["result"], node=name, run=step.run, link=link)
            elif step.action is Action.LOST:
                await self.ends.record(job.id, lost("the node lost the job (rebooted?)"), node=name, run=step.run,
                                       link=link)
            elif step.action is Action.RESYNC:
                limits.append([job.id, step.run, job.time_limit])
                if job.id in cancels:
                    self.jobs.cancelling.add(job.id)
                if job.id in cancels or job.id in self.jobs.requeueing:  # asked; perhaps never sent (kill -9)
                    kills.append((job.id, step.run, self.jobs.kill_cause(job.id)))
            elif step.action is Action.FENCE:
                # The store does not run this here (it ended NODE_FAIL or was requeued while the
                # node was away). Its end, when it comes, belongs to no current run.
                log.warning("fencing a job run the store does not run here",
                            extra={"node": name, "job": step.job_id, "run": step.run})
                kills.append((step.job_id, step.run, KillCause.NODE_FAIL))
            else:
                stale.append([step.job_id, step.run])
        if limits:
            await session.request(Op.SET_LIMITS, limits=limits)  # one request, however many jobs run there
        for job_id, run, cause in kills:
            await session.request(Op.KILL, job_id=job_id, run=run, cause=str(cause))
        if stale:
            await session.request(Op.FORGET, runs=stale)
        if user is not None:
            node.links_up.add(user)
        node.up = True
        await self._save(node, "up", None, info)
        self.on_back(name)
        self.kick()

    async def down(self, link: str, reason: str) -> None:
        """Unreachable: nothing new starts there; after node_timeout its jobs are lost (below).
        A personal node's connection down stops only its user's jobs; the node is down once
        none of its connections is up."""
        name, user = split(link)
        node = self.nodes[name]
        if user is not None:
            was_up = user in node.links_up
            node.links_up.discard(user)
            if was_up:
                since = node.links_down_since[user] = time.monotonic()
                self.tasks.spawn(self._fail_after_timeout(name, since, user))
            if node.links_up:
                self.kick()
                return
        was_up = node.up
        node.up = False
        node.reason = reason if user is None else f"{user}'s connection: {reason}"
        await self._save(node, "down", node.reason, None)
        if was_up and user is None:
            node.down_since = time.monotonic()
            self.tasks.spawn(self._fail_after_timeout(name, node.down_since))

    async def _fail_after_timeout(self, name: str, since: float, user: str | None = None) -> None:
        """Still unreachable after the timeout: its running jobs (on a personal node, the jobs of
        the connection's user) end NODE_FAIL, or go back to the queue if submitted with
        --requeue. Should the node return, its reconcile kills whatever still runs there first
        (fencing)."""
        await asyncio.sleep(self.inv.node_timeout)
        node = self.nodes[name]
        if user is not None:
            if user in node.links_up or node.links_down_since.get(user) != since:
                return
        elif node.up or node.down_since != since:
            return
        what = f"node {name}" if user is None else f"{user}'s connection to node {name}"
        log.warning("node lost", extra={"node": name, "user": user, "timeout": self.inv.node_timeout})
        now = time.time()
        for job in self.jobs.running_on(name):
            if user is None or job.user == user:
                await self.ends.record(job.id, lost(f"{what} unreachable for {self.inv.node_timeout:g} s", now))
        if user is not None:
            self.kick()
            return
        if self.inv.return_to_service == 0 and node.drain is None:
            # Slurm's ReturnToService=0: a node that was lost waits for an operator once it is back.
            node.drain = (f"lost at {time.strftime('%Y-%m-%dT%H:%M:%S')} (unreachable for "
                          f"{self.inv.node_timeout:g} s); `mnode resume {name}` returns it")
            await self.store.write(Store.op_set_drain, name, node.drain)
        self.kick()

    # ---- operators' node actions ---------------------------------------------------------------

    def _operated(self, name: str, caller: Caller) -> NodeState:
        if not caller.operator:
            raise Forbidden("only operators (root and the inventory's operators) may drain, resume or down nodes")
        if name not in self.nodes:
            raise NotFound(f"no node {name!r}; nodes: {', '.join(sorted(self.nodes))}")
        return self.nodes[name]

    async def drain(self, name: str, caller: Caller, reason: str) -> dict:
        """Start nothing more on the node; its running jobs finish (DRAINING, then DRAINED)."""
        node = self._operated(name, caller)
        node.drain = reason
        await self.store.write(Store.op_set_drain, name, reason)
        log.info("node drained", extra={"node": name, "by": caller.user, "reason": reason})
        self.kick()
        return {"node": name, "drain": reason}

    async def resume(self, name: str, caller: Caller) -> dict:
        node = self._operated(name, caller)
        node.drain = None
        await self.store.write(Store.op_set_drain, name, None)
        log.info("node resumed", extra={"node": name, "by": caller.user})
        self.kick()
        return {"node": name, "drain": None}

    async def take_down(self, name: str, caller: Caller, reason: str) -> dict:
        """Drain the node and kill its running jobs now; they end NODE_FAIL (or are requeued)."""
        await self.drain(name, caller, reason)
        killed = []
        for job in self.jobs.running_on(name):
            self.jobs.end_as[job.id] = State.NODE_FAIL
            await self.store.write(Store.op_transition, job.id, "node_down", {}, caller.user,
                                   {"node": name, "reason": reason}, time.time())
            await self.dispatcher.kill(job)
            killed.append(job.id)
        return {"node": name, "drain": reason, "killed": killed}

    async def _save(self, node: NodeState, state: str, reason: str | None, info: dict | None) -> None:
        """Record the node's state for operators. Whether it is up is held in memory (the
        connection says so), so a record that cannot be written (a full disk) is a warning,
        not a reason to take the node down and bring it up again and again."""
        row = {"name": node.name, "state": state, "reason": reason, "cpus": node.cpus, "memory": node.memory,
               "backend": node.backend, "updated": time.time()}
        if info is not None:
            row["info"] = json.dumps(info)
        try:
            await self.store.write(Store.op_upsert_node, row)
        except MelonError as exc:
            log.warning("node state not recorded", extra={"node": node.name, "state": state, "error": str(exc)})
