"""Submission caps, the submit rate and extension budgets, through a real melond and the real CLIs."""
from __future__ import annotations

import json

import pytest

from conftest import Melon, UnixHTTP, needs_root

LIMITS_INVENTORY = """
[limits]
script_size = 200
args = 3
arg_length = 50
args_total = 100
name_length = 10
env_size = 65536
"""

RATE_INVENTORY = """
[limits]
submit_burst = 5
submit_rate = 0.2
"""

BUDGET_INVENTORY = """
operators = ["daemon"]
[partitions.capped]
default = true
max_extension = "0:20"
max_extensions = 2
"""


def raw(melon: Melon, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
    conn = UnixHTTP(str(melon.state / "melond.sock"))
    try:
        conn.request(method, "/api/v1" + path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _ids(melon: Melon) -> list[int]:
    return [j["id"] for j in melon.jobs("--all")]


def _refused(melon: Melon, *args: str, expect: list[str], tool: str = "mbatch", user: str | None = None,
             env: dict | None = None) -> str:
    before = _ids(melon)
    r = melon.run(tool, *args, check=False, user=user, env=env)
    assert r.returncode != 0, r.stdout
    for words in expect:
        assert words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert _ids(melon) == before, "a refused submission changed the job table"
    return r.stderr


@pytest.fixture
def limited(melon_factory) -> Melon:
    melon = melon_factory(inventory=LIMITS_INVENTORY)
    (melon.work / "big.sh").write_text("#!/bin/sh\n" + "# padding\n" * 30)
    (melon.work / "ok.sh").write_text("#!/bin/sh\necho \"$@\"\n")
    return melon


@pytest.mark.parametrize("args, expect", [
    (["big.sh"], ["script_size", "is 310,", "200"]),
    (["ok.sh", "a", "b", "c", "d"], ["[limits] args", "is 4,", "of 3"]),
    (["ok.sh", "x" * 51], ["arg_length", "is 51,", "of 50"]),
    (["ok.sh", "x" * 40, "y" * 40, "z" * 40], ["args_total", "is 120,", "of 100"]),
    (["-J", "elevenchars", "ok.sh"], ["name_length", "is 11,", "of 10"]),
])
def test_each_submission_cap_is_a_clear_refusal(limited: Melon, args: list[str], expect: list[str]) -> None:
    _refused(limited, *args, expect=expect)


def test_the_environment_cap(limited: Melon) -> None:
    _refused(limited, "ok.sh", env=limited.env(BIG="x" * 70000), expect=["env_size", "65,536"])
    assert limited.submit("--export", "NONE", "ok.sh", env=limited.env(BIG="x" * 70000))  # not exported: fine


def test_a_cap_refusal_is_a_413_in_the_error_shape(limited: Melon) -> None:
    body = {"script": "#!/bin/sh\n" + "x" * 300, "name": "n", "chdir": str(limited.work)}
    status, _, reply = raw(limited, "POST", "/jobs", json.dumps(body).encode())
    assert status == 413 and reply["error"]["code"] == "too_large" and "script_size" in reply["error"]["message"]


def test_a_body_beyond_every_cap_is_refused_by_size_alone(limited: Melon) -> None:
    status, _, reply = raw(limited, "POST", "/jobs", b'{"script": "' + b"x" * (8 << 20) + b'"}')
    assert status == 413 and set(reply["error"]) == {"code", "message"} and "[limits]" in reply["error"]["message"]
    assert limited.submit("ok.sh")  # and melond is fine


def test_the_submit_rate_is_a_429_with_retry_after_and_a_message(melon_factory) -> None:
    melon = melon_factory(inventory=RATE_INVENTORY)
    body = json.dumps({"script": "#!/bin/sh\ntrue\n", "name": "r", "chdir": str(melon.work), "hold": True}).encode()
    codes = [raw(melon, "POST", "/jobs", body)[0] for _ in range(5)]
    assert codes == [201] * 5
    status, headers, reply = raw(melon, "POST", "/jobs", body)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert reply["error"]["code"] == "rate_limited" and "submit_burst" in reply["error"]["message"]
    _refused(melon, "--wrap", "true", expect=["submit_rate", "retry in"])
    assert len(_ids(melon)) == 5
    melon.run("mqueue")  # reads are not throttled


@needs_root
def test_each_user_has_their_own_rate(melon_factory) -> None:
    melon = melon_factory(inventory=RATE_INVENTORY)
    for _ in range(5):
        melon.submit("-H", "--wrap", "true")
    _refused(melon, "-H", "--wrap", "true", expect=["root submitted more than 5"])
    assert melon.submit("-H", "--wrap", "true", user="nobody")


@pytest.fixture
def capped(melon_factory) -> Melon:
    return melon_factory(inventory=BUDGET_INVENTORY)


@needs_root
def test_max_extensions_counts_an_owners_extensions(capped: Melon) -> None:
    jid = capped.submit("-H", "-t", "0:10", "--wrap", "true", user="nobody")
    capped.run("mextend", "-j", str(jid), "-t", "+0:05", user="nobody")
    capped.run("mextend", "-j", str(jid), "-t", "+0:05", user="nobody")
    message = _refused(capped, "-j", str(jid), "-t", "+0:01", tool="mextend", user="nobody",
                       expect=["max_extensions", "extended 2 times", "partition capped"])
    assert "allows an owner 2" in message
    assert capped.job(jid)["time_limit_seconds"] == 20
    capped.run("mextend", "-j", str(jid), "-t", "+1:00", user="daemon")  # operators are unbounded
    capped.run("mextend", "-j", str(jid), "-t", "+1:00")  # root too
    assert capped.job(jid)["time_limit_seconds"] == 140
    capped.run("mcancel", str(jid))


@needs_root
def test_max_extension_caps_the_time_an_owner_adds_over_a_jobs_life(capped: Melon) -> None:
    jid = capped.submit("-H", "-t", "0:10", "--wrap", "true", user="nobody")
    _refused(capped, "-j", str(jid), "-t", "+0:21", tool="mextend", user="nobody",
             expect=["max_extension", "0:21", "cap of 0:20"])
    capped.run("mextend", "-j", str(jid), "-t", "+0:15", user="nobody")
    _refused(capped, "-j", str(jid), "-t", "+0:06", tool="mextend", user="nobody",
             expect=["max_extension", "0:15 added before"])
    capped.run("mextend", "-j", str(jid), "-t", "+0:05", user="nobody")
    assert capped.job(jid)["time_limit_seconds"] == 30
    capped.run("mcancel", str(jid))


@needs_root
def test_mshow_lists_the_extension_history(capped: Melon) -> None:
    jid = capped.submit("-t", "1:00", "--wrap", "sleep 60", user="nobody")
    capped.wait_state(jid, {"R"})
    capped.run("mextend", "-j", str(jid), "-t", "+0:10", user="nobody")
    capped.run("mextend", "-j", str(jid), "--to", "5:00", user="daemon")
    table = capped.run("mshow", str(jid), user="nobody").stdout
    lines = table[table.index("Extensions:"):].splitlines()[1:]
    assert len(lines) == 2
    assert "by nobody: 1:00 -> 1:10, deadline " in lines[0]
    assert "by daemon: 1:10 -> 5:00, deadline " in lines[1]
    history = capped.job(jid)["extensions"]
    assert [(e["by"], e["old_limit"], e["new_limit"]) for e in history] == [
        ("nobody", "1:00", "1:10"), ("daemon", "1:10", "5:00")]
    job = capped.job(jid)
    assert history[1]["new_deadline"] == job["deadline"] and history[0]["when"] <= history[1]["when"]
    assert history[1]["data"]["new_deadline"] - history[0]["data"]["new_deadline"] == pytest.approx(230)
    capped.run("mcancel", str(jid))
