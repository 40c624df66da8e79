"""A user's terminal on a job's first node (salloc's shell, srun --pty), through melond.

The client (cli/terminal.py) holds a WebSocket to melond (GET /jobs/{id}/terminal); melond
records a step for the session and asks the first node to start the command on a pty of its
own under the job's holder (Op.LAUNCH with `pty`), as the job's user, in its cgroup and CPUs.
What the terminal writes comes back as Event.TASK lines, what the user types and their window's
size go to the node as Op.FEED; the client's going hangs the terminal up, as a closed login
does. No node is reached but through melond's own connection to it. A restart of melond
leaves the terminal running on its node; the client reconnects and `reattach` takes it up again
with what it wrote meanwhile.

Beyond Slurm: the terminal itself is told, on a line of its own, when its job's end nears (at
the job's --signal time, else at LEAD before it, at most half its limit), and again after each
extension that brings a new end within reach.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from melond.engine.jobs import JobTable
from melond.engine.tasks import Tasks
from melond.errors import MelonError, NodeUnavailable
from melond.nodes.links import Sessions, split
from melond.nodes.fleet import NodeSession
from melond.spec.states import State
from melond.spec.timespec import SpecError, signal_spec
from melond.state import step as steps
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.marks import STEP_MARK
from melon_remote.protocol import Op

log = logging.getLogger("melond.engine")

LEAD = 600.0  # seconds before a job's end its terminal is told, unless --signal says when
POLL = 1.0  # how often an open terminal's job is looked at (its deadline moves with extensions)
Key = tuple[int, int, int]  # job id, run, step id


@dataclass
class Terminal:
    """One open session: what goes to the client (`out`), and how its task ended."""

    job: Job
    step: int
    out: asyncio.Queue = field(default_factory=asyncio.Queue)  # {"data"} | {"notice"} | {"error"} | {"exit"}
    code: int | None = None
    closed: bool = False
    watcher: asyncio.Task | None = None
    size: tuple[int, int] = (24, 80)  # the user's window, as last told

    @property
    def key(self) -> Key:
        return (self.job.id, self.job.run, self.step)


class Terminals:
    def __init__(self, jobs: JobTable, sessions: Sessions, store: Store, tasks: Tasks,
                 hosts: Mapping[str, str] | None = None) -> None:
        self.jobs, self.sessions, self.store, self.tasks = jobs, sessions, store, tasks
        self.hosts = dict(hosts or {})
        self.open: dict[Key, Terminal] = {}

    def _session(self, job: Job) -> NodeSession | None:
        """The connection to the job's first node that its terminals go through, while it is up."""
        session = self.sessions.of(job.node, job.user)
        return session if session is not None and session.up else None

    def attached(self, job_id: int) -> int:
        """How many terminals are attached to the job now (the UI says so)."""
        return sum(1 for key in self.open if key[0] == job_id)

    async def start(self, job: Job, argv: list[str], env: Mapping[str, str], cwd: str | None,
                    size: tuple[int, int], final: bool) -> Terminal:
        """Record the session's step and start its command on a pty on the job's first node;
        `final`: the command's end is the allocation's (salloc's shell, srun --pty)."""
        session = self._session(job)
        if session is None:
            raise NodeUnavailable(f"job {job.id}'s node {job.node} is not reachable now; try again")
        host = self.hosts.get(job.node or "", job.node or "")
        # --overlap, as Slurm's interactive step: the session holds no CPUs, so srun inside it may have them all
        step_id, _, _ = await self.store.write(Store.op_step_start, job.id, job.run, host,
                                               argv[0].rsplit("/", 1)[-1][:200], 1, lambda running: (0, []), time.time())
        term = Terminal(job, step_id, size=size)
        self.open[term.key] = term
        step_env = {**{str(k): str(v) for k, v in env.items()}, "SLURM_STEP_ID": str(step_id),
                    "SLURM_STEPID": str(step_id), "SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_NUM_NODES": "1",
                    "SLURM_STEP_NODELIST": host, "SLURM_PTY_WIN_ROW": str(size[0]), "SLURM_PTY_WIN_COL": str(size[1]),
                    STEP_MARK: f"{job.id}.{step_id}"}
        try:
            await session.request(Op.LAUNCH, job_id=job.id, run=job.run, step=step_id, argv=list(argv), cwd=cwd,
                                  env=step_env, tasks=[{"rank": 0, "localid": 0}], pty=list(size), final=final)
        except MelonError:
            self.open.pop(term.key, None)
            await self._record_end(term, None)
            raise
        term.watcher = asyncio.ensure_future(self._watch(term))
        return term

    async def reattach(self, job: Job, step_id: int, size: tuple[int, int]) -> Terminal:
        """A session's terminal taken up again by a new connection (the last went with a restart
        of melond): the step must still run in the job's current run; the node's holder sends
        what the terminal wrote meanwhile."""
        if not any(s.step_id == step_id and s.run == job.run and s.state == steps.RUNNING
                   for s in self.store.steps([job.id])):
            raise MelonError(f"job {job.id} has no running step {step_id} to reattach to")
        if (job.id, job.run, step_id) in self.open:
            raise MelonError(f"step {job.id}.{step_id}'s terminal is attached already")
        session = self._session(job)
        if session is None:  # melond has just started, say, and the node's connection is not up yet
            raise NodeUnavailable(f"job {job.id}'s node {job.node} is not reachable now; try again")
        term = Terminal(job, step_id, size=size)
        self.open[term.key] = term
        try:
            await session.request(Op.LAUNCH, job_id=job.id, run=job.run, step=step_id, attach=True, pty=list(size))
        except MelonError:
            self.open.pop(term.key, None)
            raise
        term.watcher = asyncio.ensure_future(self._watch(term))
        return term

    def on_task(self, link: str, msg: dict) -> bool:
        """A line from a terminal's task (True), or from some other step's (False: not ours)."""
        try:
            key = (int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"]))
            message = dict(msg["message"])
        except (KeyError, TypeError, ValueError):
            return False
        term = self.open.get(key)
        if term is None or split(link)[0] != term.job.node:
            return False
        if "data" in message:
            term.out.put_nowait({"data": message["data"]})
        elif "exit" in message:
            term.code = int(message["exit"])
        elif "error" in message:
            term.out.put_nowait({"error": str(message["error"])})
        if message.get("done"):
            self._close(term)
        return True

    async def node_back(self, node: str) -> None:
        """A node's connection came back while melond ran on (its helper restarted): each terminal
        open there is taken up again by the new helper, as a client reattaches after a restart of
        melond; one whose holder has none waiting ends, as its job did."""
        for term in [t for t in self.open.values() if t.job.node == node and not t.closed]:
            session = self._session(term.job)
            if session is None:
                continue
            try:
                await session.request(Op.LAUNCH, job_id=term.job.id, run=term.job.run, step=term.step, attach=True,
                                      pty=list(term.size))
            except MelonError as exc:
                term.out.put_nowait({"error": f"the terminal was lost with node {node}'s helper: {exc}"})
                self._close(term)

    async def feed(self, term: Terminal, message: Mapping[str, object]) -> None:
        """What the user typed (`stdin`, base64) or their window's new size (`resize`)."""
        if "resize" in message:
            term.size = tuple(message["resize"])  # type: ignore[assignment]
        line = {k: message[k] for k in ("stdin", "resize") if k in message}
        if not line or term.closed:
            return
        session = self._session(term.job)
        if session is None:
            return
        try:
            await session.request(Op.FEED, job_id=term.job.id, run=term.job.run, step=term.step, **line)
        except MelonError as exc:
            log.debug("terminal input not delivered", extra={"job": term.job.id, "error": str(exc)})

    async def hang_up(self, term: Terminal) -> None:
        """The client went: its terminal is hung up on the node (SIGHUP to what runs on it)."""
        if term.closed:
            return
        session = self._session(term.job)
        if session is not None:
            try:
                await session.request(Op.FEED, job_id=term.job.id, run=term.job.run, step=term.step, hangup=True)
            except MelonError:
                pass

    def _close(self, term: Terminal) -> None:
        if term.closed:
            return
        term.closed = True
        self.open.pop(term.key, None)
        if term.watcher is not None:
            term.watcher.cancel()
        term.out.put_nowait({"exit": term.code})
        self.tasks.spawn(self._record_end(term, term.code))

    async def _record_end(self, term: Terminal, code: int | None) -> None:
        """The session's step ends as its task did: by a signal (a negative code), with its exit
        code, or failed where that is unknown (None)."""
        signal = -code if code is not None and code < 0 else None
        exit_code = 0 if signal else 1 if code is None else code
        await self.store.write(Store.op_step_end, term.job.id, term.job.run, term.step,
                               {"state": steps.end_state(exit_code, signal), "exit_code": exit_code,
                                "exit_signal": signal}, time.time())

    async def _watch(self, term: Terminal) -> None:
        """Tell the terminal when its job's end nears, once per end (an extension moves it)."""
        told: float | None = None
        while not term.closed:
            job = self.jobs.get(term.job.id)
            if job is None or job.state is not State.RUNNING or job.run != term.job.run:
                return
            deadline = job.deadline
            if deadline is not None and deadline != told:
                left = deadline - time.time()
                if 0 < left <= lead(job):
                    told = deadline
                    term.out.put_nowait({"notice": warning(job.id, left)})
            await asyncio.sleep(POLL)


def lead(job: Job) -> float:
    """How long before its end a terminal's job says so: its --signal time, else LEAD, at most
    half of its limit (a 20-minute session hears at 10 minutes left)."""
    if job.signal:
        try:
            return float(signal_spec(job.signal)[1])
        except SpecError:
            pass
    return min(LEAD, job.time_limit / 2) if job.time_limit else LEAD


def warning(job_id: int, left: float) -> str:
    minutes = max(1, round(left / 60))
    when = f"{minutes} min" if left >= 90 else f"{max(1, round(left))} s"
    return f"melon: job {job_id} ends in {when}; `mextend -t +1:00:00` for more"


