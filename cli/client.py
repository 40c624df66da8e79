"""A small HTTP/1.1 client for melond's API over a Unix socket or TCP.

A command's whole run is a few milliseconds of work, so this imports only what it uses: `_socket`
(the `socket` module's enum set-up alone costs more than a request), the C JSON codec
(`cli.wirejson`), and `ssl` only for https endpoints. One request per connection
(`Connection: close`), as a CLI makes one or a few.
"""
from __future__ import annotations

import os

import _socket

from melon_cli import wirejson
from melond.errors import MelonError, NotLeader, Unreachable, from_wire
from melond.files import check_private

START_HINT = ("Start it with `melond` (as root for a shared service, or as yourself for a private one; "
              "`make demo` shows one), or point --api-endpoint or MELON_API at a running melond.")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
MAX_REPLY = 256 * 1024 * 1024  # a listing of a million jobs is well under this


class BadReply(Exception):
    """The peer's bytes are not an HTTP reply."""


def quote(text: str) -> str:
    """Percent-encoding for a query value (what urllib.parse.quote(text, safe="") gives)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def query_string(query: dict) -> str:
    return "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in query.items() if v is not None)


def split_url(endpoint: str) -> tuple[str, str, int]:
    """`http://host:port` -> (scheme, host, port); IPv6 hosts in brackets, `http://[::1]:8080`."""
    scheme, sep, rest = endpoint.partition("://")
    netloc = rest.split("/", 1)[0]
    if netloc.startswith("["):
        host, _, tail = netloc[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if not sep or not host or (port_text and not (port_text.isascii() and port_text.isdigit())):
        raise MelonError(f"endpoint {endpoint!r} is none of unix:/path, http://host:port, https://host:port")
    return scheme, host, int(port_text) if port_text else (443 if scheme == "https" else 80)


def parse_reply(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole HTTP/1.x reply read to its end."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadReply("not an HTTP reply")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _unchunk(body)
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if len(body) < length:
            raise BadReply("the reply ended early")
        body = body[:length]
    return int(parts[1]), body


def _unchunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise BadReply("a chunked reply ended early")
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 4 + size


def _chunks(sock, data: bytes):
    """A chunked body's pieces as they arrive, `data` being what came with the headers."""
    while True:
        data = _read_to(sock, data, b"\r\n", "a chunked reply ended early")
        size_text, _, data = data.partition(b"\r\n")
        size = int(size_text.split(b";")[0], 16)
        if size == 0:
            return
        while len(data) < size + 2:
            more = sock.recv(max(65536, size + 2 - len(data)))
            if not more:
                raise BadReply("a chunked reply ended early")
            data += more
        yield data[:size]
        data = data[size + 2:]


def _read_to(sock, data: bytes, marker: bytes, early: str) -> bytes:
    """`data` and what more comes until it holds `marker`; BadReply(early) if the reply ends first."""
    while marker not in data:
        more = sock.recv(65536)
        if not more:
            raise BadReply(early)
        data += more
    return data


def default_token_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "melon", "token")


def token_file() -> str:
    """Where the CLIs keep a token: MELON_TOKEN_FILE, else ~/.config/melon/token."""
    return os.environ.get("MELON_TOKEN_FILE") or default_token_file()


def load_token() -> str | None:
    """MELON_TOKEN, else the token file's content (refused if others may read it); None if neither."""
    if os.environ.get("MELON_TOKEN"):
        return os.environ["MELON_TOKEN"].strip()
    path = token_file()
    if not os.path.exists(path):
        if os.environ.get("MELON_TOKEN_FILE"):
            raise MelonError(f"MELON_TOKEN_FILE is {path}, which does not exist; "
                             f"create it with `mtoken create --save` on melond's machine")
        return None
    check_private(path)
    with open(path) as f:
        return f.read().strip() or None


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


