"""melond's garbage collection (melond/heap.py): what outlives a full collection is frozen, so
the next full collection scans only what is new; garbage is never frozen; a thaw lets a full
collection see everything again."""
from __future__ import annotations

import gc
import weakref

import pytest

from melond.heap import Collector


class Node:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector():
    installed = []

    def make(thaw_every: float = 3600.0) -> Collector:
        c = Collector(thaw_every)
        c.install()
        installed.append(c)
        return c
    yield make
    for c in installed:
        c.uninstall()


def _scanned() -> set[int]:
    """The objects a collection may scan (the frozen ones are in none of the generations)."""
    return {id(o) for o in gc.get_objects()}


def test_what_is_alive_is_frozen_and_a_full_collection_scans_only_what_is_new(collector) -> None:
    kept = [Node() for _ in range(1000)]
    assert id(kept[0]) in _scanned()
    collector()
    frozen = gc.get_freeze_count()
    assert frozen > len(kept)
    new = [Node() for _ in range(500)]
    scanned = _scanned()
    assert id(kept[0]) not in scanned and id(new[0]) in scanned
    gc.collect()  # a full collection: what it kept is frozen too
    assert id(new[0]) not in _scanned() and gc.get_freeze_count() >= frozen + len(new)


def test_garbage_made_since_is_freed_by_the_next_full_collection_not_frozen(collector) -> None:
    collector()
    dead = Node()
    gone = weakref.ref(dead)
    del dead  # a cycle no one reaches: garbage only the collector frees
    gc.collect()
    assert gone() is None


def test_a_thaw_lets_the_next_full_collection_free_frozen_cycles(collector) -> None:
    collector(thaw_every=0.0)
    stuck = Node()
    gone = weakref.ref(stuck)
    gc.collect()  # frozen would be the usual fate: past thaw_every, it thaws instead
    assert gc.get_freeze_count() == 0
    del stuck
    gc.collect()
    assert gone() is None
