"""Which notices a job's owner gets, and when (sbatch --mail-type): BEGIN when it starts, END and
FAIL when it ends, REQUEUE, TIME_LIMIT_50/80/90 when it has used that share of its current limit
(an extension re-arms those still ahead), TIME_LIMIT when it ran out of time; and the verdict on
an extension request. Each notice sent is a `notified` event in the job's history, so a restarted
melond sends none twice. Delivery is the notifier's (melond/engine/notifier.py)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from melond.engine.jobs import JobTable
from melond.engine.notifier import Notifier
from melond.spec import notices
from melond.spec.states import State
from melond.spec.timespec import format_duration
from melond.state.job import Job
from melond.state.store import Store

log = logging.getLogger("melond.engine")

TICK = 1.0


class Notices:
    def __init__(self, jobs: JobTable, store: Store, notifier: Notifier) -> None:
        self.jobs, self.store, self.notifier = jobs, store, notifier
        self._sent: dict[int, tuple[int, set[str]]] = {}  # running job -> (the limit seen, notices sent)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run_forever(self) -> None:
        if not self.notifier.configured:
            return
        while not self._stopping:
            await asyncio.sleep(TICK)
            try:
                await self.step(time.time())
            except Exception:  # noqa: BLE001
                log.exception("notice step failed")

    async def step(self, now: float) -> None:
        for job in [j for j in self.jobs.running() if j.mail_type]:
            limit, sent = self._sent.get(job.id) or (job.time_limit, self._already(job.id))
            if limit != job.time_limit:  # extended: the time-limit notices still ahead are due again
                sent = notices.rearmed(sent, job.start_time or now, job.time_limit, now)
            self._sent[job.id] = (job.time_limit, sent)
            due = [n for n in ("BEGIN",) if n in job.mail_type and n not in sent]
            due += notices.due(job.mail_type, job.start_time or now, job.time_limit, now, sent)
            for name in due:
                sent.add(name)
                await self._notify(job, name, now)

    def ended(self, job_id: int) -> Coroutine[Any, Any, None] | None:
        """A job's end is committed: what mails END, FAIL, TIME_LIMIT as it asked, to be run; None
        where no notifier is configured (a bulk cancel's 100,000 ends spawn nothing)."""
        self._sent.pop(job_id, None)
        return self._ended(job_id) if self.notifier.configured else None

    async def _ended(self, job_id: int) -> None:
        job = self.store.job(job_id)
        if job is None or not job.mail_type:
            return
        for kind in ("END", "FAIL", "TIME_LIMIT"):
            wanted = kind == "END" or (kind == "FAIL" and job.state.value in notices.FAILED) or \
                (kind == "TIME_LIMIT" and job.state is State.TIMEOUT)
            if wanted and kind in job.mail_type:
                await self._notify(job, kind, time.time())

    async def requeued(self, job: Job) -> None:
        self._sent.pop(job.id, None)
        if "REQUEUE" in job.mail_type:
            await self._notify(job, "REQUEUE", time.time())

    async def request_decided(self, request: dict) -> None:
        """Tell an owner the verdict on their extension request, whatever its job's --mail-type."""
        job = self.store.job(request["job_id"])
        if job is not None and self.notifier.configured:
            await self._notify(job, f"EXTENSION_REQUEST_{request['state'].upper()}", time.time(), request=request)

    def _already(self, job_id: int) -> set[str]:
        """The notices a job got before (this melond may have restarted since)."""
        return {e["data"].get("event") for e in self.store.events(job_id) if e["kind"] == "notified"}

    async def _notify(self, job: Job, event: str, now: float, request: dict | None = None) -> None:
        view = _view(job, now)
        notice = {"event": event, "job_id": job.id, "name": job.name, "user": job.user,
                  "mail_user": job.mail_user or job.user, "state": view.get("state_name"), "time": now,
                  "subject": _subject(job, event, view, request), "job": view}
        if request is not None:
            notice["request"] = request
        await self.store.write(Store.op_note, job.id, "notified", "melond", {"event": event}, now)
        self.notifier.send(notice)


def _view(job: Job, now: float) -> dict:
    """The job as the notice carries it: its public fields, its state's name and its run time."""
    elapsed = ((job.end_time or now) - job.start_time) if job.start_time else 0.0
    return {**job.public(), "state": job.state.value, "state_name": job.state.value, "elapsed": elapsed}


def _subject(job: Job, event: str, view: dict, request: dict | None) -> str:
    """Slurm's subject line, e.g. `Melon Job_id=12 Name=train Ended, Run time 0:01:02, COMPLETED, ExitCode 0`."""
    head = f"Melon Job_id={job.id} Name={job.name}"
    run = format_duration(int(view.get("elapsed") or 0))
    if event == "BEGIN":
        return f"{head} Began, Queued time {format_duration(int((job.start_time or time.time()) - job.submit_time))}"
    if event in ("END", "FAIL", "TIME_LIMIT"):
        what = {"END": "Ended", "FAIL": "Failed", "TIME_LIMIT": "Reached time limit"}[event]
        return f"{head} {what}, Run time {run}, {view.get('state_name')}, ExitCode {job.exit_code or 0}"
    if event in notices.THRESHOLDS:
        return f"{head} Reached {event.rsplit('_', 1)[1]}% of time limit, Run time {run}"
    if event == "REQUEUE":
        return f"{head} Requeued"
    if request is not None:
        return f"{head} extension request {request['id']} {request['state']}" + \
            (f": {request['verdict']}" if request.get("verdict") else "")
    return f"{head} {event}"
