"""The user's side of a terminal in a job (salloc's shell, srun --pty): this terminal in raw mode,
its bytes to melond's WebSocket (GET /jobs/{id}/terminal, melond/api/terminal.py) and the
remote terminal's bytes back, window sizes as they change, and the exit code at the end.

aiohttp's WebSocket client, imported only here: an interactive session pays its start-up once,
no other command does.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import sys

from melon_cli.client import Client, split_url
from melond.errors import MelonError, Unreachable

REATTACH_WAIT = 60.0  # seconds a session waits for melond to come back
DETACH = b"\x1c"  # Ctrl-\ : sattach lets go of a session's terminal (every other key is the session's)


def window() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
        return size.lines, size.columns
    except OSError:
        return 24, 80


def attach(c: Client, job_id: int, argv: list[str], *, cwd: str | None, final: bool, prog: str = "srun",
           node: str | None = None, watch: int | None = None, hello: str | None = None) -> int | None:
    """Run `argv` on a terminal on the job's first node (or `node`) until it ends: its exit code
    (negative: the signal that ended it; None: unknown). Should melond go meanwhile (a restart),
    the terminal is taken up again once it is back, for REATTACH_WAIT seconds. `watch`: no
    command, but one more reader of that running step's terminal (sattach), until it ends;
    `hello`: a line said once the terminal is had."""
    try:
        return asyncio.run(_attach(c, job_id, argv, cwd, final, prog, node, watch, hello))
    except OSError as exc:
        raise Unreachable(f"lost the terminal's connection to melond at {c.endpoint}: {exc}") from None


def _aiohttp():
    """aiohttp, from site-packages even where the command started without them (the Slurm-named
    launchers run `python -S` for a fast start)."""
    try:
        import aiohttp
    except ImportError:
        import site
        site.main()
        import aiohttp
    return aiohttp


def _connection(c: Client):
    """aiohttp's connector, the base URL and the headers for the client's endpoint."""
    aiohttp = _aiohttp()
    headers = {}
    if c.header:
        name, _, value = c.header.decode().strip().partition(": ")
        headers[name] = value
    if c.endpoint.startswith("unix:"):
        return aiohttp.UnixConnector(path=c.endpoint[5:]), "http://melond", headers
    scheme, host, port = split_url(c.endpoint)
    context = None
    if scheme == "https":
        context = ssl.create_default_context(cafile=os.environ.get("MELON_CA_FILE") or None)
    return aiohttp.TCPConnector(ssl=context if context else False), f"{scheme}://{host}:{port}", headers


@contextlib.contextmanager
def _raw():
    """This terminal in raw mode while the remote one is in use (every key goes to it, Ctrl-C
    included), as it was after; nothing where the input is no terminal."""
    if not os.isatty(0):
        yield False
        return
    import termios
    import tty
    saved = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)  # not TCSAFLUSH: what was typed ahead is the session's
    try:
        yield True
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def attach_channel(request: dict) -> dict:
    """`srun --pty` inside a job: the terminal through the node's job channel (a streamed ask that
    carries on what is typed and the window's sizes: remote/asks.py), what it writes written
    here; the ask's answer ({"ok": true, "exit": CODE} once it ends, or a refusal)."""
    import selectors

    from melon_cli import jobchannel
    rows, cols = window()
    sock = jobchannel.connect()
    sock.sendall(json.dumps({**request, "rows": rows, "cols": cols}).encode() + b"\n")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    sel = selectors.DefaultSelector()
    previous = signal.signal(signal.SIGWINCH, lambda *_: None)
    old_wakeup = signal.set_wakeup_fd(wake_w)

    def send(message: dict) -> None:
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass
    try:
        with _raw():
            try:
                sel.register(0, selectors.EVENT_READ)
            except (OSError, ValueError):  # a file, /dev/null: read at once as the end of input
                send({"stdin": base64.b64encode(b"\x04").decode()})
            sel.register(wake_r, selectors.EVENT_READ)
            sel.register(sock, selectors.EVENT_READ)
            pending = b""
            while True:
                for key, _ in sel.select():
                    if key.fileobj == 0:
                        data = os.read(0, 65536)
                        if not data:  # end of input: the remote terminal reads its end-of-file character
                            sel.unregister(0)
                            data = b"\x04"
                        send({"stdin": base64.b64encode(data).decode()})
                    elif key.fileobj == wake_r:
                        os.read(wake_r, 512)
                        send({"resize": list(window())})
                    else:
                        chunk = sock.recv(1 << 16)
                        if not chunk:
                            return {"ok": False, "error": {"code": "unavailable", "message": "the job channel "
                                                           "closed (melond restarted, or lost this node)"}}
                        *lines, pending = (pending + chunk).split(b"\n")
                        for line in lines:
                            message = json.loads(line)
                            if "ok" in message:
                                return message
                            _show(message)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        signal.signal(signal.SIGWINCH, previous)
        sel.close()
        sock.close()
        os.close(wake_r)
        os.close(wake_w)


