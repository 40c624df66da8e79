"""The API's connections: a cap per client, and deadlines to receive each request.

aiohttp itself times nothing while a request arrives: a client that sends a header byte every few
seconds, or a Content-Length it never fills, keeps its connection for as long as it likes, and
enough such connections hold the API from everyone. So each connection is counted against its
client (`melond.sched.connections`) and watched by one clock:

- the next request's head (request line and headers) must arrive within `header_timeout` of the
  connection's opening, or of the moment its previous request was answered. An idle keep-alive
  connection is then closed quietly; one that sent part of a head gets a 408 first.
- a request's body must arrive within `body_timeout` of its head. A handler still waiting for it
  gets RequestTimeout, answered as a 408 in the error shape, and the connection closes after it.

Only receiving is timed: while the app serves a request (the event stream, a long poll), and while
a reply goes out, the clock is stopped. The hook is a subclass of aiohttp's RequestHandler (the
protocol of one connection, made by `protocol_factory` for the daemon's listeners) that overrides
only the asyncio protocol methods, plus the `watch` middleware, which tells the connection when a
request enters and leaves the app.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from melond.api.auth import peer_uid
from melond.errors import MelonError
from melond.sched import connections
from melond.sched.connections import ClientSlots, ConnectionLimits

log = logging.getLogger("melond.api")
REFUSAL_LINGER = 1.0  # seconds a refused connection stays open, reading, so its client reads the 503, not a reset


def client_of(transport: asyncio.BaseTransport) -> str:
    """Whom a connection counts against: the uid on the Unix socket (SO_PEERCRED), else the peer's address."""
    uid = peer_uid(transport)
    if uid is not None:
        return f"uid {uid}"
    peer = transport.get_extra_info("peername")
    return f"address {peer[0]}" if isinstance(peer, tuple) and peer else "an unknown address"


def raw_reply(error: MelonError, **headers: str) -> bytes:
    """A whole HTTP reply in the API's error shape, for a connection no request handler serves."""
    body = json.dumps(error.to_wire()).encode()
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
             "Content-Type: application/json; charset=utf-8", f"Content-Length: {len(body)}", "Connection: close",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection(RequestHandler):
    """One API connection: aiohttp's handler, counted against its client and watched by the clock."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits,
                 slots: ClientSlots, **kwargs) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.limits = limits
        self.slots = slots
        self.client: str | None = None  # set once counted
        self.refused = False
        self.cut_short = False  # the body timed out: close once the reply is out
        self._clock: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None  # the one in the app now (aiohttp serves them in turn)
        self._heard = False  # bytes came while no request was in the app: part of the next head
        self._draining = False  # the last request left body unread: what comes now is not a head

    # asyncio's protocol methods

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        client = client_of(transport)
        if not self.slots.take(client):
            self._refuse(transport, client)
            return
        self.client = client
        super().connection_made(transport)
        self._start_clock()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # read and dropped, so that closing sends no reset
        if self._request is None:
            self._heard = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        if self.client is not None:
            self.slots.give(self.client)
            self.client = None
        super().connection_lost(exc)

    # what the `watch` middleware tells it

    def request_started(self, request: web.BaseRequest) -> None:
        self._stop_clock()
        self._request = request
        if not request.content.is_eof():
            self._clock = asyncio.get_running_loop().call_later(self.limits.body_timeout, self._body_late)

    def request_finished(self, request: web.BaseRequest) -> None:
        self._request = None
        self._draining = not request.content.is_eof()
        self._start_clock()

    # the clock

    def _start_clock(self) -> None:
        self._stop_clock()
        self._heard = False
        if self.transport is not None:  # not once the connection is gone (a request ending after its client left)
            self._clock = asyncio.get_running_loop().call_later(self.limits.header_timeout, self._head_late)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _head_late(self) -> None:
        self._clock = None
        transport = self.transport
        if transport is None or self._request is not None:
            return
        if transport.get_write_buffer_size():
            self._start_clock()  # the last reply is still going out: it is not the client's turn yet
            return
        if self._heard and not self._draining:
            transport.write(raw_reply(connections.head_late(self.limits.header_timeout)))
            log.info("closed a connection whose request head did not arrive in time",
                     extra={"client": self.client, "header_timeout": self.limits.header_timeout})
        self.force_close()

    def _body_late(self) -> None:
        self._clock = None
        request = self._request
        if request is None or request.content.is_eof():
            return
        self.cut_short = True
        request.content.set_exception(connections.body_late(self.limits.body_timeout))
        log.info("a request's body did not arrive in time", extra={
            "client": self.client, "path": request.path, "body_timeout": self.limits.body_timeout})

    def _refuse(self, transport: asyncio.BaseTransport, client: str) -> None:
        """Answer 503 before any request and close soon after: the client's other connections are its own."""
        self.refused = True
        transport.write(raw_reply(connections.too_many(client, self.slots.cap), Retry_After="1"))
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.close)
        if self.slots.first_refusal(client):
            log.warning("refusing connections over the per-client cap", extra={
                "client": client, "connections_per_client": self.slots.cap})


@web.middleware
async def watch(request: web.Request, handler):
    """Stop a connection's clock while the app serves a request; close it after a body that timed out."""
    conn = request.protocol
    if not isinstance(conn, Connection):
        return await handler(request)  # a listener without the guard (a test's own runner): nothing to watch
    conn.request_started(request)
    try:
        response = await handler(request)
        if conn.cut_short:
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            conn.force_close()  # after the 408: the rest of that body is not worth reading
        return response
    finally:
        conn.request_finished(request)


def protocol_factory(server: web.Server, limits: ConnectionLimits) -> Callable[[], Connection]:
    """The protocol factory for every API listener: one count of connections per client across them."""
    slots = ClientSlots(limits.connections_per_client)
    loop = asyncio.get_running_loop()
    return lambda: Connection(server, loop=loop, limits=limits, slots=slots, access_log=None)
