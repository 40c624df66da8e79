"""The original Melon's README, as written: its IPv6 endpoints, `--api_endpoint`, and `mshow -p`'s JSON."""
from __future__ import annotations

import json
import socket
import subprocess

import pytest

from conftest import BIN, Melon


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_the_original_commands_over_ipv6(tcp_melon: Melon) -> None:
    melon = tcp_melon
    port = melon.url.rsplit(":", 1)[1]
    v6 = f"http://[::1]:{port}"
    env = melon.env(MELON_TOKEN=melon.token())
    env.pop("MELON_API")
    script = melon.work / "my_job.sh"
    script.write_text("#!/bin/bash\n#MBATCH -c 1\n#MBATCH -t 0-06:00\n#MBATCH -m 1G\n\n"
                      "for i in $(seq 2 100); do\n  echo \"$i melons are better than $((i-1))\"\n  sleep 1\ndone\n")
    out = melon.run("mbatch", "-a", v6, "my_job.sh", "arg1", "arg2", env=env).stdout
    jid = int(out.split()[-1])
    assert str(jid) in melon.run("mqueue", "--api_endpoint", v6, env=env).stdout
    out = melon.run("mextend", "-j", str(jid), "-t", "1-00-00", "-a", v6, env=env).stdout
    assert "6:00:00 -> 1-06:00:00" in out
    melon.run("mcancel", "-a", v6, str(jid), env=env)
    assert melon.wait_state(jid, {"CA"})["status"] == "Cancelled"
    ipv4 = melon.env(MELON_TOKEN=env["MELON_TOKEN"], MELON_API=melon.url)  # the same port on 127.0.0.1
    assert str(jid) in melon.run("mqueue", "--all", env=ipv4).stdout


def test_mshow_p_keeps_the_original_fields_and_types(melon: Melon) -> None:
    script = melon.work / "basic_script.sh"
    script.write_text("#!/bin/bash\n#MBATCH -c 1\n#MBATCH -t 0-00:06\n#MBATCH -m 1G\necho hi\n")
    jid = int(melon.run("mbatch", str(script), "a", "b", "c").stdout.split()[-1])
    melon.wait_state(jid, {"CD"})
    job = json.loads(melon.run("mshow", str(jid), "-p").stdout)
    original = {k: job[k] for k in ("id", "user", "script_path", "script_args", "req_res", "submit_time",
                                    "start_time", "stop_time", "status", "assigned_node")}
    assert original["id"] == jid and original["status"] == "Completed"
    assert original["script_path"].endswith("basic_script.sh") and original["script_args"] == ["a", "b", "c"]
    assert original["req_res"] == {"cpu_count": 1, "memory": 1073741824, "time": 6}
    times = [original[k] for k in ("submit_time", "start_time", "stop_time")]
    assert all(type(t) is int for t in times) and times == sorted(times) and times[0] > 1_700_000_000
    assert original["assigned_node"] == "local"
    assert job["state"] == "CD" and job["state_name"] == "COMPLETED"  # Melon's, beside them
    assert job["ended_at"].startswith("20") and "T" in job["ended_at"]
    assert json.loads(melon.run("mshow", str(jid), "--parseable").stdout) == job


def test_a_busy_port_is_a_clear_error(short_tmp) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([str(BIN / "melond"), "--state-dir", str(short_tmp / "state"), "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr
