"""What users ask of their jobs: submit, cancel, extend, hold and release, see.

Every change is one store transaction plus one job event, committed before the caller is told.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping

from melond.config import Inventory, Partition
from melond.engine.dispatch import Dispatcher
from melond.engine.ends import Ends
from melond.engine.jobs import JobTable
from melond.engine.slices import slices
from melond.errors import BadRequest, Conflict, Forbidden, MelonError, NotFound
from melond.figures import JobCounts
from melond.nodes.state import NodeState
from melond.sched import admission, nodelay, policy, waiting
from melond.sched.launch import job_file
from melond.sched.plan import Reason, Snapshot
from melond.sched.order import Kept, PendingOrder
from melond.sched.policy import Caller
from melond.sched.sharing import (PolicyError, Sharing, budgets, check_budget, explain, extension_hours,
                                  spent, tres_of)
from melond.spec import jobrel
from melond.spec.gres import gpu_count, node_gres, parse_list
from melond.spec.jobids import JobRef
from melond.spec.states import FINISHED, State
from melond.state.job import Job
from melond.spec.timespec import format_clock, format_duration, format_limit, format_size_mib
from melond.state.store import Store
from melon_remote.protocol import STEP_TARGET, SignalTo

EACH_AT_ONCE = 500  # running jobs of a bulk cancel acted on concurrently, at most
QUEUED = frozenset({Reason.PRIORITY.value, Reason.RESOURCES.value})  # waiting its turn: no limit, hold or dependency


class _Refused(Exception):
    """An extension refused, with whom it would have delayed (for a dry run's answer)."""

    def __init__(self, error: MelonError, delays: list[dict]) -> None:
        super().__init__(str(error))
        self.error, self.delays = error, delays


Refusal = tuple[int, str, MelonError]  # a job's id, its label, and why it was not acted on


def label(job: Job) -> str:
    """A job as squeue names it: `13`, or `10_3` for an array's task."""
    return f"{job.array_job_id}_{job.array_task_id}" if job.array_task_id is not None else str(job.id)


class Operations:
    def __init__(self, jobs: JobTable, store: Store, inventory: Inventory, nodes: Mapping[str, NodeState],
                 order: PendingOrder, dispatcher: Dispatcher, ends: Ends, kick: Callable[..., None],
                 snapshot: Callable[[], tuple[Snapshot, float]], *, counts: JobCounts) -> None:
        self.jobs, self.store, self.inv, self.nodes, self.order = jobs, store, inventory, nodes, order
        self.dispatcher, self.ends, self.kick, self.snapshot = dispatcher, ends, kick, snapshot
        self.counts = counts
        self.sharing = order.sharing if order.sharing is not None else Sharing()
        self.prioritize: Callable[[Job], object] | None = None  # a new job's priority (engine/priorities.py)
        self._extending = asyncio.Lock()
        self.shared = os.geteuid() == 0  # root's melond serves every user of its nodes (routes.py)

    def caller(self, user: str, uid: int) -> Caller:
        return Caller(user=user, uid=uid, operator=uid == 0 or user in self.inv.operators)

    async def submit(self, req: dict, caller: Caller, submit_as: admission.Submitter) -> tuple[list[int], list[str]]:
        """Admit the submission, store every task, return the ids (after the commit)."""
        partition = req.get("partition") or self.inv.default_partition()
        if partition not in self.inv.partition_names():
            raise BadRequest(f"unknown partition {partition!r}; partitions: {', '.join(self.inv.partition_names())}")
        sizes = [admission.NodeSize(n.name, n.partition, n.cpus, n.memory, n.admits,
                                     node_gres(n.devices)) for n in self.nodes.values()]
        for key in ("nodelist", "exclude"):  # `-w $(hostname)` names the embedded node too
            if req.get(key):
                req = {**req, key: [self.inv.node_named(name) for name in req[key]]}
        now = time.time()
        jobs, warnings = admission.admit(req, submit_as, partition, self.inv.partition(partition), sizes, now)
        self._charge(jobs)
        if req.get("dependency"):
            self._check_dependency(req["dependency"])
        if req.get("mail_type") and not (self.inv.notify and (self.inv.notify.command or self.inv.notify.webhook)):
            warnings.append("this melond has no notifier ([notify] in its inventory): --mail-type is recorded, "
                            "but no notice will be sent")
        ids = await self.store.write(Store.op_insert_jobs, jobs, caller.user, now)
        self.counts.add("submitted", partition, submit_as.user, n=len(ids))
        for jid, job in zip(ids, jobs):
            job.id = jid
            if job.array_task_id is not None:
                job.array_job_id = ids[0]
            self.jobs.active[jid] = job
            if self.prioritize is not None:
                self.prioritize(job)
            self.order.touch(jid)
        self.kick(new_jobs_only=True)
        return ids, warnings

    def _charge(self, jobs: list[Job]) -> None:
        """Each job's account and QOS (melond.sched.sharing), and the limits a submission is
        refused by, in Slurm's words: `Job violates accounting/QOS policy`."""
        first = jobs[0]
        try:
            account = self.sharing.account_for(first.user, first.account)
            qos = self.sharing.qos_for(account, first.slurm_options.get("qos"))
            in_qos = in_account = 0
            if self.sharing.caps_submissions(qos, account):  # a walk of the queue only where it is capped
                for job in self.jobs.active.values():
                    if job.user == first.user:
                        in_qos += job.qos == qos
                        in_account += account is not None and job.account == account
            first.account = account
            self.sharing.check_submit(first, qos, account, in_qos, in_account, adding=len(jobs))
        except PolicyError as exc:
            if exc.reason in ("InvalidAccount", "InvalidQOS"):
                raise BadRequest(str(exc).partition(": ")[2]) from None
            raise BadRequest(f"Job violates accounting/QOS policy (job submit limit, user's size and/or time "
                             f"limits): {exc}") from None
        for job in jobs:
            job.account = account
            job.slurm_options = {**job.slurm_options, "qos": qos}

    def _check_budgets(self, job: Job, limit: int, old: int) -> dict[str, float] | None:
        """The owner's extension budgets (their QOS', their account's): the extension's cost in
        TRES-hours, or a refusal that says what was spent and when it frees up."""
        qos = job.qos
        found = budgets(self.sharing, job.account, qos)
        if not found or (limit and old and limit <= old):  # a shortening costs nothing
            return None
        if not limit or not old:
            raise Forbidden(f"job {job.id}: an extension to or from an unlimited time is beyond any extension "
                            f"budget; ask an operator (mextend --request)")
        now = time.time()
        cost = extension_hours(tres_of(job), limit - old)
        past = self.store.extensions_by(job.user, now - max(b.window for _, _, b in found))
        try:
            for kind, name, budget in found:
                check_budget(kind, name, budget, past, cost, job.user, now, format_clock)
        except PolicyError as exc:
            raise Forbidden(f"job {job.id}: {str(exc).partition(': ')[2]}; ask an operator for more: mextend -j "
                            f"{job.id} -t +TIME --request --reason WHY") from None
        return cost

    def budget(self, user: str) -> list[dict]:
        """`mextend --budget`: what each extension budget that applies to `user` has left."""
        now, out = time.time(), []
        qos_names = sorted(self.sharing.qos)
        accounts = [None] if not self.sharing.configured else self.sharing.members.get(user, [])
        found = {(kind, name): b for account in accounts for qos in qos_names
                 for kind, name, b in budgets(self.sharing, account, qos)}
        if not found:
            return out
        past = self.store.extensions_by(user, now - max(b.window for b in found.values()))  # one read for all
        for (kind, name), b in found.items():
            count, hours, frees = spent(kind, name, b, past, now)
            out.append({"kind": kind, "name": name, "window": b.window, "count": count, "max_count": b.count,
                        "tres_hours": hours, "max_tres_hours": b.tres_hours, "frees_at": frees})
        return out

    def why_waiting(self, job: Job, start: float | None = None, node: str | None = None) -> str | None:
        """A pending job held by a limit, in words: which limit, whose use, how much of it (the
        use the last scheduling pass counted); or, waiting its turn (Priority, Resources), the
        jobs ahead of it and the `start` (on `node`) the last plan expects. None for other reasons."""
        if job.state is not State.PENDING or not job.reason:
            return None
        if job.reason in QUEUED:
            return self._in_queue(job, start, node)
        qos = job.qos
        for pool in self.sharing.pools(job.user, job.account, qos, job.partition):
            for name, reason in pool.reasons.items():
                if reason == job.reason:
                    return explain(pool, name, self.order.used.get(pool.key, {}).get(name, 0))
        return None

    def _in_queue(self, job: Job, start: float | None, node: str | None) -> str:
        """The jobs of its partition waiting their turn that the scheduler plans before it."""
        key = (-job.priority, job.submit_time, job.id)
        ahead = [j for j in self.jobs.active.values() if j.state is State.PENDING and j.partition == job.partition
                 and j.reason in QUEUED and (-j.priority, j.submit_time, j.id) < key]
        first = min(ahead, key=lambda j: (-j.priority, j.submit_time, j.id), default=None)
        asks = job.shape.options() if job.shape.wide else f"{job.cpus} CPU{'' if job.cpus == 1 else 's'}"
        if job.memory_mib:
            asks += f", {format_size_mib(job.memory_mib)}"
        if job.gres:
            asks += f", {job.gres}"
        return waiting.in_queue(job.reason, job.partition, f"it asks for {asks}", len(ahead),
                                first and waiting.Ahead(first.id, first.user, first.priority), job.priority, start, node)

    def _check_dependency(self, text: str) -> None:
        """A dependency on a job that does not exist is refused at submission, as sbatch's `Job
        dependency problem`: left waiting, it would wait forever (DependencyNeverSatisfied).
        melond keeps every job it ran, so an id it does not know was never submitted."""
        ids = jobrel.parse_dependency(text).job_ids
        missing = sorted(ids - {i for i in ids if self.jobs.get(i)} - set(self.store.states(ids)))
        if missing:
            named = ", ".join(map(str, missing))
            raise BadRequest(f"Job dependency problem: no job {named} (--dependency={text}); "
                             f"`mqueue --all` lists the jobs melond knows")

    def find(self, job_id: int) -> Job:
        job = self.jobs.get(job_id) or self.store.job(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist; `mqueue --all` lists the jobs melond knows")
        return job

    def resolve(self, ref: JobRef) -> int:
        """The job id `13` or `13_4` names (a task's own id is not its array's)."""
        if ref.task is None:
            return ref.job_id
        for job in self.jobs.listed():
            if job.array_job_id == ref.job_id and job.array_task_id == ref.task:
                return job.id
        jid = self.store.task_id(ref.job_id, ref.task)
        if jid is None:
            raise NotFound(f"job {ref} does not exist: array {ref.job_id} has no task {ref.task}; "
                           f"`mqueue -r --all -j {ref.job_id}` lists its tasks")
        return jid

    def array_tasks(self, job_id: int, states: frozenset[State]) -> list[int] | None:
        """Where `job_id` is an array (its first task's id), its tasks now in `states`; else None."""
        head = self.find(job_id)
        if head.array_job_id != head.id or head.array_task_id is None:
            return None
        return sorted(j.id for j in self.jobs.listed() if j.array_job_id == job_id and j.state in states)

    async def cancel_many(self, ids: list[int], caller: Caller) -> tuple[list[dict], list[Refusal]]:
        """Cancel many jobs at once (an array, or what a filter picks): the pending ones in one
        transaction, the running ones each as `cancel` does. Each job's outcome (with its label,
        `13_4` for a task), and the refusals."""
        pending, others, refused = await self._split(ids, caller, "cancel")
        now = time.time()
        done = set(await self.store.write(Store.op_transition_many, [j.id for j in pending], "cancelled", {
            "state": State.CANCELLED.value, "end_time": now, "reason": None}, caller.user, {}, now))
        ended = [j for j in pending if j.id in done]
        self.jobs.ended_now(ended, State.CANCELLED, now)  # at once, as the store has them: no pass may start one
        self.order.forget(j.id for j in ended)  # the next pass passes their entries by one lookup each
        outcomes = []
        async for part in slices(ended):  # ...and forgotten a slice at a time
            self.ends.finished_many([j.id for j in part])
            for job in part:
                self.counts.add("ended", job.partition, job.user, State.CANCELLED.value)
                outcomes.append({"job": label(job), "job_id": job.id, "state": State.CANCELLED.value})
        late = [j for j in pending if j.id not in done] + others  # running, or started meanwhile
        await _each_of(late, lambda job: self.cancel(job.id, caller), outcomes, refused)
        return outcomes, refused

    async def set_hold_many(self, ids: list[int], caller: Caller, hold: bool) -> tuple[list[dict], list[Refusal]]:
        """Hold or release many pending jobs in one transaction: each one's outcome, and the refusals."""
        pending, others, refused = await self._split(ids, caller, "hold or release")
        for job in others:
            refused.append((job.id, label(job), Conflict(f"job {job.id} is {job.state.value}; only pending jobs "
                                                         f"can be held or released")))
        done = set(await self.store.write(Store.op_transition_many, [j.id for j in pending],
                                          "held" if hold else "released", {"hold": int(hold)}, caller.user, {},
                                          time.time()))
        for job in pending:  # at once: no pass may start a job held in the store
            if job.id in done:
                job.hold = hold
                self.order.touch(job.id, Kept.HOLD)
        self.kick()
        outcomes = []
        async for part in slices(pending):
            for job in part:
                if job.id in done:
                    outcomes.append({"job": label(job), "job_id": job.id, "hold": hold})
                else:
                    refused.append((job.id, label(job), Conflict(f"job {job.id} started meanwhile; only pending "
                                                                 f"jobs can be held or released")))
        return outcomes, refused

    async def _split(self, ids: list[int], caller: Caller, action: str) -> tuple[list[Job], list[Job], list[Refusal]]:
        """Active jobs among `ids` the caller may act on, pending and the others; the refusals.
        (A job that starts meanwhile is among the pending: the store's act, made only on pending
        rows, sorts it out.)"""
        pending, others, refused = [], [], []
        async for part in slices(ids):
            for jid in part:
                job = self.jobs.active.get(jid)
                try:
                    if job is None:
                        job = self.find(jid)
                        said = f"has already ended ({job.state.value})" if job.state in FINISHED else "is ending"
                        raise Conflict(f"job {jid} {said}; nothing to {action.split()[0]}")
                    policy.check_owner(job, caller, action)
                except MelonError as exc:
                    refused.append((jid, label(job) if job is not None else str(jid), exc))
                    continue
                (pending if job.state is State.PENDING else others).append(job)
        return pending, others, refused

    async def cancel(self, job_id: int, caller: Caller, grace: float = 0, warning: str | None = None,
                     preempted_by: int | None = None) -> dict:
        """`grace`: a running job gets `warning` and is killed that many seconds later;
        `preempted_by`: the preemptor, named in the job's history, and the job ends PREEMPTED."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "cancel")
        if job.state in FINISHED:
            raise Conflict(f"job {job_id} has already ended ({job.state.value}); nothing to cancel")
        now = time.time()
        data = {} if preempted_by is None else {"preempted_by": preempted_by}
        if job.state is State.PENDING:
            done = await self.store.write(Store.op_transition, job_id, "cancelled", {
                "state": State.CANCELLED.value, "end_time": now, "reason": None,
            }, caller.user, data, now)
            if done:
                self.counts.add("ended", job.partition, job.user, State.CANCELLED.value)
                self.ends.finished(job_id)
                return {"job_id": job_id, "state": State.CANCELLED.value}
            return await self.cancel(job_id, caller, grace, warning, preempted_by)  # it started meanwhile
        kind = "cancel_requested" if preempted_by is None else "preempt_requested"
        await self.store.write(Store.op_transition, job_id, kind, {}, caller.user, {"run": job.run, **data}, now)
        self.jobs.cancelling.add(job_id)
        if preempted_by is not None:
            self.jobs.end_as[job_id] = State.PREEMPTED
        if grace:
            self.dispatcher.kill_soon(job, grace, warning)
        else:
            await self.dispatcher.kill(job)
        return {"job_id": job_id, "state": State.RUNNING.value, "cancelling": True}

    async def signal(self, job_id: int, caller: Caller, sig: str | int, to: str = SignalTo.ALL,
                     step: int | None = None) -> dict:
        """Send `sig` to a running job's processes (`to`: SignalTo), as its owner or an operator.
        SIGKILL is a cancel, at once, as in Slurm (job_signal): the job ends CANCELLED, and to
        every one of its processes. With `step` (`scancel J.S`), that running step's tasks alone
        get it, and the job goes on."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "signal")
        if step is not None:
            return await self._signal_step(job, sig, step)
        kill = sig in ("KILL", 9)
        if kill and job.state is State.PENDING:
            return await self.cancel(job_id, caller)
        if job.state is not State.RUNNING:
            what = "has already ended" if job.state in FINISHED else "is pending"
            raise Conflict(f"job {job_id} {what} ({job.state.value}); only a running job can be signalled "
                           f"(mcancel without -s cancels a pending one)")
        if kill:
            to = SignalTo.ALL
            await self.store.write(Store.op_transition, job_id, "cancel_requested", {}, caller.user, {"run": job.run},
                                   time.time())
            self.jobs.cancelling.add(job_id)
            self.jobs.end_as[job_id] = State.CANCELLED
        await self.dispatcher.signal(job, sig, to)
        return {"job_id": job_id, "state": job.state.value, "signal": sig, "to": str(to)}

    async def _signal_step(self, job: Job, sig: str | int, step: int) -> dict:
        running = {s.step_id for s in self.store.steps([job.id], running_only=True)}
        if job.state is not State.RUNNING or step not in running:
            raise NotFound(f"step {job.id}.{step} is not running; `squeue -s` lists the running steps")
        await self.dispatcher.signal(job, sig, f"{STEP_TARGET}{step}")
        return {"job_id": job.id, "step_id": step, "state": job.state.value, "signal": sig, "to": f"step {step}"}

    async def read_output(self, job_id: int, caller: Caller, stream: str, offset: int, limit: int) -> dict:
        """Part of a job's output (or error) file, read on its node: the owner's and operators' only."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "read the output of")
        if not job.node:
            raise Conflict(f"job {job_id} has not started yet ({job.state.value}); its output appears once it runs")
        path = job_file(job, stream, job.node)
        reply = await self.dispatcher.read_output(job, path, offset, limit)
        return {"job_id": job_id, "stream": stream, "path": path, "node": job.node, "state": job.state.value, **reply}

    def script(self, job_id: int, caller: Caller) -> dict:
        """What the job runs: its owner's and operators' only, as scripts may hold secrets."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "read the script of")
        return {"job_id": job_id, "script": job.script, "script_path": job.script_path, "args": job.script_args}

    async def extend(self, job_id: int, caller: Caller, *, add: int | None = None, to: int | None = None,
                     largest: bool = False, dry_run: bool = False, via: str | None = None,
                     auto: bool = False) -> dict:
        """Change the total limit; a running job's node learns the new one at once. `largest`:
        as much as delays no pending job (and the caps allow); `dry_run`: say what would happen,
        change nothing; `via`: where the request came from when not the API (`job`: the job
        itself, from its node); `auto`: an elastic job's step, which melond makes for its owner
        (outside the owner's caps, which bound what they ask, and only if it delays no one)."""
        async with self._extending:  # one at a time, so two requests never both fit the last of a budget
            try:
                return await self._extend(job_id, caller, add=add, to=to, largest=largest, dry_run=dry_run,
                                          via="auto" if auto else via, auto=auto)
            except _Refused as refused:
                if not dry_run:
                    raise refused.error from None
                return {"job_id": job_id, "dry_run": True, "granted": False, "refused": str(refused.error),
                        "delays": refused.delays}

    async def _extend(self, job_id: int, caller: Caller, *, add: int | None, to: int | None, largest: bool,
                      dry_run: bool, via: str | None, auto: bool = False) -> dict:
        job = self.find(job_id)
        part = self.inv.partition(job.partition)
        old = job.time_limit
        policy.check_owner(job, caller, "extend")
        capped = not auto and _capped(part, caller)
        past = [e["data"].get("added") or 0 for e in self.store.events(job_id)
                if e["kind"] == "extended" and e["actor"] == job.user] if capped else []
        try:
            limit = self._largest(job, caller, part, past) if largest else policy.new_limit(job, add=add, to=to)
            policy.check_extension(job, caller, limit, part.max_time, job.partition)
            if capped:
                policy.check_extension_budget(job, caller, limit, past, max_extension=part.max_extension,
                                              max_extensions=part.max_extensions, partition=job.partition)
            cost = self._check_budgets(job, limit, old) if not auto and not caller.operator else None
        except MelonError as exc:
            raise _Refused(exc, []) from None
        found: list[dict] = []
        no_delay = auto or (policy.extend_policy(part.extend_policy, self.shared) == "no-delay"
                            and not caller.operator)
        if job.state is State.RUNNING and job.start_time and old and (limit == 0 or limit > old) and \
                (dry_run or no_delay):
            snapshot, now = self.snapshot()  # one plan's view for the test and for the refusal's hint
            found = self._delays(job, limit, snapshot, now)
            if found and auto:
                raise _Refused(Conflict(f"job {job_id}: its next step would delay job {found[0]['job_id']}"), found)
            others = [d for d in found if d["user"] != job.user]  # an owner may delay their own jobs
            if others and no_delay:
                raise _Refused(self._would_delay(job, limit, others, snapshot, now), found)
        now = time.time()
        data = _extension(job, old, limit, via)
        if cost is not None:  # what the owner's extension budgets count (sharing.spent)
            data.update(tres_hours=cost, qos=job.qos, account=job.account)
        if dry_run:
            return {"job_id": job_id, "state": job.state.value, "dry_run": True, "granted": True, "delays": found,
                    **data}
        done = await self.store.write(Store.op_transition, job_id, "extended", {"time_limit": limit},
                                      "melond" if auto else caller.user, data, now)
        if not done:
            raise Conflict(f"job {job_id} ended while it was being extended; a finished job cannot be extended")
        job.time_limit = limit
        self.counts.add("extended", job.partition, job.user)
        self.order.touch(job_id)
        if job.state is State.RUNNING and job.node:
            await self.dispatcher.set_limit(job)
        self.kick()
        return {"job_id": job_id, "state": job.state.value, **data}

    async def extend_many(self, ids: list[int], caller: Caller, *, add: int | None,
                          to: int | None) -> tuple[list[dict], list[Refusal]]:
        """Extend many jobs at once (an array's tasks): the pending ones that only MaxTime bounds
        in one transaction; each of the others (running, or under the partition's caps on an
        owner's extensions or an extension budget, counted extension by extension) as `extend`
        does. Each job's outcome, and the refusals."""
        pending, others, refused = await self._split(ids, caller, "extend")
        groups: dict[tuple[int, int, int], list[Job]] = {}  # by (old limit, new limit, GPUs): one event's data
        async with self._extending:
            async for part in slices(pending):
                for job in part:
                    partition = self.inv.partition(job.partition)
                    if _capped(partition, caller) or (not caller.operator and
                                                      budgets(self.sharing, job.account, job.qos)):
                        others.append(job)
                        continue
                    try:
                        limit = policy.new_limit(job, add=add, to=to)
                        policy.check_extension(job, caller, limit, partition.max_time, job.partition)
                    except MelonError as exc:
                        refused.append((job.id, label(job), exc))
                        continue
                    groups.setdefault((job.time_limit, limit, gpu_count(parse_list(job.gres_total))), []).append(job)
            events = {key: _extension(jobs[0], key[0], key[1], None) for key, jobs in groups.items()}
            now = time.time()

            def extend_all(conn) -> list[int]:  # one transaction: two statements for each group
                return [jid for key, jobs in groups.items() for jid in Store.op_transition_many(
                    conn, [j.id for j in jobs], "extended", {"time_limit": key[1]}, caller.user, events[key],
                    now, only=(State.PENDING.value,))]
            done = set(await self.store.write(extend_all)) if groups else set()
            outcomes: list[dict] = []
            for key, jobs in groups.items():  # at once, as the store has them: a pass starts each with its new limit
                for job in jobs:
                    if job.id in done:
                        job.time_limit = key[1]
                        self.order.touch(job.id, Kept.LIMIT)
                    else:  # started meanwhile: extended as a running job is
                        others.append(job)
        self.kick()
        for key, jobs in groups.items():
            async for part in slices(jobs):
                for job in part:
                    if job.id in done:
                        self.counts.add("extended", job.partition, job.user)
                        outcomes.append({"job": label(job), "job_id": job.id, "state": State.PENDING.value,
                                         **events[key]})
        await _each_of(others, lambda job: self.extend(job.id, caller, add=add, to=to), outcomes, refused)
        order = {jid: i for i, jid in enumerate(ids)}
        outcomes.sort(key=lambda o: order.get(o["job_id"], 0))
        return outcomes, refused

    def _delays(self, job: Job, limit: int, snapshot: Snapshot, now: float) -> list[dict]:
        """Whom extending running `job` to `limit` would start later, by the scheduler's plan."""
        end = job.start_time + limit if limit else None
        owners = {p.job_id: p.user for p in snapshot.pending}
        return [{"job_id": d.job_id, "user": owners.get(d.job_id), "before": d.before, "after": d.after,
                 "by": d.by if d.after is not None else None}
                for d in nodelay.delays(snapshot, now, job.id, end)]

    def _would_delay(self, job: Job, limit: int, found: list[dict], snapshot: Snapshot, now: float) -> Conflict:
        first = found[0]
        by = f"by {format_duration(int(first['by']))}" if first["by"] is not None else "with no start in sight"
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        best = nodelay.largest_harmless_end(snapshot, now, job.id, job.start_time + job.time_limit,
                                            job.start_time + limit if limit else job.start_time + job.time_limit,
                                            spare=job.user)
        room = int(best - job.start_time - job.time_limit)
        hint = (f"the largest extension that delays no one is +{format_duration(room)} (mextend --max)" if room > 0
                else "no extension of it would delay no one now")
        gpus = gpu_count(parse_list(job.gres_total))
        cost = (f" ({gpus} GPU{'s' * (gpus > 1)} for {format_duration(limit - job.time_limit)} more: "
                f"{gpus * (limit - job.time_limit) / 3600:.1f} GPU-hours)") if gpus and limit else ""
        return Conflict(f"job {job.id}: a limit of {format_limit(limit)}{cost} would delay job {first['job_id']} "
                        f"(waiting, expected to start at {format_clock(first['before'])}) {by}{more}; partition "
                        f"{job.partition} extends only what delays no other user's job (extend_policy = no-delay); {hint}")

    def _largest(self, job: Job, caller: Caller, part, past: list[int]) -> int:
        """--max: the longest limit that delays no pending job, within MaxTime and the owner's caps."""
        if job.state is not State.RUNNING or not job.start_time:
            raise Conflict(f"job {job.id} is {job.state.value}: --max extends a running job (a pending job "
                           f"delays no one yet); give -t TIME")
        if not job.time_limit:
            raise Conflict(f"job {job.id} has no time limit; there is nothing to extend")
        bounds = [job.start_time + part.max_time] if part.max_time and not caller.operator else []
        if part.max_extension is not None and not caller.operator:
            bounds.append(job.start_time + job.time_limit + max(0, part.max_extension - sum(past)))
        snapshot, now = self.snapshot()
        if not bounds:
            waiting = nodelay.delays(snapshot, now, job.id, None)
            if not waiting:
                raise Conflict(f"job {job.id}: no waiting job needs its node, and no MaxTime or cap bounds it, so "
                               f"--max has no largest extension; give -t TIME")
            bounds.append(max(d.before for d in waiting) + 366 * 86400)
        end = nodelay.largest_harmless_end(snapshot, now, job.id, job.start_time + job.time_limit, min(bounds))
        limit = int(end - job.start_time)
        if limit <= job.time_limit:
            raise Conflict(f"job {job.id}: any extension would delay a waiting job (or MaxTime or the caps "
                           f"allow none); its limit stays {format_limit(job.time_limit)}")
        return limit

    async def set_hold(self, job_id: int, caller: Caller, hold: bool) -> dict:
        """Hold a pending job (it stays pending, JobHeldUser) or release it."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "hold or release")
        if job.state is not State.PENDING:
            raise Conflict(f"job {job_id} is {job.state.value}; only pending jobs can be held or released")
        done = await self.store.write(Store.op_transition, job_id, "held" if hold else "released", {"hold": int(hold)},
                                      caller.user, {}, time.time())
        if not done:
            raise Conflict(f"job {job_id} started meanwhile; only pending jobs can be held or released")
        job.hold = hold
        self.order.touch(job_id, Kept.HOLD)
        self.kick()
        return {"job_id": job_id, "hold": hold}

    async def requeue(self, job_id: int, caller: Caller, via: str | None = None, grace: float = 0,
                      warning: str | None = None) -> dict:
        """Send a job back to the queue under its own id, as its next run (`scontrol requeue`):
        a running one is killed first and requeued by its end (with `grace`: `warning` first, the
        kill that many seconds later); one that ended is pending again at once."""
        job = self.find(job_id)
        policy.check_owner(job, caller, "requeue")
        if job.state is State.PENDING:
            raise Conflict(f"job {job_id} is pending; only a running or ended job can be requeued")
        now = time.time()
        if job.state is State.RUNNING:
            data = {"run": job.run, **({"via": via} if via else {})}
            done = await self.store.write(Store.op_transition, job_id, "requeue_requested", {}, caller.user, data, now)
            if not done:
                return await self.requeue(job_id, caller, via, grace, warning)  # it ended meanwhile
            self.jobs.requeueing.add(job_id)
            # Answered first: the asker often runs inside the job (Lightning, submitit), and the
            # kill would otherwise end it before it hears that its requeue worked.
            self.dispatcher.kill_soon(job, grace, warning)
            return {"job_id": job_id, "state": State.RUNNING.value, "requeueing": True}
        runs = job.restarts + 1
        changes = {"state": State.PENDING.value, "node": None, "start_time": None, "end_time": None, "exit_code": None,
                   "exit_signal": None, "detail": None, "cpu_time": None, "max_rss": None, "reason": None,
                   "restarts": runs}
        done = await self.store.write(Store.op_transition, job_id, "requeued_ended", changes, caller.user,
                                      {"restarts": runs, "was": job.state.value}, now)
        if not done:
            raise Conflict(f"job {job_id} changed meanwhile; try again")
        again = self.store.job(job_id)
        self.counts.add("requeued", job.partition, job.user)
        self.jobs.active[job_id] = again
        self.order.touch(job_id)
        self.kick()
        return {"job_id": job_id, "state": State.PENDING.value, "restarts": runs}

    async def wait_ended(self, job_id: int, timeout: float) -> Job | None:
        """Block until the job is finished or the timeout passes; the job as it is then."""
        await self.jobs.wait_ended(job_id, timeout)
        return self.jobs.get(job_id) or self.store.job(job_id)


def _capped(part: Partition, caller: Caller) -> bool:
    """Whether the partition caps its owners' extensions (how many, how much in all), counted
    extension by extension against what the ones before spent: operators are not capped."""
    return not caller.operator and (part.max_extension is not None or part.max_extensions is not None)


def _extension(job: Job, old: int, limit: int, via: str | None) -> dict:
    """An extension's record, as its event keeps it and its reply says it: the old and new
    limits and deadlines, and the GPU-hours it adds (what sites count GPU jobs in)."""
    start = job.start_time
    data = {
        "old_limit": old, "new_limit": limit, "added": (limit - old) if limit and old else None,
        "old_deadline": start + old if start and old else None,
        "new_deadline": start + limit if start and limit else None,
    }
    if via:
        data["via"] = via
    gpus = gpu_count(parse_list(job.gres_total))
    if gpus and data["added"]:
        data["gpu_hours"] = round(gpus * data["added"] / 3600, 2)
    return data


async def _each_of(jobs: list[Job], act: Callable[[Job], Awaitable[dict]], outcomes: list[dict],
                   refused: list[Refusal]) -> None:
    """`act` on each job, EACH_AT_ONCE of them together (their writes share group commits): each
    outcome (with the job's label) or refusal added to those given."""
    for first in range(0, len(jobs), EACH_AT_ONCE):
        chunk = jobs[first:first + EACH_AT_ONCE]
        for job, outcome in zip(chunk, await asyncio.gather(*map(act, chunk), return_exceptions=True)):
            if isinstance(outcome, MelonError):
                refused.append((job.id, label(job), outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                outcomes.append({"job": label(job), **outcome})
