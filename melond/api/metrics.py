"""`GET /metrics`: melond's figures as Prometheus series, made when Prometheus asks.

Gauges are read off what melond holds in memory at scrape time: one walk over the active jobs
and the nodes, never the database, so a scrape costs the same whatever the history holds.
Counters and histograms are the running figures (melond.figures) that the engine, the store,
the node sessions and the API keep as things happen. The registry is this melond's own, never
prometheus_client's global one: this collector and the process's (CPU, memory, descriptors).
Every label takes few values (partitions, nodes, states, reasons, route templates); users are
labels only where the inventory says so (`[metrics] per_user`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from melond.api.models import HealthLeader
from melond.api.views import NODE_STATES, node_state
from melond.engine.engine import Engine
from melond.engine.leadership import Leadership
from melond.figures import RequestFigures, Timings
from melond.nodes.links import split
from melond.nodes.state import NodeState
from melond.spec.states import FINISHED, State
from melond.state.job import MIB, Job

QUEUED = (State.PENDING.value, State.RUNNING.value)
ENDED = tuple(sorted(s.value for s in FINISHED))
# (series, what it counts) of each job event in melond.figures.JobCounts, but `ended` (by state).
EVENT_SERIES = {
    "submitted": ("melon_jobs_submitted", "Jobs submitted (each array task counts) since melond started"),
    "started": ("melon_jobs_started", "Job runs started since melond started"),
    "requeued": ("melon_jobs_requeued", "Jobs sent back to the queue since melond started"),
    "extended": ("melon_job_extensions", "Time-limit extensions granted since melond started"),
}


class Collector:
    """prometheus_client's custom collector: every melon_* family, built at each scrape."""

    def __init__(self, engine: Engine, requests: RequestFigures) -> None:
        self.engine, self.requests = engine, requests

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        jobs = engine.jobs.listed()
        partitions = list(dict.fromkeys([*engine.inv.partition_names(), *(n.partition for n in engine.nodes.values())]))
        yield from job_families(jobs, partitions)
        yield from count_families(engine.counts.by_partition, partitions)
        yield from node_families(engine.nodes.values(), jobs, partitions)
        yield from session_families(engine)
        if engine.inv.metrics.per_user:
            yield from user_families(jobs, engine.counts.by_user)
        yield histogram("melon_scheduler_pass_seconds", "Duration of each scheduling pass that planned",
                        engine.loop.passes)
        yield from request_families(self.requests)
        store = engine.store
        yield histogram("melon_store_commit_seconds",
                        "Duration of each group commit to the database, BEGIN IMMEDIATE to COMMIT", store.commit_times)
        yield CounterMetricFamily("melon_store_commit_failures", "Group commits that failed whole",
                                  store.commit_failures)
        yield GaugeMetricFamily("melon_store_writes_waiting", "Writes queued for the next group commit",
                                store.waiting())
        if engine.leadership is not None:
            yield from leader_families(leader_info(engine.leadership))


class LeaderCollector:
    """A standing-by melond's only series: who leads."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership

    def collect(self) -> Iterator[Metric]:
        yield from leader_families(leader_info(self.leadership))


def leader_info(leadership: Leadership) -> HealthLeader:
    """This melond's part and the leader it knows of (its own lease when it leads)."""
    if leadership.leads:
        return HealthLeader(role="leader", epoch=leadership.epoch, since=leadership.since, holder=leadership.holder,
                            address=leadership.address)
    row = leadership.leader
    if row is None or not row.live:
        return HealthLeader(role="standby", epoch=row.epoch if row else 0)
    return HealthLeader(role="standby", epoch=row.epoch, since=row.since, holder=row.holder, address=row.address)


def leader_families(info: HealthLeader) -> Iterator[Metric]:
    yield GaugeMetricFamily("melon_leader", "Whether this melond leads (1) or stands by (0): two melonds share "
                            "a PostgreSQL database", 1 if info.role == "leader" else 0)
    yield GaugeMetricFamily("melon_leader_epoch", "The leading melond's epoch, one more at each change of leader",
                            info.epoch)
    if info.since is not None:
        yield GaugeMetricFamily("melon_leader_since_seconds", "When the leading melond began to lead (Unix time)",
                                info.since)


def registry(engine: Engine, requests: RequestFigures) -> CollectorRegistry:
    """melond's own registry: its collector and the process's."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(engine, requests))
    ProcessCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The scrape's body and Content-Type: OpenMetrics if the scraper asks for it, else Prometheus text."""
    encoder, content_type = choose_encoder(accept)
    return encoder(reg), content_type


