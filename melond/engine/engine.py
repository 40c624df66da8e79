"""The job engine: the units that drive jobs through their states, wired to one another.

Each unit has one job (see their modules); the API and the daemon talk to them through the
engine's attributes: `ops` for users' requests, `nodes_life` for node events and operators'
node actions, `ends` for node events about jobs, `asks` for what jobs ask from their nodes, `loop`
for scheduling.
"""
from __future__ import annotations

from melond.config import Inventory
from melond.engine.asks import JobAsks
from melond.engine.terminal import Terminals
from melond.engine.dispatch import Dispatcher
from melond.engine.elastic import Elastic
from melond.engine.ends import Ends
from melond.engine.gpu_usage import GpuUsage
from melond.engine.jobs import JobTable
from melond.engine.leadership import Leadership
from melond.engine.notices import Notices
from melond.engine.notifier import Notifier
from melond.engine.nodelife import NodeLife
from melond.engine.operations import Operations
from melond.engine.preemption import Preemption
from melond.engine.priorities import Priorities
from melond.engine.requests import ExtensionRequests
from melond.engine.scheduling import SchedulingLoop
from melond.engine.tasks import Tasks
from melond.figures import JobCounts
from melond.nodes.links import Sessions
from melond.nodes.state import NodeState
from melond.sched.order import PendingOrder
from melond.sched.sharing import AccountRules, Budget, PartitionRules, QosRules, Sharing, parse
from melond.state.store import Store
from melon_remote.protocol import Event

STOP_TIMEOUT = 10.0  # seconds in-flight writes get at shutdown


class Engine:
    def __init__(self, store: Store, inventory: Inventory, nodes: dict[str, NodeState], *, kill_wait: float) -> None:
        self.store, self.inv, self.nodes = store, inventory, nodes
        self.leadership: Leadership | None = None  # PostgreSQL: this melond leads by a lease (engine/leadership.py)
        self.sessions = Sessions()
        self.tasks = Tasks()
        self.counts = JobCounts()  # submissions, starts, ends... since this melond started (`/metrics`)
        self.jobs = JobTable(store.active_jobs())
        self.order = PendingOrder({name: inventory.partition(name).max_time for name in inventory.partition_names()},
                                  sharing_of(inventory), self.jobs.stopped)
        self.dispatcher = Dispatcher(self.jobs, store, self.sessions, self.tasks, kill_wait=kill_wait,
                                     tasks_max=inventory.tasks_max, counts=self.counts,
                                     hosts=inventory.job_host_names(), nodes=nodes)
        self.loop = SchedulingLoop(self.jobs, nodes, self.order, store, self.dispatcher.dispatch, self.tasks)
        self.ends = Ends(self.jobs, store, self.sessions, self.order, self.tasks, self.loop.kick,
                         max_batch_requeue=inventory.max_batch_requeue, counts=self.counts)
        self.dispatcher.record_end = self.ends.record
        self.ends.end_parts = self.dispatcher.end_parts
        self.nodes_life = NodeLife(nodes, self.sessions, self.jobs, store, self.dispatcher, self.ends, self.tasks,
                                   self.loop.kick, inventory)
        self.ops = Operations(self.jobs, store, inventory, nodes, self.order, self.dispatcher, self.ends,
                              self.loop.kick, self.loop.snapshot, counts=self.counts)
        self.terminals = Terminals(self.jobs, self.sessions, store, self.tasks, inventory.job_host_names())
        self.asks = JobAsks(self.jobs, self.sessions, self.ops, self.tasks, store, inventory.job_host_names(), nodes,
                            self.terminals)
        self.nodes_life.on_back = lambda node: self.tasks.spawn(self.terminals.node_back(node))
        self.requests = ExtensionRequests(store, self.ops)
        self.elastic = Elastic(self.jobs, self.ops)
        self.notifier = Notifier(inventory.notify)
        self.notices = Notices(self.jobs, store, self.notifier)
        self.ends.on_finished = self._mail_end
        self.ends.on_requeued = lambda job: self.tasks.spawn(self.notices.requeued(job))
        self.gpu_usage = GpuUsage(self.jobs, nodes, self.sessions, inventory.gpu_sample_interval)
        self.priorities = Priorities(self.jobs, store, inventory, nodes, self.order, self.ops.sharing, self.loop.kick)
        self.ops.prioritize = self.priorities.assign
        self.preemption = Preemption(self.jobs, nodes, self.ops, self.ops.sharing, self.tasks, kill_wait, self.order,
                                     self.loop.node_views)
        self.loop.after_pass = self.preemption.after_pass
        self.ends.gpu_use = self.gpu_usage.take
        self.requests.on_decided = lambda request: self.tasks.spawn(self.notices.request_decided(request))

    def _mail_end(self, job_id: int) -> None:
        """A job's end is committed: its mail, if any is to be sent, goes in a task of its own."""
        mail = self.notices.ended(job_id)
        if mail is not None:
            self.tasks.spawn(mail)

    def on_event(self, link: str, msg: dict) -> None:
        """A node's unasked message, from one of its connections: a run's end, or a running job's ask."""
        if msg.get("event") == Event.TASK and self.terminals.on_task(link, msg):
            return
        if msg.get("event") in (Event.ASK, Event.TASK, Event.ASK_GONE, Event.ASK_INPUT):
            self.asks.on_event(link, msg)
        else:
            self.ends.on_event(link, msg)

    async def stop(self) -> None:
        """Stop scheduling and let in-flight writes finish; running jobs are left alone."""
        self.loop.stop()
        self.elastic.stop()
        self.gpu_usage.stop()
        self.priorities.stop()
        self.notices.stop()
        await self.tasks.drain(STOP_TIMEOUT)


def sharing_of(inv: Inventory) -> Sharing:
    """The inventory's accounts, users and QOS as the scheduler's rules."""
    def budget(t) -> Budget:
        return Budget(t.max_extensions_per_user, parse(t.max_extension_tres_hours_per_user), float(t.extension_window))
    accounts = [AccountRules(name, a.parent, tuple(a.users), a.shares, tuple(a.qos) if a.qos is not None else None,
                             a.default_qos, a.max_jobs, a.max_submit_jobs, parse(a.max_tres_per_job), a.max_wall,
                             parse(a.grp_tres), budget(a)) for name, a in inv.accounts.items()]
    qos = [QosRules(name, q.priority, q.max_wall, q.max_jobs_per_user, q.max_submit_jobs_per_user,
                    parse(q.max_tres_per_user), parse(q.max_tres_per_job), parse(q.grp_tres), budget(q),
                    tuple(q.preempt), q.preempt_mode, q.grace_time, q.usage_factor) for name, q in inv.qos.items()]
    partitions = [PartitionRules(name, p.max_jobs_per_user, parse(p.max_tres_per_user), p.max_nodes, p.min_nodes)
                  for name in inv.partition_names() if (p := inv.partition(name))]
    return Sharing(accounts, {user: u.default_account for user, u in inv.users.items() if u.default_account}, qos,
                   partitions)
