"""The HTTP API itself: the OpenAPI document, the TCP listener, error bodies."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from conftest import Melon


def test_tcp_listener_serves_token_holders_only(tcp_melon: Melon) -> None:
    melon, url = tcp_melon, tcp_melon.url
    refused = melon.run("mqueue", "-a", url, check=False)
    assert refused.returncode == 1 and "needs a token" in refused.stderr and "mtoken create" in refused.stderr
    tcp = melon.env(MELON_API=url, MELON_TOKEN=melon.token())
    jid = int(melon.run("mbatch", "--parsable", "-H", "--wrap", "true", env=tcp).stdout)
    assert [j["id"] for j in json.loads(melon.run("mqueue", "--json", env=tcp).stdout)] == [jid]
    melon.run("mcancel", str(jid), env=tcp)
    assert melon.job(jid)["state"] == "CA"
    doc = json.load(urllib.request.urlopen(f"{url}/api/v1/openapi.json"))  # public: no token
    assert doc["openapi"].startswith("3.") and "/api/v1/jobs/{job_id}/extend" in doc["paths"]
    assert "SubmitRequest" in doc["components"]["schemas"] and "/api/v1/tokens" in doc["paths"]
    request = urllib.request.Request(f"{url}/api/v1/nope", headers={"Authorization": f"Bearer {tcp['MELON_TOKEN']}"})
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404 and json.load(exc)["error"]["code"] == "not_found"
    else:
        raise AssertionError("an unknown route answered 200")


def test_malformed_bodies_get_a_400_with_a_message(melon: Melon) -> None:
    sock_path = str(melon.state / "melond.sock")
    for body in (b"{", b"[]", b'{"script": ""}', b'{"script": "#!/bin/sh", "name": "x", "chdir": "/", "cpus": 0}',
                 b'{"script": "#!/bin/sh", "name": "x", "chdir": "/", "bogus": 1}'):
        status, reply = _post(sock_path, "/api/v1/jobs", body)
        assert status == 400, (body, status, reply)
        assert reply["error"]["code"] == "bad_request" and reply["error"]["message"]
    status, reply = _post(sock_path, "/api/v1/jobs/1/extend", b'{"add": 5, "to": 5}')
    assert status == 400 and "exactly one" in reply["error"]["message"]
    assert melon.jobs("--all") == []


def _post(sock_path: str, path: str, body: bytes) -> tuple[int, dict]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)
