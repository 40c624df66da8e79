"""The no-delay test of an extension: the plan with a running job's current deadline against the
plan with the new one."""
from __future__ import annotations

from melond.sched.nodelay import delays, largest_harmless_end
from melond.sched.plan import NodeView, PendingView, RunningView, Snapshot

NOW = 1_000_000.0


def _snapshot(*, short_end: float, long_end: float, waiting_cpus: int = 4) -> Snapshot:
    """A 4-CPU node: a 1-CPU job ending at short_end, a 3-CPU job at long_end, and a waiting job
    that needs the whole node for 100 s."""
    return Snapshot(
        nodes=(NodeView("n1", "p", 4, 1000),),
        running=(RunningView(1, "n1", 1, 100, short_end), RunningView(2, "n1", 3, 100, long_end)),
        pending=(PendingView(3, 0, NOW - 5, waiting_cpus, 100, 100, "p"),))


def test_an_extension_within_the_reserved_start_delays_no_one() -> None:
    snap = _snapshot(short_end=NOW + 20, long_end=NOW + 40)
    assert delays(snap, NOW, 1, NOW + 40) == []
    assert delays(snap, NOW, 1, NOW + 35) == []


def test_an_extension_past_the_reserved_start_delays_the_waiting_job_by_the_overlap() -> None:
    snap = _snapshot(short_end=NOW + 20, long_end=NOW + 40)
    (d,) = delays(snap, NOW, 1, NOW + 55)
    assert (d.job_id, d.before, d.after, d.by) == (3, NOW + 40, NOW + 55, 15)
    (d,) = delays(snap, NOW, 1, None)  # unlimited: no start in sight
    assert d.after is None and d.by == float("inf")


def test_the_largest_harmless_end_is_the_reserved_start() -> None:
    snap = _snapshot(short_end=NOW + 20, long_end=NOW + 40)
    assert largest_harmless_end(snap, NOW, 1, NOW + 20, NOW + 100) == NOW + 40
    assert largest_harmless_end(snap, NOW, 1, NOW + 20, NOW + 30) == NOW + 30  # all of it is harmless


def test_only_jobs_waiting_for_what_the_extension_holds_are_delayed() -> None:
    """A waiting 1-CPU job needs only job 1's CPU: extending job 2 delays no one; on a node its
    one running job fills, the waiting job is delayed by all of the extension."""
    snap = _snapshot(short_end=NOW + 20, long_end=NOW + 40, waiting_cpus=1)
    assert delays(snap, NOW, 2, NOW + 500) == []
    assert [d.by for d in delays(snap, NOW, 1, NOW + 25)] == [5]
    snap = Snapshot(nodes=(NodeView("n1", "p", 4, 1000),), running=(RunningView(1, "n1", 4, 100, NOW + 10),),
                    pending=(PendingView(3, 0, NOW - 5, 1, 100, 100, "p"),))
    (d,) = delays(snap, NOW, 1, NOW + 30)
    assert (d.before, d.after) == (NOW + 10, NOW + 30)


def test_an_owners_own_waiting_jobs_are_spared_when_asked() -> None:
    """No-delay protects other users: the waiting job's owner may push it back with their own
    extension, and the largest harmless end then reaches the wanted end."""
    snap = Snapshot(nodes=(NodeView("n1", "p", 4, 1000),),
                    running=(RunningView(1, "n1", 4, 100, NOW + 20),),
                    pending=(PendingView(3, 0, NOW - 5, 4, 100, 100, "p", user="ann"),))
    assert [d.job_id for d in delays(snap, NOW, 1, NOW + 60)] == [3]
    assert [d.job_id for d in delays(snap, NOW, 1, NOW + 60, spare="bob")] == [3]
    assert delays(snap, NOW, 1, NOW + 60, spare="ann") == []
    assert largest_harmless_end(snap, NOW, 1, NOW + 20, NOW + 60, spare="bob") == NOW + 20
    assert largest_harmless_end(snap, NOW, 1, NOW + 20, NOW + 60, spare="ann") == NOW + 60


def test_unset_extend_policy_is_no_delay_on_a_shared_melond_only() -> None:
    from melond.sched.policy import extend_policy
    assert extend_policy(None, shared=True) == "no-delay"
    assert extend_policy(None, shared=False) == "always"
    assert extend_policy("always", shared=True) == "always"
    assert extend_policy("no-delay", shared=False) == "no-delay"


def test_a_job_spanning_nodes_is_delayed_by_an_extension_on_any_of_them() -> None:
    """A 2-node job waits for n1 (busy until +40) and n2 (busy until +10): extending n2's job past
    +40 delays it, though n1 is the node it waits for now; a running job spanning both nodes holds
    them both, and extending it moves both."""
    from dataclasses import replace

    from melond.spec.shape import make_shape
    nodes = (NodeView("n1", "p", 4, 1000), NodeView("n2", "p", 4, 1000))
    wide = replace(PendingView(3, 0, NOW - 5, 1, 100, 100, "p"), shape=make_shape(nodes=(2, 2), cpus_per_task=4))
    snap = Snapshot(nodes, (RunningView(1, "n1", 4, 100, NOW + 40), RunningView(2, "n2", 4, 100, NOW + 10)), (wide,))
    assert delays(snap, NOW, 2, NOW + 40) == []
    (d,) = delays(snap, NOW, 2, NOW + 60)
    assert (d.job_id, d.before, d.after) == (3, NOW + 40, NOW + 60)
    assert largest_harmless_end(snap, NOW, 2, NOW + 10, NOW + 100) == NOW + 40
    spanning = Snapshot(nodes, (RunningView(1, "n1", 4, 100, NOW + 40), RunningView(1, "n2", 4, 100, NOW + 40)),
                        (PendingView(4, 0, NOW - 5, 4, 100, 100, "p", nodelist=frozenset({"n2"})),))
    (d,) = delays(spanning, NOW, 1, NOW + 50)
    assert (d.job_id, d.before, d.after) == (4, NOW + 40, NOW + 50)
