"""Slow clients (slowloris) against a real melond, on its Unix socket and on TCP, with real sockets.

A client holds connections open by sending a request's head a byte at a time, or a body it never
finishes; melond caps the connections of each client (a uid on the socket, an address on TCP),
closes a head that is late (header_timeout) and answers a late body with a 408 (body_timeout),
while other clients, and the event stream, are served as usual. The limits are short here
(`[limits]` in each test's inventory) so the tests are quick; every read waits at most WAIT s.
"""
from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from melon_cli.client import parse_reply
from conftest import Melon, needs_root, wait_for

CAP = 4
CAP_INVENTORY = f"""
[limits]
connections_per_client = {CAP}
header_timeout = 120
"""
TIMEOUT = 1.0
TIMEOUT_INVENTORY = f"""
[limits]
header_timeout = {TIMEOUT}
body_timeout = {TIMEOUT}
"""
WAIT = 20.0  # the most any read here waits: far past the short timeouts, so today's melond fails, not hangs
PARTIAL_HEAD = b"GET /api/v1/jobs HTTP/1.1\r\nHost: melond\r\n"  # no blank line: the head never ends


def whole(path: str, *headers: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: melond\r\nConnection: close\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode()


def connect(melon: Melon, transport: str, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection to melond: its Unix socket, or its TCP port from the loopback address `source`."""
    if transport == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        try:
            sock.connect(str(melon.state / "melond.sock"))
        except BaseException:
            sock.close()
            raise
        return sock
    port = int(melon.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))


def until_closed(sock: socket.socket) -> bytes:
    """Everything melond sends until it closes the connection; fails if it is still open after WAIT s."""
    chunks = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    pytest.fail(f"melond kept the connection open for {WAIT:g} s; it sent {b''.join(chunks)[:300]!r}")


def trickle(sock: socket.socket, data: bytes, every: float = 0.2) -> bytes:
    """Send `data` a byte every `every` s, as a slowloris does, until melond answers and closes."""
    deadline = time.monotonic() + WAIT
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return until_closed(sock)
        if select.select([sock], [], [], every)[0]:
            return until_closed(sock)
    pytest.fail(f"melond was still reading a byte every {every:g} s after {WAIT:g} s")


def error_of(data: bytes, status: int) -> dict:
    got, body = parse_reply(data)
    assert got == status, data[:500]
    reply = json.loads(body)
    assert set(reply) == {"error"} and set(reply["error"]) == {"code", "message"}, reply
    return reply["error"]


@contextlib.contextmanager
def slow_connections(melon: Melon, transport: str, count: int, source: str = "127.0.0.1") -> Iterator[list]:
    """`count` connections that each sent part of a head and nothing more, closed at the end."""
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(count):
            sock = stack.enter_context(connect(melon, transport, source))
            sock.sendall(PARTIAL_HEAD)
            held.append(sock)
        yield held


@needs_root
def test_a_uid_over_its_connection_cap_is_refused_while_other_users_are_served(melon_factory) -> None:
    melon = melon_factory(inventory=CAP_INVENTORY)
    with slow_connections(melon, "unix", CAP):
        with connect(melon, "unix") as extra:
            extra.sendall(whole("/api/v1/whoami"))
            error = error_of(until_closed(extra), 503)
        assert error["code"] == "too_many_connections"
        assert all(w in error["message"] for w in ("uid 0", f"{CAP} connections", "[limits] connections_per_client"))
        refused = melon.run("mqueue", check=False)  # root's own commands wait for root's connections
        assert refused.returncode != 0 and "connections_per_client" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        melon.run("mqueue", user="nobody")  # another user is served meanwhile
        melon.run("minfo", user="nobody")
    wait_for(lambda: melon.run("mqueue", check=False).returncode == 0, what="root to be served once its slow "
             "connections closed")


def test_an_address_over_its_connection_cap_is_refused_while_other_addresses_are_served(melon_factory) -> None:
    melon = melon_factory(tcp=True, inventory=CAP_INVENTORY)
    with slow_connections(melon, "tcp", CAP, source="127.0.0.1"):
        with connect(melon, "tcp", source="127.0.0.1") as extra:
            extra.sendall(whole("/api/v1/openapi.json"))
            error = error_of(until_closed(extra), 503)
        assert error["code"] == "too_many_connections"
        assert "address 127.0.0.1" in error["message"] and "connections_per_client" in error["message"]
        with connect(melon, "tcp", source="127.0.0.2") as other:  # another address is served meanwhile
            other.sendall(whole("/api/v1/openapi.json"))
            assert parse_reply(until_closed(other))[0] == 200
        melon.run("mqueue")  # and so is the Unix socket, whose clients are uids
    with connect(melon, "tcp", source="127.0.0.1") as again:
        again.sendall(whole("/api/v1/openapi.json"))
        assert parse_reply(until_closed(again))[0] == 200


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_head_sent_a_byte_at_a_time_is_cut_off_after_header_timeout(melon_factory, transport: str) -> None:
    melon = melon_factory(tcp=True, inventory=TIMEOUT_INVENTORY)
    with connect(melon, transport) as slow:
        start = time.monotonic()
        data = trickle(slow, PARTIAL_HEAD + b"X-Slow: " + b"a" * 1000)
        assert time.monotonic() - start >= TIMEOUT  # bytes kept coming: the head's clock does not restart
    error = error_of(data, 408)
    assert error["code"] == "request_timeout" and "[limits] header_timeout" in error["message"]
    with connect(melon, transport) as idle:  # a connection that sends nothing is closed without a word
        assert until_closed(idle) == b""
    with connect(melon, transport) as fine:  # and a whole request is answered as ever
        fine.sendall(whole("/api/v1/openapi.json"))
        assert parse_reply(until_closed(fine))[0] == 200


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_body_never_finished_gets_a_408_after_body_timeout(melon_factory, transport: str) -> None:
    melon = melon_factory(tcp=True, inventory=TIMEOUT_INVENTORY)
    token = f"Authorization: Bearer {melon.token()}\r\n" if transport == "tcp" else ""
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: melond\r\n{token}Content-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n").encode()
    with connect(melon, transport) as slow:
        slow.sendall(head)
        data = trickle(slow, b'{"script": "#!/bin/sh\\n' + b"#" * 1000)
    error = error_of(data, 408)
    assert error["code"] == "request_timeout" and "[limits] body_timeout" in error["message"]
    assert melon.jobs("--all") == []  # nothing was submitted
    assert melon.submit("--wrap", "true")  # and a whole one is


def test_the_event_stream_stays_open_past_the_timeouts_that_cut_off_a_slow_head(melon_factory) -> None:
    melon = melon_factory(inventory=TIMEOUT_INVENTORY)
    with connect(melon, "unix") as stream, connect(melon, "unix") as slow:
        stream.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: melond\r\n\r\n")
        opened = time.monotonic()
        slow.sendall(PARTIAL_HEAD)
        assert parse_reply(until_closed(slow))[0] == 408
        time.sleep(max(0.0, opened + 3 * TIMEOUT - time.monotonic()))  # past the head's and the body's times
        job_id = melon.submit("--wrap", "true")
        seen = b""
        deadline = time.monotonic() + WAIT
        while f'"job_id": {job_id}'.encode() not in seen and time.monotonic() < deadline:
            chunk = stream.recv(65536)
            assert chunk, f"melond closed the event stream after {time.monotonic() - opened:.1f} s: {seen[-300:]!r}"
            seen += chunk
        assert b"event: job" in seen and f'"job_id": {job_id}'.encode() in seen, seen[-500:]