class Client:
    """One endpoint: `unix:/path/melond.sock`, `http://host:port` or `https://host:port`.

    A token goes only to http(s) endpoints: on the socket the kernel says who we are.
    `ca_file` verifies a melond whose certificate no system CA signed (melond --gen-cert).
    """

    def __init__(self, endpoint: str, timeout: float = 60.0, token: str | None = None,
                 ca_file: str | None = None, fallback: str | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.header = b""
        if endpoint.startswith("unix:"):
            paths = [endpoint[5:]] + ([fallback[5:]] if fallback and fallback.startswith("unix:") else [])
            self._connect = lambda t: self._unix_first(paths, t)
            return
        if not is_tcp(endpoint):
            raise MelonError(f"endpoint {endpoint!r} is none of unix:/path, http://host:port, https://host:port")
        scheme, host, port = split_url(endpoint)
        if token:
            self.header = f"Authorization: Bearer {token}\r\n".encode()
        if scheme == "https":
            self._connect = lambda t: self._tls(host, port, ca_file, t)
        else:
            self._connect = lambda t: _tcp(host, port, t)

    @classmethod
    def from_environment(cls, endpoint: str) -> Client | Failover:
        """A client with the token (MELON_TOKEN / token file) and MELON_CA_FILE, for TCP endpoints;
        for several endpoints (`a,b`: two melonds over one database), one that finds the leader."""
        if "," in endpoint:
            return Failover([cls.from_environment(e.strip()) for e in endpoint.split(",") if e.strip()])
        if not is_tcp(endpoint):
            return cls(endpoint)
        return cls(endpoint, token=load_token(), ca_file=os.environ.get("MELON_CA_FILE") or None)

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
             timeout: float | None = None) -> dict:
        """One request; the typed MelonError the server sent, or Unreachable."""
        wait = timeout or self.timeout
        try:
            sock = self._send(method, path, body, query, wait)
            try:
                status, raw = parse_reply(_read_all(sock))
            finally:
                sock.close()
        except (OSError, BadReply, ValueError) as exc:
            raise self._unreachable(exc, wait) from None
        return self._payload(status, raw)

    def lines(self, method: str, path: str, body: dict | None = None):
        """A reply of JSON lines, each as it comes (a streamed answer, however long it is quiet)."""
        try:
            sock = self._send(method, path, body, None, self.timeout)
        except (OSError, BadReply, ValueError) as exc:
            raise self._unreachable(exc, self.timeout) from None
        try:
            data = _read_to(sock, b"", b"\r\n\r\n", "the reply ended before its headers")
            head, _, data = data.partition(b"\r\n\r\n")
            if b"transfer-encoding: chunked" not in head.lower():
                status, raw = parse_reply(head + b"\r\n\r\n" + data + _read_all(sock))
                yield self._payload(status, raw)
                return
            sock.settimeout(None)
            pending = b""
            for piece in _chunks(sock, data):
                *whole, pending = (pending + piece).split(b"\n")
                for line in whole:
                    if line.strip():
                        yield wirejson.loads(line)
        except (OSError, BadReply, ValueError) as exc:
            raise self._unreachable(exc, self.timeout) from None
        finally:
            sock.close()

    def _send(self, method: str, path: str, body: dict | None, query: dict | None, wait: float):
        url = "/api/v1" + path + ("?" + query_string(query) if query else "")
        data = wirejson.dumps(body).encode() if body is not None else b""
        request = (f"{method} {url} HTTP/1.1\r\nHost: melond\r\nConnection: close\r\n".encode() + self.header
                   + (b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data) if data
                      else b"Content-Length: 0\r\n" if method == "POST" else b"") + b"\r\n" + data)
        try:
            sock = self._connect(wait)
        except OSError as exc:
            exc.melon_not_sent = True  # type: ignore[attr-defined] - Failover may try the next endpoint
            raise
        try:
            sock.sendall(request)
        except BaseException:
            sock.close()
            raise
        return sock

    def _payload(self, status: int, raw: bytes) -> dict:
        try:
            payload = wirejson.loads(raw) if raw else {}
        except ValueError:
            raise MelonError(f"melond at {self.endpoint} sent a non-JSON answer (HTTP {status})") from None
        if status >= 400:
            raise from_wire(payload, status)
        return payload

    def _unreachable(self, exc: Exception, wait: float) -> Unreachable:
        """A failure to reach melond, or of the connection, said with what to do; `not_sent`
        where no byte of the request left (nothing can have been done)."""
        unreachable = self._unreachable_text(exc, wait)
        unreachable.not_sent = getattr(exc, "melon_not_sent", False)  # type: ignore[attr-defined]
        return unreachable

    def _unreachable_text(self, exc: Exception, wait: float) -> Unreachable:
        if isinstance(exc, ConnectionRefusedError):
            if self.endpoint.startswith("unix:"):
                return Unreachable(f"cannot reach melond at {self.endpoint} ({exc.strerror}): the socket was left by a "
                                   f"melond that is no longer running. Start it again (`melond &`), or remove "
                                   f"{self.endpoint[5:]} to use the system melond, if there is one")
            return Unreachable(f"cannot reach melond at {self.endpoint} ({exc.strerror}). {START_HINT}")
        if isinstance(exc, FileNotFoundError):
            return Unreachable(f"cannot reach melond at {self.endpoint} ({exc.strerror}). {START_HINT}")
        if isinstance(exc, PermissionError):
            return Unreachable(f"not allowed to connect to {self.endpoint}; ask the administrator to make the "
                               f"socket accessible (melond sets mode 0666)")
        if isinstance(exc, TimeoutError):
            return Unreachable(f"melond at {self.endpoint} did not answer within {wait:g} s; it may be "
                               f"overloaded: try again, or ask its administrator")
        if isinstance(exc, _socket.gaierror):
            return Unreachable(f"cannot resolve the host of {self.endpoint}: {exc.strerror}")
        hint = " (if melond serves TLS there, use https://)" if self.endpoint.startswith("http://") else ""
        return Unreachable(f"lost the connection to melond at {self.endpoint}: {exc}{hint}")

    def _unix_first(self, paths: list[str], timeout: float) -> _socket.socket:
        """The first socket that accepts. One that refuses was left by a melond that died (the
        user's own, most often): the next one, the system melond's, serves instead."""
        for n, path in enumerate(paths):
            try:
                sock = _unix(path, timeout)
            except ConnectionRefusedError:
                if n + 1 == len(paths):
                    raise
                continue
            self.endpoint = "unix:" + path
            return sock
        raise FileNotFoundError(paths[0])

    def _tls(self, host: str, port: int, ca_file: str | None, timeout: float):
        import socket
        import ssl
        context = ssl.create_default_context(cafile=ca_file)
        sock = socket.create_connection((host, port), timeout)
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            sock.close()
            raise Unreachable(f"TLS with melond at {self.endpoint} failed: {exc}. If melond uses its own certificate "
                              f"(melond --gen-cert), point MELON_CA_FILE at that certificate") from None
        except BaseException:
            sock.close()
            raise


