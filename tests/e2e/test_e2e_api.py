"""The HTTP API itself: the OpenAPI document, the TCP listener, error bodies."""
from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import BIN, Melon, as_user, needs_root


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


# What a user may do with extension requests and the no-delay policy, over the API itself, each
# request made by a process running as that user (the socket tells melond who it is).
_AS_USER = """
import json, socket, sys
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[4])
s.sendall(method.encode() + b" " + path.encode() + b" HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
          b"Content-Length: " + str(len(body)).encode() + b"\\r\\nConnection: close\\r\\n\\r\\n" + body)
data = b""
while chunk := s.recv(65536):
    data += chunk
head, _, payload = data.partition(b"\\r\\n\\r\\n")
print(json.dumps([int(head.split()[1]), json.loads(payload)]))
"""


def _as(melon: Melon, user: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    r = subprocess.run([str(BIN / "python"), "-c", _AS_USER, method, "/api/v1" + path,
                        json.dumps(body) if body is not None else "", str(melon.state / "melond.sock")],
                       capture_output=True, text=True, preexec_fn=as_user(user), timeout=30)
    assert r.returncode == 0, r.stderr
    status, reply = json.loads(r.stdout)
    return status, reply


@needs_root
def test_extension_request_rights_over_the_api(melon_factory) -> None:
    melon = melon_factory(inventory='operators = ["daemon"]\n[partitions.p]\ndefault = true\nmax_time = "1:00"\n')
    jid = melon.submit("-H", "-t", "0:30", "--wrap", "true", user="nobody")
    status, reply = _as(melon, "nobody", "POST", f"/jobs/{jid}/extend", {"add": 600})
    assert status == 403 and "MaxTime" in reply["error"]["message"]
    status, filed = _as(melon, "nobody", "POST", f"/jobs/{jid}/extension-requests", {"add": 600, "reason": "why"})
    assert status == 200 and filed["state"] == "pending"
    rid = filed["id"]
    status, listed = _as(melon, "bin", "GET", "/extension-requests")
    assert status == 200 and listed["requests"] == []  # another user sees nothing
    status, reply = _as(melon, "bin", "POST", f"/extension-requests/{rid}/approve", {})
    assert status == 404 and reply["error"]["code"] == "not_found"
    status, reply = _as(melon, "nobody", "POST", f"/extension-requests/{rid}/approve", {})
    assert status == 403 and "only an operator" in reply["error"]["message"]
    status, reply = _as(melon, "nobody", "POST", f"/jobs/{jid}/extension-requests", {"add": 600, "reason": ""})
    assert status == 400
    status, listed = _as(melon, "daemon", "GET", "/extension-requests")
    assert [r["id"] for r in listed["requests"]] == [rid]  # an operator sees everyone's
    status, done = _as(melon, "daemon", "POST", f"/extension-requests/{rid}/approve", {"reason": "ok"})
    assert status == 200 and done["state"] == "approved" and done["extension"]["new_limit"] == 630
    status, reply = _as(melon, "daemon", "POST", f"/extension-requests/{rid}/deny", {"reason": "late"})
    assert status == 409 and "approved already" in reply["error"]["message"]
    melon.run("mcancel", str(jid))


@needs_root
def test_the_no_delay_refusal_over_the_api(melon_factory) -> None:
    melon = melon_factory(inventory='[partitions.p]\ndefault = true\nmax_time = "1:00:00"\n'
                                    'extend_policy = "no-delay"\n')
    cpus = json.loads(melon.run("minfo", "--json").stdout)[0]["cpus"]
    a = melon.submit("-c", str(cpus), "-t", "0:30", "--wrap", "sleep 120", user="nobody")
    melon.wait_state(a, {"R"})
    b = melon.submit("-c", "1", "-t", "0:10", "--wrap", "true")
    status, reply = _as(melon, "nobody", "POST", f"/jobs/{a}/extend", {"add": 60})
    assert status == 409 and reply["error"]["code"] == "conflict"
    assert f"would delay job {b}" in reply["error"]["message"] and "no-delay" in reply["error"]["message"]
    status, dry = _as(melon, "nobody", "POST", f"/jobs/{a}/extend", {"add": 60, "dry_run": True})
    assert status == 200 and dry["granted"] is False and dry["delays"][0]["job_id"] == b
    assert dry["delays"][0]["by"] == pytest.approx(60, abs=1)
    status, reply = _as(melon, "nobody", "POST", f"/jobs/{a}/extend", {"add": 60, "max": True})
    assert status == 400 and "exactly one of" in reply["error"]["message"]
    melon.run("mcancel", str(b), str(a))  # b first: with a gone it would start, and end, at once


def test_session_cookie_and_the_event_stream_over_tcp(tcp_melon: Melon) -> None:
    import http.client
    from urllib.parse import urlsplit
    melon = tcp_melon
    parts = urlsplit(melon.url)

    def req(method: str, path: str, body: dict | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request(method, "/api/v1" + path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    status, _, body = req("POST", "/session", {"token": "melon_000000000000_" + "x" * 43}, {"X-Melon-CSRF": "1"})
    assert status == 401 and b"not valid" in body
    status, headers, _ = req("POST", "/session", {"token": melon.token()}, headers={"X-Melon-CSRF": "1"})
    cookie = dict(headers)["Set-Cookie"]
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = {"Cookie": cookie.split(";")[0]}
    status, _, body = req("GET", "/whoami", headers=session)
    assert status == 200 and json.loads(body)["user"] == "root"
    held = melon.submit("-H", "--wrap", "true")
    status, _, body = req("POST", f"/jobs/{held}/cancel", headers=session)
    assert status == 403 and b"X-Melon-CSRF" in body and melon.job(held)["state"] == "PD"
    status, _, _ = req("POST", f"/jobs/{held}/cancel", headers={**session, "X-Melon-CSRF": "1"})
    assert status == 200 and melon.job(held)["state"] == "CA"
    status, _, body = req("GET", f"/events?after=0&seconds=0.5", headers=session)
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and [(e["job_id"], e["kind"]) for e in events] == [(held, "submitted"), (held, "cancelled")]
    assert set(events[0]) == {"seq", "job_id", "kind", "time"}  # which job and what, never an event's details
    status, _, body = req("GET", "/events?after=soon", headers=session)
    assert status == 400
    status, headers, _ = req("DELETE", "/session", headers={**session, "X-Melon-CSRF": "1"})
    assert status == 200 and "melon_session=\"\"" in dict(headers)["Set-Cookie"]
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/")  # the UI's page is public (it holds no data), served outside the API's prefix
    resp = conn.getresponse()
    page, policy = resp.read(), resp.getheader("Content-Security-Policy")
    conn.close()
    assert resp.status == 200 and b"<title>Melon</title>" in page and "default-src 'self'" in policy
