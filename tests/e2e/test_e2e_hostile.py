"""Hostile peers: a flood of malformed requests, and node helpers that answer with garbage.

melond must keep serving through the first and isolate the second: the garbage-speaking node goes
DOWN with the bytes it sent in the log and in `minfo`, while the other nodes run jobs as before.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

from conftest import SRC, Melon, UnixHTTP, wait_for

FLOOD_THREADS = 6
FLOOD_EACH = 500
BAD_REQUESTS = [
    ("POST", "/api/v1/jobs", b"{"),
    ("POST", "/api/v1/jobs", b"\xff\xfe\x00garbage"),
    ("POST", "/api/v1/jobs", b'{"script": 5}'),
    ("POST", "/api/v1/jobs", b"[" * 5000 + b"]" * 5000),
    ("GET", "/api/v1/jobs/abc", None),
    ("GET", "/api/v1/jobs?ids=x,y", None),
    ("POST", "/api/v1/jobs/99999999999999999999/extend", b'{"add": NaN}'),
    ("POST", "/api/v1/tokens/revoke", b'{"ids": 7}'),
    ("GET", "/api/v1/nowhere", None),
]


def _flood(sock: str, seed: int, statuses: list[int]) -> None:
    """One keep-alive connection sending bad requests back to back (and a raw junk line now and then)."""
    conn = UnixHTTP(sock)
    for i in range(FLOOD_EACH):
        method, path, body = BAD_REQUESTS[(seed + i) % len(BAD_REQUESTS)]
        if i % 100 == 0:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:  # not even HTTP
                raw.connect(sock)
                raw.sendall(b"\x16\x03\x01 NOT HTTP \xff\r\n\r\n")
                raw.recv(4096)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()


def test_melond_keeps_serving_through_a_flood_of_bad_requests(melon: Melon) -> None:
    statuses: list[int] = []
    threads = [threading.Thread(target=_flood, args=(str(melon.state / "melond.sock"), n, statuses))
               for n in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    during = melon.submit("--wrap", "echo during")  # a normal user is served during the flood
    for t in threads:
        t.join(timeout=300)
    assert len(statuses) == FLOOD_THREADS * FLOOD_EACH
    assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    after = melon.submit("--wrap", "echo after")
    for jid, word in ((during, "during"), (after, "after")):
        assert melon.wait_state(jid, {"CD"})["exit_code"] == 0
        assert (melon.work / f"melon-{jid}.out").read_text() == f"{word}\n"
    assert "unhandled error" not in melon.log.read_text()


# A stand-in for `python3` on a node: it is started as `PYTHON -c FIRST_STAGE SPOOL LIMITS` and
# answers with garbage at the given moment, then waits for melond to hang up.
FAKE_HELPER = """#!{python}
import os, sys, time
sys.path.insert(0, {repo!r})
from melon_remote import wire
when = {when!r}
if when == "boot":
    os.write(1, b"\\x00\\xffNOT MELON\\n")
else:
    os.write(1, b"MELON-BOOT-1\\n")
    line = b""
    while not line.endswith(b"\\n"):
        byte = os.read(0, 1)
        if not byte:
            sys.exit(0)
        line += byte
    left = int(line)
    while left:
        chunk = os.read(0, left)
        if not chunk:
            sys.exit(0)  # melond hung up
        left -= len(chunk)
    os.write(1, wire.encode({{"event": "hello", "info": {{"hostname": "evil", "boot_id": "x", "cpus": 2,
                                                        "memory": 1024, "backend": "none"}}}}))
    time.sleep(0.3)
    os.write(1, b"\\xde\\xad\\xbe\\xef" * 40)
while os.read(0, 65536):
    pass
"""


def _fake_python(folder: Path, when: str) -> Path:
    path = folder / f"python-{when}"
    path.write_text(FAKE_HELPER.format(python=sys.executable, repo=str(SRC), when=when))
    path.chmod(0o755)
    return path


def test_a_node_helper_speaking_garbage_is_marked_down_and_the_others_carry_on(short_tmp: Path) -> None:
    inventory = f"""
[partitions.local]
default = true
[partitions.hostile]

[nodes.local]
partition = "local"

[nodes.evil]
partition = "hostile"
python = "{_fake_python(short_tmp, 'hello')}"
spool = "{short_tmp}/spool-evil"

[nodes.liar]
partition = "hostile"
python = "{_fake_python(short_tmp, 'boot')}"
spool = "{short_tmp}/spool-liar"
"""
    melon = Melon(short_tmp / "m", inventory=inventory)
    try:
        melon.start(wait_all_up=False)
        log = wait_for(lambda: _both_refused(melon.log.read_text()), timeout=30,
                       what="melond to log both hostile helpers")
        garbage = [json.loads(line) for line in log.splitlines() if '"garbage from node helper"' in line]
        assert garbage and garbage[0]["node"] == "evil"
        assert "bad frame magic" in garbage[0]["error"] and r"\xde\xad\xbe\xef" in garbage[0]["error"]
        assert len(garbage[0]["error"]) < 400, "the bytes seen are shown bounded"
        nodes = {n["name"]: n for n in json.loads(melon.run("minfo", "--json").stdout)}
        assert nodes["evil"]["state"] == "down" and nodes["liar"]["state"] == "down"
        assert r"\xde\xad\xbe\xef" in nodes["evil"]["reason"]
        assert r"got b'\x00\xff" in nodes["liar"]["reason"]
        assert nodes["local"]["state"] != "down"
        jid = melon.submit("--wrap", "echo fine")
        assert melon.wait_state(jid, {"CD"})["assigned_node"] == "local"
        assert (melon.work / f"melon-{jid}.out").read_text() == "fine\n"
        assert "unhandled error" not in melon.log.read_text()
    finally:
        melon.cleanup()
    wait_for(lambda: not _processes_of(f"{short_tmp}/python-"), timeout=15,
             what="the hostile helpers to be gone once melond hung up")


def _processes_of(text: str) -> list[int]:
    """Processes whose command line mentions `text`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _both_refused(log: str) -> str | None:
    return log if '"garbage from node helper"' in log and "got b'\\\\x00\\\\xff" in log else None
