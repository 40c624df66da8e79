"""A small HTTP client for melond's API over a Unix socket or TCP.

Standard library only (http.client), so every command starts fast.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from urllib.parse import urlencode, urlsplit

from melond.errors import MelonError, Unreachable, from_wire
from melond.files import check_private

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
                 ca_file: str | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        if endpoint.startswith("unix:"):
            self._connect = lambda t: _UnixConnection(endpoint[5:], t)
        elif is_tcp(endpoint):
            parts = urlsplit(endpoint)
            if token:
                self.headers["Authorization"] = f"Bearer {token}"
            if parts.scheme == "https":
                context = ssl.create_default_context(cafile=ca_file)
                self._connect = lambda t: http.client.HTTPSConnection(parts.hostname, parts.port, timeout=t,
                                                                      context=context)
            else:
                self._connect = lambda t: http.client.HTTPConnection(parts.hostname, parts.port, timeout=t)
        else:
            raise MelonError(f"endpoint {endpoint!r} is none of unix:/path, http://host:port, https://host:port")

    @classmethod
    def from_environment(cls, endpoint: str) -> Client:
        """A client with the token (MELON_TOKEN / token file) and MELON_CA_FILE, for TCP endpoints."""
        if not is_tcp(endpoint):
            return cls(endpoint)
        return cls(endpoint, token=load_token(), ca_file=os.environ.get("MELON_CA_FILE") or None)

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
             timeout: float | None = None) -> dict:
        """One request; the typed MelonError the server sent, or Unreachable."""
        url = "/api/v1" + path + ("?" + urlencode({k: v for k, v in query.items() if v is not None}) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        conn = self._connect(timeout or self.timeout)
        try:
            headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unreachable(f"cannot reach melond at {self.endpoint} ({exc.strerror}). {START_HINT}") from None
        except PermissionError:
            raise Unreachable(f"not allowed to connect to {self.endpoint}; ask the administrator to make the "
                              f"socket accessible (melond sets mode 0666)") from None
        except ssl.SSLError as exc:
            raise Unreachable(f"TLS with melond at {self.endpoint} failed: {exc}. If melond uses its own certificate "
                              f"(melond --gen-cert), point MELON_CA_FILE at that certificate") from None
        except (OSError, http.client.HTTPException) as exc:
            hint = " (if melond serves TLS there, use https://)" if self.endpoint.startswith("http://") else ""
            raise Unreachable(f"lost the connection to melond at {self.endpoint}: {exc}{hint}") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise MelonError(f"melond at {self.endpoint} sent a non-JSON answer (HTTP {resp.status})") from None
        if resp.status >= 400:
            raise from_wire(payload, resp.status)
        return payload
