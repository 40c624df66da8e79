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
the job's --signal time, else END_LEAD before it, at most half its limit: melond.spec.notices),
and again after each extension that brings a new end within reach.
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
from melond.spec.notices import end_lead, end_notice
from melond.state import step as steps
from melond.state.job import Job
from melond.state.store import Store
from melon_remote.marks import STEP_MARK
from melon_remote.protocol import Op

log = logging.getLogger("melond.engine")

POLL = 1.0  # how often an open terminal's job is looked at (its deadline moves with extensions)
Key = tuple[int, int, int]  # job id, run, step id


@dataclass
class Terminal:
    """One open session: what goes to the client (`out`), and how its task ended."""

    job: Job
    step: int
    node: str  # the job's node it runs on (its first, unless `srun --pty -w` named another)
    out: asyncio.Queue = field(default_factory=asyncio.Queue)  # {"data"} | {"notice"} | {"error"} | {"exit"}
    code: int | None = None
    closed: bool = False
    watcher: asyncio.Task | None = None
    size: tuple[int, int] = (24, 80)  # the user's window, as last told
    watchers: list[asyncio.Queue] = field(default_factory=list)  # sattach's: each hears what `out` hears
    helper: int = 0  # which helper of its node's connection relays it (NodeSession.helper_starts)

    @property
    def key(self) -> Key:
        return (self.job.id, self.job.run, self.step)

    def say(self, message: dict) -> None:
        self.out.put_nowait(message)
        for queue in self.watchers:
            queue.put_nowait(message)


