"""Just enough D-Bus to ask systemd for a transient scope, without a process per job.

Standard library only: streamed to compute nodes with the helper. `systemd-run
--scope` costs a process, a bus connection and its authentication for every
job (about 8 ms of CPU on the test machine, as much again as systemd's own
work). The supervisor instead keeps one connection to systemd's private socket
(`/run/systemd/private`, root only, no bus daemon in between, as systemctl
uses as root) and sends `StartTransientUnit` there itself, the same call
systemd-run makes. Calls are sent without waiting; replies are matched to
their serial number when the socket is readable.

Only what that call needs is here: little-endian marshalling of the types
y u t s o g v a ( ), and reading a reply's header and an error's message.
"""
from __future__ import annotations

import os
import socket
import struct

PRIVATE_SOCKET = "/run/systemd/private"
METHOD_CALL, METHOD_RETURN, ERROR = 1, 2, 3
_ALIGN = {"y": 1, "b": 4, "u": 4, "i": 4, "t": 8, "x": 8, "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8}
_FIXED = {"y": "B", "b": "I", "u": "I", "i": "i", "t": "Q", "x": "q"}


class BusError(Exception):
    """The bus refused us, or a call failed (then `name` is the D-Bus error name)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _split(sig: str) -> list[str]:
    """A signature's complete types: "sa(sv)u" -> ["s", "a(sv)", "u"]."""
    out, i = [], 0
    while i < len(sig):
        j = _end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _end(sig: str, i: int) -> int:
    if sig[i] == "a":
        return _end(sig, i + 1)
    if sig[i] == "(":
        depth = 0
        for j in range(i, len(sig)):
            depth += {"(": 1, ")": -1}.get(sig[j], 0)
            if depth == 0:
                return j + 1
        raise ValueError(f"unbalanced signature {sig!r}")
    return i + 1


def marshal(sig: str, values: list, buf: bytearray | None = None) -> bytearray:
    """Append values of the complete types in `sig` to `buf` (offsets count from its start)."""
    buf = bytearray() if buf is None else buf
    for t, v in zip(_split(sig), values, strict=True):
        _put(t, v, buf)
    return buf


def _put(t: str, v: object, buf: bytearray) -> None:
    c = t[0]
    _pad(buf, _ALIGN[c])
    if c in _FIXED:
        buf.extend(struct.pack("<" + _FIXED[c], v))
    elif c in "so":
        data = v.encode()
        buf.extend(struct.pack("<I", len(data)) + data + b"\0")
    elif c == "g":
        data = v.encode()
        buf.extend(bytes([len(data)]) + data + b"\0")
    elif c == "v":
        inner, value = v
        _put("g", inner, buf)
        _put(inner, value, buf)
    elif c == "a":
        at = len(buf)
        buf.extend(b"\0\0\0\0")
        _pad(buf, _ALIGN[t[1]])
        start = len(buf)
        for item in v:
            _put(t[1:], item, buf)
        struct.pack_into("<I", buf, at, len(buf) - start)
    elif c == "(":
        marshal(t[1:-1], list(v), buf)
    else:
        raise ValueError(f"type {t!r} is not supported")


class _Reader:
    """Reads the few types found in reply headers and error bodies."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def take(self, t: str) -> object:
        c = t[0]
        self.align(_ALIGN[c])
        if c in _FIXED:
            fmt = "<" + _FIXED[c]
            (v,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return v
        if c in "so":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            v = self.data[self.pos + 4:self.pos + 4 + n].decode("utf-8", "replace")
            self.pos += 4 + n + 1
            return v
        if c == "g":
            n = self.data[self.pos]
            v = self.data[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += 1 + n + 1
            return v
        if c == "v":
            return self.take(str(self.take("g")))
        if c == "a":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            self.align(_ALIGN[t[1]])
            end, items = self.pos + n, []
            while self.pos < end:
                items.append(self.take(t[1:]))
            return items
        if c == "(":
            return tuple(self.take(x) for x in _split(t[1:-1]))
        raise ValueError(f"type {t!r} is not supported")


def message(serial: int, path: str, interface: str, member: str, sig: str, args: list,
            destination: str = "org.freedesktop.systemd1") -> bytes:
    """A method call, ready to send."""
    body = marshal(sig, args) if sig else bytearray()
    fields = [(1, ("o", path)), (2, ("s", interface)), (3, ("s", member)), (6, ("s", destination))]
    if sig:
        fields.append((8, ("g", sig)))
    head = marshal("yyyyuua(yv)", [ord("l"), METHOD_CALL, 0, 1, len(body), serial, fields])
    _pad(head, 8)
    return bytes(head + body)


def parse(data: bytes) -> tuple[int, dict[int, object], bytes, int] | None:
    """(type, header fields, body, total length) of the first whole message in data, or None."""
    if len(data) < 16:
        return None
    if data[:1] != b"l":
        raise BusError("systemd answered in big-endian, which this client does not read")
    body_len, _serial, fields_len = struct.unpack_from("<III", data, 4)
    head_end = 16 + fields_len
    head_end += -head_end % 8
    total = head_end + body_len
    if len(data) < total:
        return None
    r = _Reader(data, 12)
    fields = dict(r.take("a(yv)"))
    return data[1], fields, data[head_end:total], total


class SystemdBus:
    """One authenticated connection to systemd's private socket, used without blocking."""

    def __init__(self, path: str = PRIVATE_SOCKET, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
            self._auth()
        except OSError as exc:
            self.sock.close()
            raise BusError(f"cannot reach systemd at {path}: {exc}") from None
        except BusError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.serial = 0
        self.inbox = b""

    def _auth(self) -> None:
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = self.sock.recv(256)
            if not chunk:
                raise BusError("systemd closed the connection during authentication")
            line += chunk
        if not line.startswith(b"OK "):
            raise BusError(f"systemd refused authentication: {line.strip().decode(errors='replace')}")
        self.sock.sendall(b"BEGIN\r\n")

    def fileno(self) -> int:
        return self.sock.fileno()

    def start_scope(self, unit: str, pids: list[int], props: list[tuple[str, tuple[str, object]]]) -> int:
        """Send StartTransientUnit for a scope holding `pids`; return the call's serial."""
        self.serial += 1
        msg = message(self.serial, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                      "StartTransientUnit", "ssa(sv)a(sa(sv))",
                      [unit, "fail", [("PIDs", ("au", pids)), *props], []])
        self.sock.setblocking(True)  # a call is small; the kernel buffer takes it at once
        try:
            self.sock.sendall(msg)
        finally:
            self.sock.setblocking(False)
        return self.serial

    def replies(self) -> list[tuple[int, str | None]]:
        """Read what has arrived: (serial answered, error text or None) per reply."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return []
        if not chunk:
            raise BusError("systemd closed the connection")
        self.inbox += chunk
        out = []
        while (msg := parse(self.inbox)) is not None:
            kind, fields, body, total = msg
            self.inbox = self.inbox[total:]
            if kind == METHOD_RETURN:
                out.append((int(fields.get(5, 0)), None))
            elif kind == ERROR:
                text = _Reader(body).take("s") if fields.get(8, "").startswith("s") else ""
                out.append((int(fields.get(5, 0)), f"{fields.get(4, 'error')}: {text}"))
        return out

    def close(self) -> None:
        self.sock.close()
