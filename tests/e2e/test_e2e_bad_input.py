"""Bad input: one clear message, a non-zero exit, and nothing changed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, Melon, needs_root

MAX_TIME_INVENTORY = """
operators = ["daemon"]
[partitions.short]
default = true
max_time = "0:20"
"""


def _all_jobs(melon: Melon) -> list[int]:
    return [j["id"] for j in melon.jobs("--all")]


def _refused(melon: Melon, *args: str, expect: str, tool: str = "mbatch", user: str | None = None) -> str:
    before = _all_jobs(melon)
    r = melon.run(tool, *args, check=False, user=user)
    assert r.returncode != 0, f"{tool} {args} succeeded: {r.stdout}"
    message = r.stderr.strip()
    assert expect.lower() in message.lower(), message
    assert len(message.splitlines()) <= 8, f"one clear message, not a traceback: {message}"
    assert "Traceback" not in message and "Exception" not in message
    assert _all_jobs(melon) == before, "a refused command changed the job table"
    return message


@pytest.fixture
def scripts(melon: Melon) -> Path:
    d = melon.work
    (d / "ok.sh").write_text("#!/bin/sh\ntrue\n")
    (d / "empty.sh").write_text("")
    (d / "binary.sh").write_bytes(b"#!/bin/sh\n\x00\x01\x02ELF")
    unreadable = d / "unreadable.sh"
    unreadable.write_text("#!/bin/sh\ntrue\n")
    unreadable.chmod(0)
    (d / "mbatch_unknown.sh").write_text("#!/bin/sh\n#MBATCH --frobnicate=3\ntrue\n")
    return d


@pytest.mark.parametrize("args, expect", [
    (["missing.sh"], "does not exist"),
    (["empty.sh"], "empty"),
    (["binary.sh"], "binary"),
    (["-t", "garbage", "ok.sh"], "garbage"),
    (["-t", "1:2:3:4", "ok.sh"], "1:2:3:4"),
    (["-t", "-5", "ok.sh"], "-5"),
    (["--mem", "12Q", "ok.sh"], "12Q"),
    (["--mem", "-1G", "ok.sh"], "-1G"),
    (["-c", "0", "ok.sh"], "cpus"),
    (["-c", "100000", "ok.sh"], "largest node"),
    (["--mem", "100T", "ok.sh"], "largest node"),
    (["--frobnicate", "ok.sh"], "frobnicate"),
    (["mbatch_unknown.sh"], "frobnicate"),
    (["-p", "nosuch", "ok.sh"], "partition"),
    (["-w", "nosuch", "ok.sh"], "nosuch"),
    (["--array", "5-1", "ok.sh"], "5-1"),
    (["-d", "afterok:banana", "ok.sh"], "banana"),
])
def test_mbatch_refuses(melon: Melon, scripts: Path, args: list[str], expect: str) -> None:
    _refused(melon, *args, expect=expect)


@needs_root
def test_unreadable_script(melon: Melon, scripts: Path) -> None:
    _refused(melon, "unreadable.sh", expect="unreadable.sh", user="nobody")


def test_cpu_refusal_names_the_node_maximum(melon: Melon, scripts: Path) -> None:
    message = _refused(melon, "-c", "100000", "ok.sh", expect="largest node")
    assert f"has {os.cpu_count()}" in message


@pytest.mark.parametrize("tool, args, expect", [
    ("mcancel", ["99999"], "does not exist"),
    ("mextend", ["-j", "99999", "-t", "1:00"], "does not exist"),
    ("mshow", ["99999"], "does not exist"),
    ("mcancel", ["abc"], "not a job id"),
    ("mextend", ["-j", "1", "-t", "soon"], "soon"),
    ("mextend", ["-j", "1"], "-t"),
    ("mqueue", ["-t", "XX"], "XX"),
])
def test_tools_refuse(melon: Melon, tool: str, args: list[str], expect: str) -> None:
    _refused(melon, *args, expect=expect, tool=tool)


def test_extending_a_finished_job(melon: Melon) -> None:
    jid = melon.submit("--wrap", "true")
    melon.wait_state(jid, {"CD"})
    _refused(melon, "-j", str(jid), "-t", "1:00", tool="mextend", expect="finished job cannot be extended")
    assert [e["kind"] for e in melon.job(jid)["events"]].count("extended") == 0


@needs_root
def test_other_users_jobs_are_out_of_reach(melon: Melon) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    for tool, args in (("mcancel", [str(jid)]), ("mextend", ["-j", str(jid), "-t", "1"]), ("mshow", [str(jid)])):
        _refused(melon, *args, tool=tool, user="nobody", expect="belongs to root")
    assert melon.job(jid)["state"] == "PD"
    melon.run("mcancel", str(jid))


@needs_root
def test_owner_may_extend_up_to_maxtime_only(melon_factory) -> None:
    melon = melon_factory(inventory=MAX_TIME_INVENTORY)
    jid = melon.submit("-t", "0:10", "--wrap", "sleep 60", user="nobody")
    melon.wait_state(jid, {"R"})
    melon.run("mextend", "-j", str(jid), "-t", "+0:10", user="nobody")
    assert melon.job(jid)["time_limit_seconds"] == 20
    message = _refused(melon, "-j", str(jid), "-t", "+0:01", tool="mextend", user="nobody", expect="MaxTime")
    assert "0:21" in message and "0:20" in message
    assert melon.job(jid)["time_limit_seconds"] == 20
    # An operator (listed in the inventory) goes beyond it.
    melon.run("mextend", "-j", str(jid), "-t", "+1:00", user="daemon")
    assert melon.job(jid)["time_limit_seconds"] == 80
    melon.run("mcancel", str(jid), user="nobody")


def test_melond_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "MELON_API": f"unix:{tmp_path}/melond.sock"}
    for tool, args in (("mqueue", []), ("mbatch", ["--wrap", "true"]), ("minfo", [])):
        r = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env)
        assert r.returncode != 0
        assert "cannot reach melond" in r.stderr and "Start it with `melond`" in r.stderr


def test_second_melond_on_same_state_dir_refuses(melon: Melon) -> None:
    r = subprocess.run([str(BIN / "melond"), "--state-dir", str(melon.state)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "another melond already uses" in r.stderr


@pytest.mark.parametrize("inventory, expect", [
    ("operators = 'alice'", "operators"),
    ("[partitions.p]\nmax_time = 'soon'", "soon"),
    ("[partitions.p]\nfrobnicate = 1", "frobnicate"),
    ("[nodes.a]\npartition = 'nope'\n[partitions.p]\n", "nope"),
    ("not toml [", "TOML"),
    ("[nodes.a]\ngres = [{name = 'gpu', count = 3, files = '/dev/nvidia[0-1]'}]", "count 3 but 2 files"),
    ("[nodes.a]\ngres = [{name = 'gpu:2'}]", "gres"),
])
def test_bad_inventory_stops_melond(short_tmp: Path, inventory: str, expect: str) -> None:
    inv = short_tmp / "inv.toml"
    inv.write_text(inventory)
    r = subprocess.run([str(BIN / "melond"), "--state-dir", str(short_tmp / "s"), "--inventory", str(inv)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and expect in r.stderr and str(inv) in r.stderr