def job_families(jobs: Iterable[Job], partitions: list[str]) -> Iterator[Metric]:
    """The queue now: jobs by partition and state, pending jobs by reason."""
    states: Counter[tuple[str, str]] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        states[(job.partition, job.state.value)] += 1
        if job.state is State.PENDING:
            reasons[(job.partition, job.reason or "None")] += 1  # not planned yet: squeue's (None)
    queued = GaugeMetricFamily("melon_jobs", "Jobs pending or running now", labels=["partition", "state"])
    for partition in dict.fromkeys([*partitions, *(p for p, _ in states)]):
        for state in QUEUED:
            queued.add_metric([partition, state], states[(partition, state)])
    yield queued
    pending = GaugeMetricFamily("melon_jobs_pending", "Pending jobs now, by the reason they wait",
                                labels=["partition", "reason"])
    for (partition, reason), n in sorted(reasons.items()):
        pending.add_metric([partition, reason], n)
    yield pending


def count_families(by_partition: Counter[tuple[str, str, str]], partitions: list[str]) -> Iterator[Metric]:
    """What happened to jobs since melond started, by partition (ends by state too); zero from the
    start for each known partition, so that rates need no first event."""
    known = list(dict.fromkeys([*partitions, *(p for _, p, _ in by_partition)]))
    for event, (name, doc) in EVENT_SERIES.items():
        family = CounterMetricFamily(name, doc, labels=["partition"])
        for partition in known:
            family.add_metric([partition], by_partition[(event, partition, "")])
        yield family
    ended = CounterMetricFamily("melon_jobs_ended", "Jobs ended since melond started, by final state",
                                labels=["partition", "state"])
    for partition in known:
        for state in ENDED:
            ended.add_metric([partition, state], by_partition[("ended", partition, state)])
    yield ended


