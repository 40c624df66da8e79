"""melond/engine/terminal.py's Terminals against a real store, through a stand-in for a node's
connection (it records requests; no helper runs): which helper relays a terminal."""
from __future__ import annotations

import asyncio
from pathlib import Path

from melond.engine.jobs import JobTable
from melond.engine.tasks import Tasks
from melond.engine.terminal import Terminals
from melond.errors import NodeUnavailable
from melond.nodes.links import Sessions
from melond.spec.states import State
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.protocol import Op

NOW = 1_700_000_000.0


class RecordingLink:
    """Stands in for melond.nodes.fleet.NodeSession: up, on its `helper_starts`-th helper, and
    answering every request."""

    def __init__(self) -> None:
        self.up = True
        self.helper_starts = 1
        self.requests: list[tuple[Op, dict]] = []

    async def request(self, op: Op, **fields: object) -> dict:
        self.requests.append((op, fields))
        return {}


def test_a_node_back_takes_up_only_terminals_an_earlier_helper_relayed(tmp_path: Path) -> None:
    """melond restarts; srun reattaches its session while the node's new connection is being
    reconciled; then the node is back. Its terminal is relayed by that connection's helper
    already: attached again, the holder would refuse and the session end with no exit code.
    A later helper (the node's connection lost and made again) takes it up."""
    async def body() -> None:
        store = Store(str(tmp_path / "melon.db"))
        try:
            job = Job(user="alice", uid=1000, name="sh", partition="p", state=State.RUNNING, node="n1", cpus=1,
                      memory=1 << 30, time_limit=600, script="", chdir="/tmp", output="o", submit_time=NOW,
                      interactive=True)
            [job.id] = await store.write(Store.op_insert_jobs, [job], "alice", NOW)
            step, _, _ = await store.write(Store.op_step_start, job.id, 0, "n1", "bash", 1, lambda running: (0, []),
                                           NOW)
            link = RecordingLink()
            sessions = Sessions()
            sessions["n1"] = link  # type: ignore[assignment]
            terminals = Terminals(JobTable([job]), sessions, store, Tasks())

            term = await terminals.reattach(job, step, (24, 80))
            await terminals.node_back("n1")
            assert [(op, f.get("attach")) for op, f in link.requests] == [(Op.LAUNCH, True)]
            assert not term.closed and term.out.empty()

            link.helper_starts = 2  # the connection went and came back: a new helper
            await terminals.node_back("n1")
            assert [(op, f.get("attach")) for op, f in link.requests] == [(Op.LAUNCH, True)] * 2
            await terminals.node_back("n1")  # and only once
            assert len(link.requests) == 2
            assert not term.closed

            async def lost_again(op: Op, **fields: object) -> dict:  # ...while a later helper takes it up
                term.helper = 4
                raise NodeUnavailable("node n1 went down: channel closed")
            link.helper_starts, link.request = 3, lost_again  # type: ignore[method-assign]
            await terminals.node_back("n1")
            assert not term.closed and term.helper == 4  # not closed for the helper that went
            term.watcher.cancel()
        finally:
            await store.close()
    asyncio.run(body())
