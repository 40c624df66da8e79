"""The CLIs' own HTTP and JSON plumbing (cli.client, cli.wirejson) against the standard library's."""
from __future__ import annotations

import json
from urllib.parse import quote as std_quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melon_cli import wirejson
from melon_cli.client import BadReply, parse_reply, quote, split_url
from melond.errors import MelonError

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@given(JSON)
def test_json_round_trips_as_the_json_package_does(value: object) -> None:
    text = wirejson.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert wirejson.loads(text) == json.loads(text) == value
    assert wirejson.loads(f" \n{json.dumps(value, indent=2)}\n") == value


@pytest.mark.parametrize("text", ["", "   ", "{", "[1,]", "{} x", "nul", "'a'"])
def test_what_is_not_one_json_document_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        wirejson.loads(text)


@given(st.text())
def test_quote_is_urllib_quote_with_nothing_safe(text: str) -> None:
    assert quote(text) == std_quote(text, safe="")


@pytest.mark.parametrize("url, parts", [
    ("http://[::1]:8080", ("http", "::1", 8080)),
    ("http://127.0.0.1:8080/", ("http", "127.0.0.1", 8080)),
    ("https://login1", ("https", "login1", 443)),
    ("http://login1", ("http", "login1", 80)),
])
def test_endpoints(url: str, parts: tuple) -> None:
    assert split_url(url) == parts


@pytest.mark.parametrize("url", ["http://", "http://h:x", "http://[::1]:8o"])
def test_bad_endpoints_are_named(url: str) -> None:
    with pytest.raises(MelonError, match="none of unix:/path"):
        split_url(url)


def test_replies_plain_sized_and_chunked() -> None:
    assert parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") == (200, b"{}")
    assert parse_reply(b"HTTP/1.1 404 Not Found\r\nContent-Type: x\r\n\r\n{\"a\":1}") == (404, b'{"a":1}')
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n"
    assert parse_reply(chunked) == (200, b'{"a":1}')
    for bad in (b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}",
                b"\x15\x03\x01\x00\x02\x02\x50"):
        with pytest.raises(BadReply):
            parse_reply(bad)


class _Pieces:
    """A stand-in socket (a mock, named so: the parsing under test needs only recv) that hands
    out the reply in the pieces given, as a network splits it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def recv(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8), st.lists(st.integers(1, 40), min_size=1))
def test_a_chunked_body_is_read_piece_by_piece_however_it_is_split(chunks: list[bytes], cuts: list[int]) -> None:
    from melon_cli.client import _chunks
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    pieces, at = [], 0
    for n, cut in enumerate(cuts * (len(body) // sum(cuts) + 1)):
        if at >= len(body):
            break
        pieces.append(body[at:at + cut])
        at += cut
    first, rest = pieces[0], pieces[1:]
    assert b"".join(_chunks(_Pieces(rest), first)) == b"".join(chunks)


def test_a_chunked_body_cut_short_is_a_bad_reply() -> None:
    from melon_cli.client import _chunks
    with pytest.raises(BadReply):
        list(_chunks(_Pieces([b"lo"]), b"5\r\nhel"))


class _Endpoint:
    """A Unix socket that answers each connection as told (a stand-in for melond, for the client's
    own rules): `reply` bytes after reading the request, or None to close without an answer."""

    def __init__(self, path: str, reply: bytes | None) -> None:
        import socket
        import threading
        self.path, self.reply, self.requests = path, reply, 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                if self.reply is not None:
                    conn.sendall(self.reply)

    def close(self) -> None:
        import socket
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def _http(status: int, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(data)) + data


def test_several_endpoints_find_the_leader_and_never_repeat_a_change_that_may_be_done(tmp_path) -> None:
    from melon_cli.client import Client
    from melond.errors import Unreachable
    standby = _Endpoint(str(tmp_path / "standby"), _http(503, {"error": {"code": "not_leader", "message": "s"}}))
    leader = _Endpoint(str(tmp_path / "leader"), _http(200, {"ok": 1}))
    lost = _Endpoint(str(tmp_path / "lost"), None)  # takes the request, then closes: its answer is lost
    try:
        gone = f"unix:{tmp_path / 'gone'}"  # nothing listens: the request never left
        both = Client.from_environment(f"{gone},unix:{standby.path},unix:{leader.path}")
        assert both.call("POST", "/jobs", {"x": 1}) == {"ok": 1}  # past one unreachable and one standing by
        assert (standby.requests, leader.requests) == (1, 1)
        assert both.endpoint == f"unix:{leader.path}"
        assert both.call("GET", "/jobs") == {"ok": 1} and standby.requests == 1  # the leader is asked first now
        after_lost = Client.from_environment(f"unix:{lost.path},unix:{leader.path}")
        with pytest.raises(Unreachable, match="lost the connection"):
            after_lost.call("POST", "/jobs", {"x": 1})  # it may have been done: told, not sent again
        assert (lost.requests, leader.requests) == (1, 2)
        assert after_lost.call("GET", "/jobs") == {"ok": 1}  # a read is asked again of the next
        assert leader.requests == 3
    finally:
        for e in (standby, leader, lost):
            e.close()
