"""A small HTTP client for melond's API over a Unix socket or TCP.

Standard library only (http.client), so every command starts fast.
"""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlencode, urlsplit

from melond.errors import MelonError, Unreachable, from_wire

START_HINT = ("Start it with `melond` (as root for a shared service, or as yourself for a private one; "
              "`make demo` shows one), or point -a/--api-endpoint or MELON_API at a running melond.")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """One endpoint: `unix:/path/melond.sock` or `http://host:port`."""

    def __init__(self, endpoint: str, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        if endpoint.startswith("unix:"):
            self._connect = lambda t: _UnixConnection(endpoint[5:], t)
        elif endpoint.startswith(("http://", "https://")):
            parts = urlsplit(endpoint)
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._connect = lambda t: cls(parts.hostname, parts.port, timeout=t)
        else:
            raise MelonError(f"endpoint {endpoint!r} is neither unix:/path nor http://host:port")

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
             timeout: float | None = None) -> dict:
        """One request; the typed MelonError the server sent, or Unreachable."""
        url = "/api/v1" + path + ("?" + urlencode({k: v for k, v in query.items() if v is not None}) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        conn = self._connect(timeout or self.timeout)
        try:
            conn.request(method, url, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unreachable(f"cannot reach melond at {self.endpoint} ({exc.strerror}). {START_HINT}") from None
        except PermissionError:
            raise Unreachable(f"not allowed to connect to {self.endpoint}; ask the administrator to make the "
                              f"socket accessible (melond sets mode 0666)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"lost the connection to melond at {self.endpoint}: {exc}") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise MelonError(f"melond at {self.endpoint} sent a non-JSON answer (HTTP {resp.status})") from None
        if resp.status >= 400:
            raise from_wire(payload, resp.status)
        return payload