def node_families(nodes: Iterable[NodeState], jobs: Iterable[Job], partitions: list[str]) -> Iterator[Metric]:
    """CPUs and memory of each node and each partition: in all, allocated to running jobs, and
    idle (free on a node that can take work: up and not drained); each node's state as sinfo says it."""
    running: dict[str, list[Job]] = {}
    for job in jobs:
        if job.state is State.RUNNING:
            for node in job.nodes:
                running.setdefault(node, []).append(job)
    node_labels = ["node", "partition"]
    per_node = {name: GaugeMetricFamily(f"melon_node_{name}", doc, labels=node_labels, unit=unit)
                for name, doc, unit in _CAPACITY}
    per_part = {name: GaugeMetricFamily(f"melon_partition_{name}", doc, labels=["partition"], unit=unit)
                for name, doc, unit in _CAPACITY}
    totals: dict[str, Counter[str]] = {p: Counter() for p in partitions}
    states = GaugeMetricFamily("melon_node_state", "1 for each node's state now (sinfo's words)",
                               labels=[*node_labels, "state"])
    counted: Counter[tuple[str, str]] = Counter()
    for node in nodes:
        on = running.get(node.name, [])
        parts = [p for j in on if (p := j.part_on(node.name))]
        cpus_used = sum(p.cpus for p in parts)
        mem_used = sum(p.memory for p in parts) * MIB
        open_ = node.available
        figures = {
            "cpus": node.cpus, "cpus_allocated": cpus_used,
            "cpus_idle": max(0, node.cpus - cpus_used) if open_ else 0,
            "memory_bytes": node.memory * MIB, "memory_allocated_bytes": mem_used,
            "memory_idle_bytes": max(0, node.memory * MIB - mem_used) if open_ else 0,
        }
        for name, value in figures.items():
            per_node[name].add_metric([node.name, node.partition], value)
        totals.setdefault(node.partition, Counter()).update(figures)
        state = node_state(node, on, cpus_used, mem_used // MIB)
        states.add_metric([node.name, node.partition, state], 1)
        counted[(node.partition, state)] += 1
    for partition, figures in totals.items():
        for name in per_part:
            per_part[name].add_metric([partition], figures[name])
    by_state = GaugeMetricFamily("melon_nodes", "Nodes in each state now", labels=["partition", "state"])
    for partition in totals:
        for state in NODE_STATES:
            by_state.add_metric([partition, state], counted[(partition, state)])
    yield from per_node.values()
    yield from per_part.values()
    yield states
    yield by_state


_CAPACITY = (
    ("cpus", "CPUs to schedule", ""),
    ("cpus_allocated", "CPUs allocated to running jobs", ""),
    ("cpus_idle", "CPUs free on nodes that can take work", ""),
    ("memory_bytes", "Memory to schedule", "bytes"),
    ("memory_allocated_bytes", "Memory allocated to running jobs", "bytes"),
    ("memory_idle_bytes", "Memory free on nodes that can take work", "bytes"),
)


def session_families(engine: Engine) -> Iterator[Metric]:
    """Each node's connections (a personal node has one per user, summed here): helpers started,
    connections lost, and the last ping's round trip (the slowest of its connections)."""
    starts: Counter[str] = Counter()
    losses: Counter[str] = Counter()
    trips: dict[str, float] = {}
    for link, session in engine.sessions.items():
        node, _ = split(link)
        starts[node] += session.helper_starts
        losses[node] += session.losses
        if session.round_trip is not None:
            trips[node] = max(trips.get(node, 0.0), session.round_trip)
    started = CounterMetricFamily("melon_node_helper_starts",
                                  "Node helpers started, each with its job supervisor (a connection made)",
                                  labels=["node"])
    lost = CounterMetricFamily("melon_node_disconnects", "Node connections lost after they were up",
                               labels=["node"])
    for node in engine.nodes:
        started.add_metric([node], starts[node])
        lost.add_metric([node], losses[node])
    trip = GaugeMetricFamily("melon_node_round_trip_seconds",
                             "The last ping's round trip to the node's helper (at connect, then when quiet)",
                             labels=["node"], unit="seconds")
    for node, seconds in sorted(trips.items()):
        trip.add_metric([node], seconds)
    yield started
    yield lost
    yield trip


def user_families(jobs: Iterable[Job], by_user: Counter[tuple[str, str]]) -> Iterator[Metric]:
    """Series by user, only where the inventory asks for them (`[metrics] per_user`)."""
    states: Counter[tuple[str, str]] = Counter()
    cpus: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    for job in jobs:
        states[(job.user, job.state.value)] += 1
        if job.state is State.RUNNING:
            cpus[job.user] += job.cpus
            memory[job.user] += job.memory
    users = sorted({u for u, _ in states} | {u for e, u in by_user if e == "submitted"})
    queued = GaugeMetricFamily("melon_user_jobs", "A user's jobs pending or running now", labels=["user", "state"])
    allocated = GaugeMetricFamily("melon_user_cpus_allocated", "CPUs allocated to a user's running jobs",
                                  labels=["user"])
    mem = GaugeMetricFamily("melon_user_memory_allocated_bytes", "Memory allocated to a user's running jobs",
                            labels=["user"], unit="bytes")
    submitted = CounterMetricFamily("melon_user_jobs_submitted", "A user's jobs submitted since melond started",
                                    labels=["user"])
    for user in users:
        for state in QUEUED:
            queued.add_metric([user, state], states[(user, state)])
        allocated.add_metric([user], cpus[user])
        mem.add_metric([user], memory[user])
        submitted.add_metric([user], by_user[("submitted", user)])
    yield from (queued, allocated, mem, submitted)


def request_families(requests: RequestFigures) -> Iterator[Metric]:
    """The API's requests by method and route template: durations, and counts by status."""
    durations = HistogramMetricFamily("melon_api_request_duration_seconds",
                                      "Time to answer an API request, by route template", labels=["method", "route"],
                                      unit="seconds")
    for (method, route), timings in sorted(requests.timings.items()):
        buckets, total = timings.cumulative()
        durations.add_metric([method, route], [(floatToGoString(b), n) for b, n in buckets], total)
    yield durations
    counts = CounterMetricFamily("melon_api_requests", "API requests answered, by route template and status",
                                 labels=["method", "route", "code"])
    for (method, route, code), n in sorted(requests.codes.items()):
        counts.add_metric([method, route, str(code)], n)
    yield counts
    yield GaugeMetricFamily("melon_api_requests_in_flight", "API requests being answered now", requests.in_flight)


def histogram(name: str, doc: str, timings: Timings) -> HistogramMetricFamily:
    buckets, total = timings.cumulative()
    return HistogramMetricFamily(name, doc, buckets=[(floatToGoString(b), n) for b, n in buckets], sum_value=total,
                                 unit="seconds")