def _show(message: dict) -> None:
    """A line of the remote terminal's, as the user reads it."""
    if "data" in message:
        os.write(1, base64.b64decode(message["data"]))
    elif "notice" in message:
        os.write(1, f"\r\n{message['notice']}\r\n".encode())
    elif "error" in message:
        os.write(2, f"{message['error']}\r\n".encode())


async def _attach(c: Client, job_id: int, argv: list[str], cwd: str | None, final: bool, prog: str,
                  node: str | None, watch: int | None, hello: str | None) -> int | None:
    aiohttp = _aiohttp()
    loop = asyncio.get_running_loop()
    current: dict = {"ws": None, "step": None, "early": [], "hello": hello}
    sends: set[asyncio.Task] = set()

    def send(message: dict) -> None:
        ws = current["ws"]
        if ws is None and current["step"] is None:  # typed ahead of the terminal: sent once it opens
            current["early"].append(message)
            return
        if ws is None or ws.closed:  # between connections: what is typed then is lost, as on a dropped ssh
            return
        task = loop.create_task(ws.send_str(json.dumps(message)))
        sends.add(task)
        task.add_done_callback(sends.discard)

    def typed() -> None:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:  # end of input: the remote terminal reads its end-of-file character
            loop.remove_reader(0)
            data = b"\x04"
        if watch is not None and DETACH in data:  # a reader leaves; the session runs on
            current["detached"] = True
            if current["ws"] is not None:
                loop.create_task(current["ws"].close())
            return
        send({"stdin": base64.b64encode(data).decode()})

    with _raw() as raw:
        if raw:
            loop.add_signal_handler(signal.SIGWINCH, lambda: send({"resize": list(window())}))
        try:
            loop.add_reader(0, typed)
        except (OSError, ValueError):  # input from a file, /dev/null: at its end already
            if watch is None:  # (a reader sends no end-of-file into another's session)
                send({"stdin": base64.b64encode(b"\x04").decode()})
        rows, cols = window()
        opening = {"argv": argv, "rows": rows, "cols": cols, "cwd": cwd, "final": final,
                   "env": {"TERM": os.environ.get("TERM") or "xterm"}, **({"node": node} if node else {})}
        if watch is not None:
            opening = {"step": watch, "watch": True, "rows": rows, "cols": cols}
        lost_since = None
        try:
            while True:
                try:
                    done, code = await _session(aiohttp, c, job_id, opening, current)
                    if done:
                        return code
                except aiohttp.WSServerHandshakeError as exc:
                    if current["step"] is None:
                        raise MelonError(f"melond refused the terminal for job {job_id}: HTTP {exc.status} "
                                         f"{exc.message}") from None
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    if current["step"] is None:
                        raise
                current["ws"] = None
                if current.get("detached"):
                    return 0
                if current["step"] is None or watch is not None:  # a reader takes no session up again
                    return None
                if current.pop("attached", False):  # it had come back: a new loss waits its full time again
                    lost_since = None
                now = loop.time()
                if lost_since is None:
                    lost_since = now
                    os.write(2, f"\r\n{prog}: lost the connection to melond; reattaching to job {job_id}'s terminal "
                                f"(step {job_id}.{current['step']})...\r\n".encode())
                elif now - lost_since > REATTACH_WAIT:
                    os.write(2, f"{prog}: melond did not come back within {REATTACH_WAIT:g} s; job {job_id} runs on "
                                f"(scancel {job_id} ends it)\r\n".encode())
                    return None
                rows, cols = window()
                opening = {"step": current["step"], "rows": rows, "cols": cols}
                await asyncio.sleep(0.5)
        finally:
            loop.remove_reader(0)
            if raw:
                loop.remove_signal_handler(signal.SIGWINCH)


async def _session(aiohttp, c: Client, job_id: int, opening: dict, current: dict) -> tuple[bool, int | None]:
    """One connection's part of the session: (ended, exit code); (False, None) when the
    connection went before the terminal's end."""
    connector, base, headers = _connection(c)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.ws_connect(f"{base}/api/v1/jobs/{job_id}/terminal", heartbeat=30,
                                      max_msg_size=4 << 20) as ws:
            await ws.send_json(opening)
            for message in current["early"]:
                await ws.send_json(message)
            current["early"].clear()
            current["ws"] = ws
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                if "data" in message or "notice" in message:
                    _show(message)
                elif "step" in message:  # the session is (again) on: a later loss waits its full time
                    current["step"] = message["step"]
                    current["attached"] = True
                    if current["hello"]:
                        os.write(2, f"{current.pop('hello')}\r\n".encode())
                elif "error" in message and message.get("retry") and current["step"] is not None:
                    return False, None  # reattaching, and the node is not back yet: try again
                elif "error" in message:
                    _show(message)
                elif "exit" in message:
                    return True, message["exit"]
    return False, None
