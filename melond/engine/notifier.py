"""Delivering job notices (sbatch --mail-type) through what the inventory's [notify] names: a
command run with the notice as JSON on its stdin, or a webhook POSTed the JSON. Melon sends no
mail itself: the site's command or webhook does, with the notice's `mail_user` and `subject`.

A queue and one worker: the scheduler and the API only ever enqueue, so a slow or failing
notifier never blocks them. Each notice is tried `retries` more times, with delays doubling from
1 s; a failure is logged with the reason, and so is a notice given up on.
"""
from __future__ import annotations

import asyncio
import json
import logging

from melond.config import Notify

log = logging.getLogger("melond.notify")

QUEUE_MAX = 10_000  # notices waiting at most; past that the oldest are dropped, with a log line


class Notifier:
    def __init__(self, conf: Notify | None) -> None:
        self.conf = conf
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.delivered = 0
        self._session = None

    @property
    def configured(self) -> bool:
        return self.conf is not None and bool(self.conf.command or self.conf.webhook)

    def send(self, notice: dict) -> None:
        if not self.configured:
            return
        if self.queue.qsize() >= QUEUE_MAX:
            dropped = self.queue.get_nowait()
            log.warning("notice dropped: too many waiting", extra={"job": dropped.get("job_id"),
                                                                   "event": dropped.get("event")})
        self.queue.put_nowait(notice)

    async def run_forever(self) -> None:
        if not self.configured:
            return
        try:
            while True:
                notice = await self.queue.get()
                await self._deliver(notice)
        finally:
            if self._session is not None:
                await self._session.close()

    async def _deliver(self, notice: dict) -> None:
        data = json.dumps(notice).encode()
        delay = 1.0
        for attempt in range(self.conf.retries + 1):
            try:
                await asyncio.wait_for(self._once(data), self.conf.timeout)
                self.delivered += 1
                return
            except Exception as exc:  # noqa: BLE001 - whatever the notifier does, melond goes on
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("notice not delivered", extra={"job": notice.get("job_id"), "event": notice.get("event"),
                                                           "attempt": attempt + 1, "error": why})
            if attempt < self.conf.retries:
                await asyncio.sleep(delay)
                delay *= 2
        log.error("notice given up", extra={"job": notice.get("job_id"), "event": notice.get("event")})

    async def _once(self, data: bytes) -> None:
        if self.conf.command:
            proc = await asyncio.create_subprocess_exec(*self.conf.command, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await proc.communicate(data)
            except asyncio.CancelledError:
                proc.kill()
                raise
            if proc.returncode != 0:
                raise RuntimeError(f"{self.conf.command[0]} exited {proc.returncode}: "
                                   f"{err.decode(errors='replace').strip()[-300:]}")
            return
        import aiohttp
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self.conf.webhook, data=data,
                                      headers={"Content-Type": "application/json"}) as reply:
            if reply.status >= 300:
                raise RuntimeError(f"{self.conf.webhook} answered {reply.status}")