class Failover:
    """Several endpoints of melonds sharing one database (MELON_API=a,b), one leading: each
    request goes to the one that answered last, and moves on to the next where an endpoint
    stands by (`not_leader`) or cannot be connected to, both of which mean nothing was done.
    A change whose answer was lost after it left is told, not made again (it may have been
    done); a read (GET) is asked again of the next."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self._at = 0

    def __getattr__(self, name: str):  # endpoint, header, timeout: the current endpoint's
        return getattr(self.clients[self._at], name)

    def _each(self):
        n = len(self.clients)
        for step in range(n):
            yield (self._at + step) % n

    def call(self, method: str, *args, **kwargs) -> dict:
        return self._first(lambda c: c.call(method, *args, **kwargs), method == "GET")

    def lines(self, method: str, *args, **kwargs):
        last: MelonError = MelonError("no endpoint given")
        for i in self._each():
            gen = self.clients[i].lines(method, *args, **kwargs)
            try:
                first = next(gen)
            except StopIteration:
                self._at = i
                return
            except (NotLeader, Unreachable) as exc:
                if not self._next_may_serve(exc, method == "GET"):
                    raise
                last = exc
                continue
            self._at = i
            yield first
            yield from gen
            return
        raise last

    def _first(self, ask, read: bool):
        last: MelonError = MelonError("no endpoint given")
        for i in self._each():
            try:
                result = ask(self.clients[i])
            except (NotLeader, Unreachable) as exc:
                if not self._next_may_serve(exc, read):
                    raise
                last = exc
                continue
            self._at = i
            return result
        raise last

    @staticmethod
    def _next_may_serve(exc: MelonError, read: bool) -> bool:
        return isinstance(exc, NotLeader) or read or getattr(exc, "not_sent", False)


def _unix(path: str, timeout: float) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _tcp(host: str, port: int, timeout: float) -> _socket.socket:
    """The first address of `host` that accepts, as socket.create_connection tries them."""
    error: OSError | None = None
    for family, kind, proto, _name, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host} has no address")


def _read_all(sock) -> bytes:
    chunks, size = [], 0
    while chunk := sock.recv(262144):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY:
            raise BadReply(f"the reply is over {MAX_REPLY // (1024 * 1024)} MiB")
    return b"".join(chunks)
