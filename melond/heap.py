"""Garbage collection that does not stop melond for long.

Python's collection of its oldest generation scans every object the collector tracks: with
100,000 jobs in memory one takes about 300 ms, in which melond answers nobody and schedules
nothing. Almost all of those objects are long-lived (jobs, their views, the kept order), and
reference counting frees them when they go; only objects in reference cycles need the collector.

So what outlives a full collection is frozen (`gc.freeze`): moved where no later collection scans
it. A full collection then scans only what was kept since the last one, and each one freezes what
it kept. Freezing right after a full collection freezes no garbage (the collection has just
freed it all, and the younger generations are empty then). What it gives up: a frozen object
that later becomes part of an unreachable cycle is not freed until the next thaw. Once an hour the
frozen objects are thawed, so that the next full collection sees everything once (one pause of
the old length an hour at most).
"""
from __future__ import annotations

import gc
import time

THAW_EVERY = 3600.0  # seconds between thaws: one full collection over everything


class Collector:
    """Installs the freezing on Python's collector; one per process."""

    def __init__(self, thaw_every: float = THAW_EVERY) -> None:
        self.thaw_every = thaw_every
        self._thawed = time.monotonic()

    def install(self) -> None:
        """Freeze what is alive now (the state just loaded), and from now on what each full
        collection keeps. Without a collection first: at 100,000 jobs it would hold melond's
        start as long as the pause it saves (a cycle left from loading waits for the thaw)."""
        gc.freeze()
        gc.callbacks.append(self._collected)

    def uninstall(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        if time.monotonic() - self._thawed >= self.thaw_every:
            gc.unfreeze()  # the next full collection scans everything once
            self._thawed = time.monotonic()
        else:
            gc.freeze()  # (not gc.get_freeze_count(): it walks every frozen object)
