"""Bearer tokens on the TCP API, end to end: real melond, real `mtoken` and CLIs as processes."""
from __future__ import annotations

import http.client
import json
import os
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import Melon, needs_root
from melond.api.routes import PREFIX, PUBLIC, ROUTES


def _request(url: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, PREFIX + path, body=body, headers={**headers, "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("Content-Type", "").startswith("text/event-stream"):
            return resp.status, {"stream": data.decode()}
        return resp.status, json.loads(data or b"{}")
    finally:
        conn.close()


def _token_id(token: str) -> str:
    return token.split("_")[1]


def test_every_route_over_tcp_refuses_missing_wrong_expired_and_revoked_tokens(tcp_melon: Melon) -> None:
    melon = tcp_melon
    jid = melon.submit("-H", "--wrap", "true")
    good = melon.token()
    expired = melon.token("--expires", "1s")
    revoked = melon.token()
    melon.run("mtoken", "revoke", _token_id(revoked))
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    time.sleep(1.1)
    bad = {
        "missing": ({}, "needs a token"),
        "not bearer": ({"Authorization": "Basic cm9vdDpyb290"}, "Bearer <token>"),
        "malformed": ({"Authorization": "Bearer nonsense"}, "not a Melon token"),
        "unknown id": ({"Authorization": "Bearer melon_0123456789ab_" + "x" * 43}, "not valid"),
        "wrong secret": ({"Authorization": f"Bearer {wrong_secret}"}, "not valid"),
        "expired": ({"Authorization": f"Bearer {expired}"}, "has expired"),
        "revoked": ({"Authorization": f"Bearer {revoked}"}, "has been revoked"),
    }
    assert PUBLIC == {"/openapi.json", "/session"}
    checked = 0
    for method, path, *_ in ROUTES:
        if path in PUBLIC:
            continue
        path = path.format(job_id=jid, name="local", request_id=1) + ("?seconds=0" if path == "/events" else "")
        for what, (headers, expect) in bad.items():
            status, reply = _request(melon.url, method, path, headers, b"{}" if method == "POST" else None)
            assert status == 401, (method, path, what, status, reply)
            message = reply["error"]["message"]
            assert reply["error"]["code"] == "unauthorized" and expect in message and "mtoken create" in message, \
                (method, path, what, message)
            checked += 1
        status, reply = _request(melon.url, method, path, {"Authorization": f"Bearer {good}"},
                                 b"{}" if method == "POST" else None)
        assert status != 401, (method, path, reply)
    assert checked == 7 * sum(path not in PUBLIC for _, path, *_ in ROUTES)
    # The good token's cancel went through, then its requeue made the (still held) job pending again,
    # and its `scontrol top` put it first; none of the bad ones did anything.
    job = melon.job(jid)
    assert [e["kind"] for e in job["events"]] == ["submitted", "cancelled", "requeued_ended", "topped"] and \
        job["state"] == "PD"
    melon.run("mcancel", str(jid))


def test_tokens_are_issued_over_the_socket_only_and_listed_without_secrets(tcp_melon: Melon) -> None:
    melon = tcp_melon
    token = melon.token("--expires", "2h")
    listed = json.loads(melon.run("mtoken", "list", "--json").stdout)
    assert [t["id"] for t in listed] == [_token_id(token)]
    assert 2 * 3600 - 60 < listed[0]["expires"] - listed[0]["created"] <= 2 * 3600
    assert listed[0]["last_used"] is None
    refused = melon.run("mtoken", "create", env=melon.env(MELON_API=melon.url, MELON_TOKEN=token), check=False)
    assert refused.returncode == 1 and "only over the Unix socket" in refused.stderr
    listed = json.loads(melon.run("mtoken", "list", "--json").stdout)
    assert listed[0]["last_used"] is not None
    assert token.split("_", 2)[2] not in melon.run("mtoken", "list").stdout + json.dumps(listed)
    stored = b"".join(p.read_bytes() for p in melon.state.glob("melon.db*"))
    assert _token_id(token).encode() in stored and token.split("_", 2)[2].encode() not in stored  # hashed
    for bad in ("never", "400d", "5"):
        r = melon.run("mtoken", "create", "--expires", bad, check=False)
        assert r.returncode == 1 and "token" in r.stderr
    default = json.loads(melon.run("mtoken", "create", "--json").stdout)
    assert default["expires"] - default["created"] == 30 * 86400


def test_revocation_is_immediate(tcp_melon: Melon) -> None:
    melon = tcp_melon
    token = melon.token()
    tcp = melon.env(MELON_API=melon.url, MELON_TOKEN=token)
    melon.run("mqueue", env=tcp)
    assert melon.run("mtoken", "revoke", _token_id(token)).stdout.strip() == f"Revoked token {_token_id(token)}"
    r = melon.run("mqueue", env=tcp, check=False)
    assert r.returncode == 1 and "revoked" in r.stderr and "mtoken create" in r.stderr
    assert json.loads(melon.run("mtoken", "list", "--json").stdout) == []
    again = melon.run("mtoken", "revoke", _token_id(token), check=False)
    assert again.returncode == 1 and "no active token" in again.stderr


def test_cli_token_files_must_be_private(tcp_melon: Melon, tmp_path: Path) -> None:
    melon = tcp_melon
    path = tmp_path / "token"
    path.write_text(melon.token() + "\n")
    for mode, who in ((0o644, "its group and other users"), (0o640, "its group"), (0o604, "other users")):
        os.chmod(path, mode)
        r = melon.run("mqueue", env=melon.env(MELON_API=melon.url, MELON_TOKEN_FILE=str(path)), check=False)
        assert r.returncode == 1 and f"chmod 600 {path}" in r.stderr and who in r.stderr, r.stderr
        # on the Unix socket no token is read, so the same loose file is no obstacle there
        melon.run("mqueue", env=melon.env(MELON_TOKEN_FILE=str(path)))
    os.chmod(path, 0o600)
    melon.run("mqueue", env=melon.env(MELON_API=melon.url, MELON_TOKEN_FILE=str(path)))
    r = melon.run("mqueue", env=melon.env(MELON_API=melon.url, MELON_TOKEN_FILE=str(tmp_path / "nope")), check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_create_save_writes_a_0600_file_the_clis_use(tcp_melon: Melon, tmp_path: Path) -> None:
    melon = tcp_melon
    home = tmp_path / "home"
    home.mkdir()
    env = melon.env(HOME=str(home))
    out = melon.run("mtoken", "create", "--save", env=env).stdout
    path = home / ".config" / "melon" / "token"
    assert f"to {path}" in out and "melon_" not in out  # the secret goes to the file, not the terminal
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = path.read_text().strip()
    melon.run("mqueue", env={**env, "MELON_API": melon.url})
    melon.run("mtoken", "create", "--save", env=env)  # replaces the file, still 0600
    assert path.read_text().strip() != first and stat.S_IMODE(path.stat().st_mode) == 0o600
    custom = tmp_path / "elsewhere" / "tok"
    melon.run("mtoken", "create", "--save", env={**env, "MELON_TOKEN_FILE": str(custom)})
    assert stat.S_IMODE(custom.stat().st_mode) == 0o600
    whoami = _request(melon.url, "GET", "/whoami", {"Authorization": f"Bearer {custom.read_text().strip()}"})
    assert whoami == (200, {"user": "root", "uid": 0, "operator": True})


@needs_root
def test_a_token_acts_as_its_user_with_the_sockets_rights(tcp_melon: Melon) -> None:
    melon = tcp_melon
    nobody = melon.token(user="nobody")
    daemon = melon.token(user="daemon")
    as_nobody = melon.env(MELON_API=melon.url, MELON_TOKEN=nobody)
    as_daemon = melon.env(MELON_API=melon.url, MELON_TOKEN=daemon)
    assert _request(melon.url, "GET", "/whoami", {"Authorization": f"Bearer {nobody}"})[1] == \
        {"user": "nobody", "uid": 65534, "operator": False}
    # root's process, nobody's token: the job is nobody's and runs as nobody
    jid = int(melon.run("mbatch", "--parsable", "-t", "0:30", "--wrap", "id -un", env=as_nobody).stdout)
    job = melon.wait_state(jid, {"CD"})
    assert job["user"] == "nobody" and (melon.work / f"melon-{jid}.out").read_text().strip() == "nobody"
    held = int(melon.run("mbatch", "--parsable", "-H", "-t", "0:30", "--wrap", "true", env=as_nobody).stdout)
    for tool, args in (("mcancel", [str(held)]), ("mextend", ["-j", str(held), "-t", "+0:10"]),
                       ("mrelease", [str(held)]), ("mshow", [str(held)])):
        over_socket = melon.run(tool, *args, user="daemon", check=False)
        over_tcp = melon.run(tool, *args, env=as_daemon, check=False)
        for r in (over_socket, over_tcp):
            assert r.returncode == 1 and "belongs to nobody" in r.stderr, (tool, r.stderr)
    status, reply = _request(melon.url, "POST", f"/jobs/{held}/cancel", {"Authorization": f"Bearer {daemon}"})
    assert status == 403 and reply["error"]["code"] == "forbidden"
    r = melon.run("mnode", "drain", "local", "--reason", "x", env=as_nobody, check=False)
    assert r.returncode == 1 and "only operators" in r.stderr
    melon.run("mextend", "-j", str(held), "-t", "+0:10", env=as_nobody)
    melon.run("mcancel", str(held), env=as_nobody)
    assert melon.job(held)["state"] == "CA"


@needs_root
def test_operators_list_and_revoke_every_users_tokens(tcp_melon: Melon) -> None:
    melon = tcp_melon
    nobody = melon.token(user="nobody")
    mine = melon.token()
    assert [t["user"] for t in json.loads(melon.run("mtoken", "list", "--json", user="nobody").stdout)] == ["nobody"]
    everyone = json.loads(melon.run("mtoken", "list", "--all", "--json").stdout)
    assert {t["user"] for t in everyone} == {"nobody", "root"}
    r = melon.run("mtoken", "list", "--all", user="nobody", check=False)
    assert r.returncode == 1 and "only operators" in r.stderr
    r = melon.run("mtoken", "revoke", _token_id(mine), user="nobody", check=False)
    assert r.returncode == 1 and "no active token" in r.stderr
    r = melon.run("mtoken", "revoke", "--all", user="nobody", check=False)
    assert r.returncode == 1 and "only operators" in r.stderr
    melon.run("mtoken", "revoke", _token_id(nobody))  # root revokes nobody's token
    assert json.loads(melon.run("mtoken", "list", "--json", user="nobody").stdout) == []
    extra = melon.token(user="nobody")
    out = melon.run("mtoken", "revoke", "--all").stdout
    assert _token_id(extra) in out and _token_id(mine) in out
    assert json.loads(melon.run("mtoken", "list", "--all", "--json").stdout) == []
    for token in (nobody, mine, extra):
        assert _request(melon.url, "GET", "/jobs", {"Authorization": f"Bearer {token}"})[0] == 401


@pytest.mark.parametrize("args", [("--expires", "1y"), ()])
def test_revoke_usage_and_bad_lifetimes_exit_1(melon: Melon, args: tuple[str, ...]) -> None:
    r = melon.run("mtoken", "create", *args, check=False) if args else melon.run("mtoken", "revoke", check=False)
    assert r.returncode != 0 and ("unit" in r.stderr or "--all" in r.stderr)
