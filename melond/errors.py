"""One error hierarchy for melond, its API and the CLIs.

Each error has a code that crosses the wire (HTTP body `{"error": {"code",
"message"}}`) and comes back in the client as the same type, via `from_wire`.
Messages are written for the user: what is wrong and what to do.
"""
from __future__ import annotations


class MelonError(Exception):
    """Base: a refusal or failure with a user-facing message."""

    code = "error"
    status = 400

    def to_wire(self) -> dict:
        return {"error": {"code": self.code, "message": str(self)}}


class BadRequest(MelonError):
    code, status = "bad_request", 400


class ParseError(BadRequest, ValueError):
    """What someone typed (a time, a size, a directive, a job id, a token) cannot be read: a 400
    bad_request on the wire, and a ValueError to code that parses."""


class Unauthorized(MelonError):
    code, status = "unauthorized", 401


class Forbidden(MelonError):
    code, status = "forbidden", 403


class NotFound(MelonError):
    code, status = "not_found", 404


class Conflict(MelonError):
    """The request is well-formed but the job's state does not allow it."""

    code, status = "conflict", 409


class RequestTimeout(MelonError):
    """A request's head or body did not arrive within its `[limits]` time."""

    code, status = "request_timeout", 408


class TooLarge(MelonError):
    code, status = "too_large", 413


class RateLimited(MelonError):
    """Too many requests too fast; `retry_after` seconds tell the client when to try again."""

    code, status = "rate_limited", 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyConnections(MelonError):
    """A client already has as many connections open as `[limits] connections_per_client` allows."""

    code, status = "too_many_connections", 503


class DiskFull(MelonError):
    """melond's state directory has no room to record a change (HTTP 507 Insufficient Storage)."""

    code, status = "disk_full", 507


class NodeUnavailable(MelonError):
    code, status = "node_unavailable", 503


class NodeTimeout(NodeUnavailable):
    """Connected, but the node did not answer in time (busy); the request may still take effect."""

    code = "node_timeout"


class NodeRequestFailed(MelonError):
    """A node's helper refused a request; each of its error codes (`remote.protocol.ErrorCode`)
    comes back as the subclass named for it, rebuilt by `node_error`. The codes are spelled out
    rather than imported, so that the CLIs never load `enum` for them (tests/unit/test_wire.py
    checks they match)."""

    code, status = "node_failed", 502
    node_code = "internal"


class NodeBadRequest(NodeRequestFailed):
    node_code = "bad_request"


class NoSuchUser(NodeRequestFailed):
    node_code = "no_such_user"


class NoSuchJob(NodeRequestFailed):
    """The node has no such run: its start never arrived."""

    node_code = "no_such_job"


class LaunchFailed(NodeRequestFailed):
    node_code = "launch_failed"


class NoOutput(NotFound, NodeRequestFailed):
    """The job's output file is not there to show, or not the job's to show: a 404."""

    node_code = "no_output"


class StaleEpoch(NodeRequestFailed):
    """The node has heard a newer melond's epoch (remote/fence.py): this one no longer leads."""

    node_code = "stale_epoch"


NODE_ERRORS: dict[str, type[NodeRequestFailed]] = {
    cls.node_code: cls for cls in (NodeRequestFailed, NodeBadRequest, NoSuchUser, NoSuchJob, LaunchFailed, NoOutput,
                                   StaleEpoch)
}


def node_error(node: str, error: dict) -> NodeRequestFailed:
    """The typed exception for a helper's `error {code, message}`; an unknown code is a plain failure."""
    cls = NODE_ERRORS.get(str(error.get("code")), NodeRequestFailed)
    return cls(f"node {node}: {error.get('message') or 'no message'}")


class Unreachable(MelonError):
    """The client cannot reach melond at all."""

    code, status = "unreachable", 503


class Internal(MelonError):
    code, status = "internal", 500


class NotLeader(MelonError):
    """This melond does not lead (it stands by, or it has just lost its lease): nothing was done.
    `leader`: where the melond that leads serves, where known; a client with several endpoints
    (MELON_API=a,b) tries the next."""

    code, status = "not_leader", 503

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


ERRORS: dict[str, type[MelonError]] = {
    cls.code: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RequestTimeout, TooLarge,
                              RateLimited, DiskFull, TooManyConnections, NodeUnavailable, NodeTimeout,
                              NodeRequestFailed, Unreachable, Internal, NotLeader)
}


def from_wire(body: dict, status: int) -> MelonError:
    """Rebuild the typed error a server sent."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return Internal(f"melond answered HTTP {status} without an error body")
    return ERRORS.get(err.get("code", ""), MelonError)(err.get("message", "unknown error"))