class Terminals:
    def __init__(self, jobs: JobTable, sessions: Sessions, store: Store, tasks: Tasks,
                 hosts: Mapping[str, str] | None = None) -> None:
        self.jobs, self.sessions, self.store, self.tasks = jobs, sessions, store, tasks
        self.hosts = dict(hosts or {})
        self.open: dict[Key, Terminal] = {}

    def _session(self, job: Job, node: str | None = None) -> NodeSession | None:
        """The connection to the job's node (its first by default) that a terminal goes through,
        while it is up."""
        session = self.sessions.of(node or job.node, job.user)
        return session if session is not None and session.up else None

    def node_of(self, job: Job, host: str | None) -> str:
        """The job's node a terminal opens on: the one named (as the job's tasks name it:
        SLURMD_NODENAME), else the first."""
        if not host:
            return job.node or ""
        by_host = {self.hosts.get(n, n): n for n in job.nodes}
        node = host if host in job.nodes else by_host.get(host)
        if node is None:
            names = ", ".join(self.hosts.get(n, n) for n in job.nodes)
            raise MelonError(f"job {job.id} runs on {names}, not on {host}; name one of its nodes (srun -w)")
        return node

    def attached(self, job_id: int) -> int:
        """How many terminals are attached to the job now, sattach's included (the UI says so)."""
        return sum(1 + len(term.watchers) for key, term in self.open.items() if key[0] == job_id)

    def watch(self, job: Job, step_id: int) -> tuple[Terminal, asyncio.Queue]:
        """sattach: what a running session's terminal writes from now on, to one more reader, who
        may type into it too; its going hangs nothing up."""
        term = self.open.get((job.id, job.run, step_id))
        if term is None or term.closed:
            raise MelonError(f"step {job.id}.{step_id} has no terminal melond relays now: sattach attaches to a "
                             f"running session's (salloc's shell, srun --pty); see `squeue -s -j {job.id}`")
        queue: asyncio.Queue = asyncio.Queue()
        term.watchers.append(queue)
        return term, queue

    @staticmethod
    def unwatch(term: Terminal, queue: asyncio.Queue) -> None:
        if queue in term.watchers:
            term.watchers.remove(queue)

    async def start(self, job: Job, argv: list[str], env: Mapping[str, str], cwd: str | None,
                    size: tuple[int, int], final: bool, host: str | None = None) -> Terminal:
        """Record the session's step and start its command on a pty on the job's first node (or
        `host`, another of its nodes); `final`: the command's end is the allocation's (salloc's
        shell, srun --pty outside it)."""
        node = self.node_of(job, host)
        session = self._session(job, node)
        if session is None:
            raise NodeUnavailable(f"job {job.id}'s node {node} is not reachable now; try again")
        host = self.hosts.get(node, node)
        # --overlap, as Slurm's interactive step: the session holds no CPUs, so srun inside it may have them all
        step_id, _, _ = await self.store.write(Store.op_step_start, job.id, job.run, host,
                                               argv[0].rsplit("/", 1)[-1][:200], 1, lambda running: (0, []), time.time())
        term = Terminal(job, step_id, node, size=size, helper=session.helper_starts)
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
        node = self.node_of(job, next((s.node for s in self.store.steps([job.id])
                                       if s.step_id == step_id and s.run == job.run), None))
        session = self._session(job, node)
        if session is None:  # melond has just started, say, and the node's connection is not up yet
            raise NodeUnavailable(f"job {job.id}'s node {node} is not reachable now; try again")
        term = Terminal(job, step_id, node, size=size, helper=session.helper_starts)
        self.open[term.key] = term
        try:
            await session.request(Op.LAUNCH, job_id=job.id, run=job.run, step=step_id, attach=True, pty=list(size))
        except MelonError:
            self.open.pop(term.key, None)
            raise
        term.watcher = asyncio.ensure_future(self._watch(term))
        return term

    async def release(self, job: Job, code: int) -> None:
        """The allocation's shell ran on the login node (no use_interactive_step) and ended: the
        job ends with its exit code, as a shell on the first node ends it (its holder exits)."""
        session = self._session(job)
        if session is None:
            raise NodeUnavailable(f"job {job.id}'s node {job.node} is not reachable now; scancel {job.id} ends it")
        await session.request(Op.LAUNCH, job_id=job.id, run=job.run, step=0, release=code)

    def on_task(self, link: str, msg: dict) -> bool:
        """A line from a terminal's task (True), or from some other step's (False: not ours)."""
        try:
            key = (int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"]))
            message = dict(msg["message"])
        except (KeyError, TypeError, ValueError):
            return False
        term = self.open.get(key)
        if term is None or split(link)[0] != term.node:
            return False
        if "data" in message:
            term.say({"data": message["data"]})
        elif "exit" in message:
            term.code = int(message["exit"])
        elif "error" in message:
            term.say({"error": str(message["error"])})
        if message.get("done"):
            self._close(term)
        return True

    async def node_back(self, node: str) -> None:
        """A node's connection came back while melond ran on (its helper restarted): each terminal
        open there is taken up again by the new helper, as a client reattaches after a restart of
        melond; one whose holder has none waiting ends, as its job did. A terminal attached through
        the new connection already (a client reattached while the node was being reconciled) is
        left as it is: its holder would refuse a second attach, and the session would end."""
        for term in [t for t in self.open.values() if t.node == node and not t.closed]:
            session = self._session(term.job, node)
            if session is None or session.helper_starts == term.helper:
                continue
            term.helper = tried = session.helper_starts
            try:
                await session.request(Op.LAUNCH, job_id=term.job.id, run=term.job.run, step=term.step, attach=True,
                                      pty=list(term.size))
            except MelonError as exc:
                if term.helper != tried:  # the connection went again, and a later helper took it up
                    continue
                term.say({"error": f"the terminal was lost with node {node}'s helper: {exc}"})
                self._close(term)

    async def feed(self, term: Terminal, message: Mapping[str, object]) -> None:
        """What the user typed (`stdin`, base64) or their window's new size (`resize`)."""
        if "resize" in message:
            term.size = tuple(message["resize"])  # type: ignore[assignment]
        line = {k: message[k] for k in ("stdin", "resize") if k in message}
        if not line or term.closed:
            return
        session = self._session(term.job, term.node)
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
        session = self._session(term.job, term.node)
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
        term.say({"exit": term.code})
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
                if 0 < left <= end_lead(job.signal, job.time_limit):
                    told = deadline
                    term.say({"notice": end_notice(job.id, left)})
            await asyncio.sleep(POLL)

