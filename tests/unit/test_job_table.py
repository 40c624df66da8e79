"""The active jobs in memory (melond.engine.jobs.JobTable): which jobs a node's reconnect sees."""
from __future__ import annotations

from melond.engine.jobs import JobTable
from melond.spec.states import State
from melond.state.job import Job


def _job(jid: int, state: State = State.PENDING, node: str | None = None, parts: list | None = None) -> Job:
    return Job(id=jid, user="u", uid=1000, name="j", partition="p", state=state, node=node, parts=parts or [])


def test_a_nodes_running_jobs_are_those_started_there_and_still_running() -> None:
    spanning = _job(3, State.RUNNING, "a", [["a", 1, 1, 0, None, None], ["b", 1, 1, 0, None, None]])
    table = JobTable([_job(2, State.RUNNING, "b"), _job(1, State.RUNNING, "a"), spanning, _job(4)])
    assert [j.id for j in table.running_on("a")] == [1, 3]
    assert [j.id for j in table.running_on("b")] == [2, 3]
    assert table.running_on("c") == []

    later = table.active[4]  # started by a pass on c
    later.state, later.node = State.RUNNING, "c"
    table.started(later)
    assert [j.id for j in table.running_on("c")] == [4]

    table.finished(1)  # ended
    table.active[2].state = State.PENDING  # requeued: pending again
    assert [j.id for j in table.running_on("a")] == [3]
    assert [j.id for j in table.running_on("b")] == [3]

    again = table.active[2]  # ...and started again elsewhere
    again.state, again.node = State.RUNNING, "c"
    table.started(again)
    assert [j.id for j in table.running_on("c")] == [2, 4]
    assert [j.id for j in table.running_on("b")] == [3]
    assert [j.id for j in table.running()] == [2, 3, 4]


def test_the_jobs_that_stop_running_are_told_to_the_scheduler_once_each() -> None:
    """`stopped` (read by the pending order, which frees what they held): an end, a requeue, a
    start undone, a pending job a pass started while its cancel committed; never a pending job."""
    table = JobTable([_job(i, State.RUNNING, "a") for i in (1, 2, 3, 4)] + [_job(5), _job(6), _job(7)])
    table.ending_begins(table.active[1])  # its end is being committed
    table.finished(1)
    table.requeued(table.active[2])
    table.unstarted(table.active[3])  # its start could not be recorded: pending again
    assert table.active[3].state is State.PENDING
    table.unstarted(table.active[5])  # not running: nothing to undo
    started = table.active[6]
    started.state = State.RUNNING  # a pass started it as its cancel committed
    table.ended_now([started, table.active[7]], State.CANCELLED, 10.0)
    assert started.state is State.CANCELLED and started.end_time == 10.0
    table.finished(5, 6, 7)
    assert table.stopped == [1, 2, 3, 6]
