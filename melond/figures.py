"""Running figures, kept where things happen and read when someone asks (`/metrics`, `minfo --stats`).

Standard library only, and no I/O: the store's writer, the node sessions, the engine and the API
each keep the figures of what they do, and melond.api.metrics turns them into Prometheus series
only when a scrape comes, so an event costs an addition, never a formatted line.
"""
from __future__ import annotations

import bisect
import threading
from collections import Counter

# Seconds: from a commit or a plan of half a millisecond to one of ten seconds (Prometheus's `le`).
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_EVENTS = ("submitted", "started", "ended", "requeued", "extended")


class Timings:
    """Durations of one kind of event: how many, their sum, the last and the longest, and a count
    per bucket (a Prometheus histogram). The store's writer thread feeds one, hence the lock."""

    __slots__ = ("bounds", "count", "total", "last", "longest", "_buckets", "_lock")

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.count = 0
        self.total = 0.0
        self.last: float | None = None
        self.longest: float | None = None
        self._buckets = [0] * (len(bounds) + 1)  # the last one: above every bound
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.total += seconds
            self.last = seconds
            self.longest = seconds if self.longest is None else max(self.longest, seconds)
            self._buckets[bisect.bisect_left(self.bounds, seconds)] += 1

    def cumulative(self) -> tuple[list[tuple[float, int]], float]:
        """((bound, events that took at most that long), ..., (inf, all)) and their sum, read at once."""
        with self._lock:
            buckets, total = list(self._buckets), self.total
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), buckets):
            running += n
            out.append((bound, running))
        return out, total


class JobCounts:
    """What happened to jobs since melond started (JOB_EVENTS), by partition and end state, and
    by user: Prometheus's counters, whose rates are the submit, start and end rates."""

    def __init__(self) -> None:
        self.by_partition: Counter[tuple[str, str, str]] = Counter()  # (event, partition, state)
        self.by_user: Counter[tuple[str, str]] = Counter()  # (event, user)

    def add(self, event: str, partition: str, user: str, state: str = "", n: int = 1) -> None:
        self.by_partition[(event, partition, state)] += n
        self.by_user[(event, user)] += n

    def total(self, event: str, states: frozenset[str] | None = None) -> int:
        """How many of `event` (ended: only in `states`, when given) since the start."""
        return sum(n for (e, _, state), n in self.by_partition.items()
                   if e == event and (states is None or state in states))


class RequestFigures:
    """The API's requests by route template (`/api/v1/jobs/{job_id}`, never a raw path, so the
    series stay as few as the routes): their durations, and how many ended in each status."""

    def __init__(self) -> None:
        self.timings: dict[tuple[str, str], Timings] = {}  # (method, route)
        self.codes: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        timings = self.timings.get((method, route))
        if timings is None:
            timings = self.timings[(method, route)] = Timings()
        timings.observe(seconds)
        self.codes[(method, route, status)] += 1
