"""Node sessions' reconnect policy: exponential backoff with full jitter, capped, reset on success."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.nodes.fleet import Backoff


def test_backoff_doubles_within_jitter_and_caps() -> None:
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    b.reset()
    assert 0.25 <= b.next() <= 0.5


def test_jitter_spreads_a_fleet_reconnecting_together() -> None:
    firsts = {round(Backoff(rng=random.Random(seed)).next(), 3) for seed in range(50)}
    assert len(firsts) > 40, "fifty nodes must not retry in step"


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0.01, max_value=5), st.floats(min_value=1, max_value=60))
def test_backoff_never_exceeds_its_cap(attempts: int, base: float, cap: float) -> None:
    b = Backoff(base=base, cap=cap, rng=random.Random(attempts))
    for _ in range(attempts):
        b.next()
    assert 0 < b.next() <= max(cap, base) + 1e-9


@pytest.mark.parametrize("attempt", [0, 1, 5, 60, 1000, 5000])
def test_no_overflow_after_many_failures(attempt: int) -> None:
    b = Backoff(base=0.5, cap=30.0, attempt=attempt, rng=random.Random(0))
    assert 0 < b.next() <= 30.0


def test_a_simulated_jobs_script_says_how_long_it_runs_and_how_it_exits() -> None:
    from melond.nodes.simulated import behaviour
    assert behaviour("#!/bin/sh\nsleep 2.5\necho hi\nexit 3\n") == (2.5, 3)
    assert behaviour("#!/bin/sh\ntrue\n") == (0.0, 0)
    assert behaviour("exec sleep 7\nexit 1\nexit 4") == (7.0, 1)  # a shell ends at its first exit
    assert behaviour("sleep $N\n") == (0.0, 0)  # nothing a simulator can read: at once
