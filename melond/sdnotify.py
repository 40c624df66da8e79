"""systemd's notify protocol (sd_notify(3)) over $NOTIFY_SOCKET: READY=1 once melond serves, and
WATCHDOG=1 from its event loop while its health check passes, so that a loop stuck, or a store
that takes no writes, for WatchdogSec gets melond restarted.

Standard library only. Where systemd did not start melond (no NOTIFY_SOCKET) it does nothing.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping

log = logging.getLogger("melond")

ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
WATCHDOG_SHARE = 0.5  # ping at half the timeout, as sd_watchdog_enabled(3) advises


def _address(value: str) -> str | None:
    """A socket path, or an abstract socket (`@name`); other kinds (vsock) are not for melond."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


class Notifier:
    """Tells systemd how melond is doing; every call is a no-op when nobody listens."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Takes the variables out of the environment: the processes melond starts (the local
        node's helper, notifier commands) must not speak for it."""
        env = os.environ if environ is None else environ
        socket_var, usec, pid = (env.pop(name, "") for name in ENV)
        self.address = _address(socket_var)
        self.interval: float | None = None  # seconds between watchdog pings; None: no watchdog
        if self.address and usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())):
            self.interval = int(usec) / 1e6 * WATCHDOG_SHARE

    def send(self, *fields: str) -> None:
        """One datagram of `NAME=value` lines; never blocks, and a systemd gone away is no error."""
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
            try:
                s.sendto("\n".join(fields).encode(), self.address)
            except OSError as exc:
                log.debug("sd_notify %s: %s", fields, exc)

    async def watchdog_forever(self, healthy: Callable[[], Awaitable[bool]]) -> None:
        """WATCHDOG=1 every interval while `healthy()` says so (the event loop turns and a write
        reaches the database)."""
        if self.interval is None:
            return
        while True:
            if await healthy():
                self.send("WATCHDOG=1")
            await asyncio.sleep(self.interval)
