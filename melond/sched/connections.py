"""How many API connections each client may hold, and the words of the refusals: pure, no I/O.

A connection that never finishes sending its request holds a slot of melond's until something
closes it, so one client opening many of them would hold the API (and the Unix socket behind it)
from everyone else. Each client, the uid the kernel names on the Unix socket or the address on
TCP, has its own count with a cap, so a client over its cap is refused while others are served.
The deadlines to receive a request live in `[limits]` beside the cap; `melond.api.guard` runs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from melond.errors import RequestTimeout, TooManyConnections

LIMITS_HINT = "ask the operator to raise it if this is ordinary use"


class ConnectionLimits(Protocol):
    """The inventory's `[limits]` (melond.config.Limits holds the defaults); times in seconds."""

    header_timeout: float  # to receive a request's head, from the connection's opening or the last reply
    body_timeout: float  # to receive a request's body, from its head
    connections_per_client: int


@dataclass
class ClientSlots:
    """Open connections per client, each client at most `cap`."""

    cap: int
    _open: dict[str, int] = field(default_factory=dict)
    _refusing: set[str] = field(default_factory=set)  # refused since they last had no connection open

    def take(self, client: str) -> bool:
        """Count a new connection of `client`'s, or False if it already has `cap` open."""
        held = self._open.get(client, 0)
        if held >= self.cap:
            return False
        self._open[client] = held + 1
        return True

    def give(self, client: str) -> None:
        """A connection of `client`'s has closed."""
        held = self._open.get(client, 0) - 1
        if held > 0:
            self._open[client] = held
        else:
            self._open.pop(client, None)
            self._refusing.discard(client)

    def held(self, client: str) -> int:
        return self._open.get(client, 0)

    def first_refusal(self, client: str) -> bool:
        """True the first time `client` is refused since it last had no connection open: a client that
        keeps trying at its cap is logged once, however fast it closes and opens connections."""
        if client in self._refusing:
            return False
        self._refusing.add(client)
        return True


def too_many(client: str, cap: int) -> TooManyConnections:
    return TooManyConnections(
        f"{client} already has {cap:,} connections open to melond, the most one client may have "
        f"([limits] connections_per_client in melond's inventory); close some (or let them finish) and "
        f"retry, or {LIMITS_HINT}")


def head_late(seconds: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request's head (request line and headers) did not arrive within {seconds:g} s "
        f"([limits] header_timeout in melond's inventory); send it whole, or {LIMITS_HINT}")


def body_late(seconds: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request's body did not arrive within {seconds:g} s of its head "
        f"([limits] body_timeout in melond's inventory); send it whole, or {LIMITS_HINT}")
