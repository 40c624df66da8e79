"""Attacks on the web API's edges, each against a real melond over real HTTP: signing a browser
in from another site, a session that outlives its sign-out, a stream that outlives its token, and
what one user's requests tell about another user's jobs."""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from urllib.parse import urlsplit

from conftest import Melon, as_user, needs_root, slurm_names_env


def _http(melon: Melon, method: str, path: str, body: bytes | str | dict | None = None,
          headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """One request to melon's TCP port: status, headers, body."""
    parts = urlsplit(melon.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    if isinstance(body, dict):
        body = json.dumps(body)
    try:
        conn.request(method, "/api/v1" + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _host(melon: Melon) -> str:
    return urlsplit(melon.url).netloc


def _ui_headers(melon: Melon, **extra: str) -> dict:
    """What Melon's page sends with a JSON request: its own origin and the CSRF header."""
    return {"Content-Type": "application/json", "X-Melon-CSRF": "1", "Origin": melon.url, **extra}


def _sign_in(melon: Melon, token: str) -> dict:
    status, headers, body = _http(melon, "POST", "/session", {"token": token}, _ui_headers(melon))
    assert status == 200, body
    return {"Cookie": headers["Set-Cookie"].split(";")[0]}


def test_sign_in_refuses_what_another_sites_page_could_send(tcp_melon: Melon) -> None:
    melon = tcp_melon
    token = melon.token()
    good = json.dumps({"token": token})
    # A cross-site HTML form may POST text/plain (no preflight) whose body parses as JSON.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"X-Melon-CSRF": "1"} | ({"Content-Type": content_type} if content_type else {})
        status, headers, body = _http(melon, "POST", "/session", good, headers)
        assert status == 400 and "Set-Cookie" not in headers, (content_type, body)
        assert "Content-Type: application/json" in json.loads(body)["error"]["message"]
    status, headers, body = _http(melon, "POST", "/session", good, {"Content-Type": "application/json"})
    assert status == 403 and "X-Melon-CSRF" in json.loads(body)["error"]["message"] and "Set-Cookie" not in headers
    for origin in ("http://evil.example", "null", f"http://{_host(melon)}.evil.example"):
        status, headers, body = _http(melon, "POST", "/session", good, _ui_headers(melon, Origin=origin))
        assert status == 403 and "Origin" in json.loads(body)["error"]["message"], (origin, body)
        assert "Set-Cookie" not in headers
    # Two values for one key: a reader that takes the first and one that takes the last disagree.
    twice = '{"token": "melon_000000000000_%s", "token": "%s"}' % ("x" * 43, token)
    status, headers, body = _http(melon, "POST", "/session", twice, _ui_headers(melon))
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "bad_request" and "'token' is given twice" in error["message"]
    assert "Set-Cookie" not in headers
    status, headers, body = _http(melon, "POST", "/session", good, _ui_headers(melon))
    assert status == 200 and json.loads(body)["user"] == "root" and "HttpOnly" in headers["Set-Cookie"]


def test_sign_out_ends_the_browsers_session_not_the_token_pasted(tcp_melon: Melon) -> None:
    melon = tcp_melon
    token = melon.token()
    session = _sign_in(melon, token)
    assert token.split("_", 2)[2] not in session["Cookie"]  # the cookie holds a session's own token
    assert _http(melon, "GET", "/whoami", headers=session)[0] == 200
    status, headers, _ = _http(melon, "DELETE", "/session", headers={**session, **_ui_headers(melon)})
    assert status == 200 and 'melon_session=""' in headers["Set-Cookie"]
    status, _, body = _http(melon, "GET", "/whoami", headers=session)  # the cookie, replayed after sign-out
    assert status == 401 and "sign in again" in json.loads(body)["error"]["message"]
    assert _http(melon, "GET", "/whoami", headers={"Authorization": f"Bearer {token}"})[0] == 200
    # A session ends with the token it was signed in with.
    again = _sign_in(melon, token)
    listed = json.loads(melon.run("mtoken", "list", "--json").stdout)
    assert {t["parent"] for t in listed} == {None, token.split("_")[1]}
    melon.run("mtoken", "revoke", token.split("_")[1])
    assert _http(melon, "GET", "/whoami", headers=again)[0] == 401
    assert json.loads(melon.run("mtoken", "list", "--json").stdout) == []


def _stream(melon: Melon, headers: dict, out: list, timeout: float = 10) -> threading.Thread:
    """Read /events until it ends, in a thread: its status and text land in `out`."""
    def read() -> None:
        try:
            out.append(_http(melon, "GET", "/events?after=now", headers=headers, timeout=timeout))
        except OSError as exc:  # a socket timeout: the stream never ended
            out.append(exc)
    thread = threading.Thread(target=read)
    thread.start()
    return thread


def test_an_open_event_stream_ends_when_its_token_is_revoked(tcp_melon: Melon) -> None:
    melon = tcp_melon
    token = melon.token()
    bearer, by_cookie = [], []
    first = _stream(melon, {"Authorization": f"Bearer {token}"}, bearer)
    session = _sign_in(melon, melon.token())
    second = _stream(melon, session, by_cookie)
    time.sleep(1.5)
    assert not bearer and not by_cookie  # both streams are open
    melon.run("mtoken", "revoke", token.split("_")[1])
    _http(melon, "DELETE", "/session", headers={**session, **_ui_headers(melon)})
    first.join(timeout=25)
    second.join(timeout=25)
    for what, out in (("bearer", bearer), ("cookie", by_cookie)):
        assert out and not isinstance(out[0], Exception), f"the {what} stream outlived its token: {out}"
        status, _, body = out[0]
        assert status == 200 and "event: end" in body.decode(), (what, body)
    assert "has been revoked" in bearer[0][2].decode() and "session has ended" in by_cookie[0][2].decode()


@needs_root
def test_the_event_stream_tells_other_users_only_what_the_job_list_shows(melon_factory) -> None:
    melon = melon_factory(tcp=True, inventory='operators = ["daemon"]\n[partitions.p]\ndefault = true\n'
                                              'max_time = "1:00"\n')
    jid = melon.submit("-H", "-t", "0:30", "--wrap", "true", user="nobody")
    melon.run("mextend", "-j", str(jid), "-t", "+0:10:00", "--request", "--reason", "converging", user="nobody")
    melon.run("mextend", "--withdraw", str(json.loads(melon.run(
        "mextend", "--requests", "--json", user="nobody").stdout)[0]["id"]), user="nobody")
    melon.run("mrelease", str(jid), user="nobody")
    melon.wait_state(jid, {"CD"})

    def kinds(user: str) -> list[str]:
        headers = {"Authorization": f"Bearer {melon.token(user=user)}"}
        status, _, body = _http(melon, "GET", "/events?after=0&seconds=0.5", headers=headers)
        assert status == 200
        events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
        return [e["kind"] for e in events if e["job_id"] == jid]

    private = ["extension_requested", "extension_request_withdrawn"]
    assert set(private) <= set(kinds("nobody")) and set(private) <= set(kinds("daemon"))  # the owner, an operator
    others = kinds("bin")
    assert "submitted" in others and "ended" in others and not set(private) & set(others), others


# A job with everything another user must not see: arguments, folder, comment, mail, paths.
PRIVATE = {"script_path", "script_args", "chdir", "submit_dir", "output", "error", "output_path", "error_path",
           "comment", "mail_user", "slurm_options", "detail"}


@needs_root
def test_another_users_job_shows_no_private_field_on_any_route(melon_factory) -> None:
    melon = melon_factory(tcp=True, inventory="[web]\nopen_job_list = true\n")
    script = melon.work / "private.sh"
    script.write_text("#!/bin/sh\n#SBATCH --comment=the-comment\n#SBATCH --mail-user=nobody@example.org\n"
                      "#SBATCH --wckey=secret-key\nsleep 60\n")
    script.chmod(0o755)
    (melon.work / "secret-dir").mkdir()
    (melon.work / "secret-dir").chmod(0o777)
    pending = melon.submit("-H", "-D", str(melon.work / "secret-dir"), "-o", "secret-%j.out", "-e",
                           "secret-%j.err", str(script), "secret-arg", user="nobody")
    running = melon.submit("-D", str(melon.work / "secret-dir"), str(script), "secret-arg", user="nobody")
    melon.wait_state(running, {"R"})
    ended = melon.submit("-D", str(melon.work / "secret-dir"), "--wrap", "exit 3", user="nobody")
    melon.wait_state(ended, {"F"})
    ids = f"{pending},{running},{ended}"
    routes = ["/jobs", "/jobs?fold=1", f"/jobs?ids={ids}", f"/jobs?ids={ids}&all=1", "/jobs?all=1",
              "/jobs?limit=50", "/jobs?limit=50&all=1&sort=-id", "/jobs?state=R,PD&fold=1&limit=10",
              f"/jobs?ids={ids}&fields=id,user,chdir,script_args,comment,output_path,mail_user",
              "/jobs?fields=id,user,chdir,script_path,error_path&all=1",
              f"/accounting?ids={ids}&user=nobody", "/accounting?fields=id,user,chdir,comment&user=nobody"]
    viewers = {"another user": {"Authorization": f"Bearer {melon.token(user='bin')}"},
               "anyone (open job list)": {}}
    for route in routes:
        for who, headers in viewers.items():
            if route.startswith("/accounting") and not headers:
                continue  # not part of the open job list
            status, _, body = _http(melon, "GET", route, headers=headers)
            assert status == 200, (route, who, body)
            jobs = [j for j in json.loads(body)["jobs"] if j["id"] in (pending, running, ended)]
            assert jobs, (route, who)
            for job in jobs:
                shown = PRIVATE & set(job)
                assert not shown, f"{route} shows {who} {sorted(shown)} of nobody's job {job['id']}"
                assert job["user"] == "nobody"
            assert b"secret" not in body and b"the-comment" not in body, (route, who)
        # the owner and operators still see everything
        for who in ("nobody", "root"):
            headers = {"Authorization": f"Bearer {melon.token(user=who)}"}
            body = _http(melon, "GET", route, headers=headers)[2]
            jobs = [j for j in json.loads(body)["jobs"] if j["id"] in (pending, running, ended)]
            assert all("chdir" in j for j in jobs), (route, who)
            assert b"secret-dir" in body, (route, who)

    # The CLIs print a placeholder for what is withheld, and the real values to the owner.
    line = melon.run("mqueue", "-h", "-j", str(pending), "-o", "%i|%u|%Z|%o", user="bin").stdout.strip()
    assert line == f"{pending}|nobody|N/A|N/A"
    line = melon.run("mqueue", "-h", "-j", str(pending), "-o", "%i|%u|%Z|%o", user="nobody").stdout.strip()
    assert line == f"{pending}|nobody|{melon.work / 'secret-dir'}|{script}"
    shown = subprocess.run(["scontrol", "show", "job"], capture_output=True, text=True, env=slurm_names_env(melon),
                           cwd=melon.work, preexec_fn=as_user("bin"), timeout=60).stdout
    assert f"JobId={pending}" in shown and "WorkDir=(null)" in shown and "secret" not in shown
    melon.run("mcancel", str(pending), str(running))
