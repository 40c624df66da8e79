"""Inside a job, the job's own way to melond: the job channel its node's helper serves
(remote/asks.py), for a job that has no token and no network path to the login node.

Used when the command runs inside a job (MELON_NODE_SOCKET is set) and names that job, or none.
"""
from __future__ import annotations

import os

from melond.errors import MelonError

ENV = "MELON_NODE_SOCKET"
API_ENV = "MELON_JOB_API"  # in salloc's command on the login node: the API srun asks instead (no node there)
TIMEOUT = 40.0  # the node waits 30 s for melond's answer


def own_job() -> str | None:
    """The id of the job this process runs in, if it runs in one."""
    return os.environ.get("MELON_JOB_ID") or None


def is_own(ref: str) -> bool:
    """Does `ref` name the job this process runs in: its id, or its array id as `ARRAY_TASK`
    (Lightning and submitit name an array task so)?"""
    own = own_job()
    if own is None:
        return False
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return ref == own or (array is not None and ref == f"{array}_{task}")


def usable(typed: str | None, endpoint: str | None) -> bool:
    """Ask through the node? Inside a job, for that job, when no endpoint was given explicitly."""
    return ENV in os.environ and endpoint is None and typed in (None, own_job())


def try_ask(request: dict) -> dict | None:
    """The answer through the node, or None where the node serves no job channel (an older
    helper): the caller then asks melond's API, if it can reach it."""
    try:
        return ask(request)
    except (ConnectionRefusedError, FileNotFoundError):
        return None


def ask(request: dict) -> dict:
    """One request, one answer; a refusal is raised with the reason melond (or the node) gave."""
    reply = exchange(request)
    if not reply.get("ok"):
        raise MelonError(reply.get("error", {}).get("message") or "refused")
    return reply


def available() -> bool:
    """Is there a way to melond for this job's srun: its node's channel, or salloc's API on the login node?"""
    return ENV in os.environ or (API_ENV in os.environ and own_job() is not None)


def on_login_node() -> bool:
    """Does this process run in salloc's command on the login node (use_interactive_step off)?"""
    return ENV not in os.environ and API_ENV in os.environ and own_job() is not None


def api():
    """The API salloc's command on the login node asks (MELON_JOB_API)."""
    from melon_cli.client import Client
    return Client.from_environment(os.environ[API_ENV])


def exchange(request: dict) -> dict:
    """One request, its answer as it came (`ok` false included, for a caller that acts on `error.code`)."""
    if on_login_node():
        try:
            return api().call("POST", f"/jobs/{own_job()}/ask", request)
        except MelonError as exc:
            return {"ok": False, **exc.to_wire()}
    import json  # only inside a job: the login node's common path loads it not
    sock = connect(TIMEOUT)
    try:
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
        except BrokenPipeError:
            pass  # refused before the request was read (not a job's process): the reason waits to be read
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise MelonError("the node's helper closed the job channel without an answer (melond may have lost "
                         "the node); try again")
    return json.loads(data)


def stream(request: dict):
    """A streamed ask: each line of the answer as it comes, the last being the answer itself
    (`ok` set); ends early, without it, where the channel closes first."""
    if on_login_node():
        yield from api().lines("POST", f"/jobs/{own_job()}/ask", request)
        return
    import json
    sock = connect()
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
        pending = b""
        while chunk := sock.recv(1 << 16):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield json.loads(line)
    finally:
        sock.close()


def connect(timeout: float | None = None):
    """A connection to this node's job channel (`_socket`: `socket` costs its enums)."""
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(_address())
    except BaseException:
        sock.close()
        raise
    return sock


def _address() -> str:
    """MELON_NODE_SOCKET as a socket address: `@name` is the abstract-namespace name."""
    name = os.environ[ENV]
    return "\0" + name[1:] if name.startswith("@") else name
