"""The launcher: a small process that forks job monitors.

Standard library only: streamed to compute nodes with the helper. The cost of
fork() grows with the parent's memory (page tables, then copy-on-write faults
as refcounts change), so monitors are forked from this process, made before the
helper loads asyncio, rather than from the helper itself. Requests arrive as
datagrams on a SOCK_SEQPACKET pair; each monitor sends its start report back on
the same socket. The launcher exits when the helper closes its end; the
monitors, each in its own session, run on.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket

from remote import monitor
from remote.spool import JobDir

MAX_REQUEST = 64 * 1024
REAP_INTERVAL = 1.0


def start() -> tuple[int, socket.socket]:
    """Fork the launcher; return its pid and the helper's end of the socket pair."""
    helper_end, launcher_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            helper_end.close()
            serve(launcher_end)
            code = 0
        finally:
            os._exit(code)
    launcher_end.close()
    return pid, helper_end


def serve(sock: socket.socket) -> None:
    """Fork one monitor per request until the helper goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        ready, _, _ = select.select([sock], [], [], REAP_INTERVAL)
        reap_children()
        if not ready:
            continue
        data = sock.recv(MAX_REQUEST)
        if not data:
            return
        req = json.loads(data)
        if os.fork() == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.setsid()
                monitor.detach(keep=sock.fileno())
                jobdir = JobDir(req["spool"], req["key"])
                spec = jobdir.read_json("spec.json") or {}
                monitor.Monitor(jobdir, spec, req["backend"], req["notify"]).run(
                    lambda info: _report(sock, req["key"], info))
                code = 0
            finally:
                os._exit(code)


def _report(sock: socket.socket, key: str, info: dict) -> None:
    """One datagram to the helper, then let go of the launcher's socket."""
    try:
        sock.send(json.dumps({"key": key, **info}).encode())
    except OSError:
        pass  # the helper is gone; the spool tells the next one
    finally:
        sock.close()


def reap_children() -> None:
    """Collect every exited child without waiting, so none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
