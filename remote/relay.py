"""The helper's half of srun's tasks on a further node of a job: the request handed to the job's
holder there (remote/holder.py), and every line it answers carried on to melond as an event,
which melond relays to the srun that waits on the job's first node.

Standard library only: streamed to compute nodes with the helper.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from . import holder, spool
from .protocol import Event

CONNECT_WAIT = 10.0  # seconds a holder that is just starting has to open its socket
MAX_LINE = 1 << 22
TERMINALS: dict[tuple[int, int, int], asyncio.StreamWriter] = {}  # (job, run, step) -> its holder connection


async def launch(scope: str, msg: dict, send: Callable[[dict], None]) -> None:
    """Hand the tasks to the run's holder; its answer streams on in the background."""
    job_id, run, step = int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"])
    address = holder.address(scope, spool.run_key(job_id, run))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_WAIT
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(address, limit=MAX_LINE)
            break
        except OSError as exc:
            if loop.time() >= deadline:
                raise OSError(f"job {job_id}'s part on this node does not answer ({exc.strerror or exc}); "
                              f"is it still running?") from None
            await asyncio.sleep(0.05)
    if msg.get("attach"):  # a terminal's new connection, after melond's last one went
        request = {"attach": step, "pty": msg.get("pty")}
        TERMINALS[(job_id, run, step)] = writer
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        asyncio.ensure_future(_relay(reader, writer, {"job_id": job_id, "run": run, "step": step}, send))
        return
    if msg.get("release") is not None:  # the allocation's end, with its shell's exit code
        writer.write(json.dumps({"release": int(msg["release"])}).encode() + b"\n")
        await writer.drain()
        writer.close()
        return
    request = {"step": step, "argv": msg["argv"], "cwd": msg.get("cwd"), "env": msg.get("env") or {},
               "tasks": msg["tasks"]}
    if msg.get("pty"):  # a terminal: [rows, cols]; `final`: its end is the job's (an interactive allocation)
        request.update(pty=msg["pty"], final=bool(msg.get("final")))
        TERMINALS[(job_id, run, step)] = writer
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    asyncio.ensure_future(_relay(reader, writer, {"job_id": job_id, "run": run, "step": step}, send))


async def feed(msg: dict) -> bool:
    """What the user types (`stdin`, base64) or a new window size (`resize`) for a terminal's task
    here; False when that terminal is gone."""
    writer = TERMINALS.get((int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"])))
    if writer is None or writer.is_closing():
        return False
    line = {k: msg[k] for k in ("stdin", "resize") if k in msg}
    writer.write(json.dumps(line).encode() + b"\n")
    await writer.drain()
    return True


async def hang_up(msg: dict) -> None:
    """The user's terminal closed: the holder hangs its pty up (SIGHUP, as a closed login). A
    connection that merely closes (melond going) leaves the terminal to be reattached."""
    writer = TERMINALS.pop((int(msg["job_id"]), int(msg.get("run", 0)), int(msg["step"])), None)
    if writer is not None and not writer.is_closing():
        writer.write(b'{"hangup": true}\n')
        await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, about: dict,
                 send: Callable[[dict], None]) -> None:
    done = False
    try:
        while line := await reader.readline():
            message = json.loads(line)
            done = done or message.get("done") is True
            send({"event": Event.TASK, **about, "message": message})
    except (OSError, ValueError):
        pass
    finally:
        writer.close()
        TERMINALS.pop((about["job_id"], about["run"], about["step"]), None)
    if not done:  # the holder went (its job ended, or it was killed): no more will come
        send({"event": Event.TASK, **about, "message": {"done": True, "lost": True}})
