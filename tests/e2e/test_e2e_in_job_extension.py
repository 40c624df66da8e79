"""A running job extends itself from its node, with no token and no path to melond's socket: the
job channel its node's helper serves (remote/asks.py), for the job's own processes only."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

from conftest import BIN, Melon, needs_root, slurm_names_env, wait_for

# The job gets no MELON_API (only PATH is exported): it can reach melond through its node alone.
SELF_EXTENDING = f"""#!/bin/bash
echo "socket=$MELON_NODE_SOCKET api=${{MELON_API:-none}}"
{BIN}/mextend -t +0:20 || echo "mextend failed"
scontrol update JobId=$SLURM_JOB_ID TimeLimit=+0:10 || echo "scontrol failed"
echo extended
sleep 30
"""


def _ask(address: str, request: dict) -> dict:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect("\0" + address[1:])
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
    except BrokenPipeError:
        pass  # the node refuses a process that is not a job's at once, before reading its request
    with sock, sock.makefile() as f:
        return json.loads(f.readline())


def test_a_job_extends_itself_through_its_node_and_only_itself(melon: Melon) -> None:
    (melon.work / "self.sh").write_text(SELF_EXTENDING)
    env = slurm_names_env(melon)
    other = melon.submit("-t", "0:30", "--wrap", "sleep 60")
    r = subprocess.run(["sbatch", "--parsable", "-t", "0:30", "--export=PATH", "-o", "self-%j.out", "self.sh"],
                       capture_output=True, text=True, env=env, cwd=melon.work, timeout=30)
    jid = int(r.stdout)
    out = melon.work / f"self-{jid}.out"
    wait_for(lambda: out.exists() and "extended" in out.read_text(), what="the job to extend itself")
    text = out.read_text()
    assert "api=none" in text and "failed" not in text, text
    job = melon.job(jid)
    assert job["time_limit_seconds"] == 60  # 30 s, +20 by mextend, +10 by scontrol
    extensions = [e for e in job["events"] if e["kind"] == "extended"]
    assert [(e["actor"], e["data"]["via"], e["data"]["added"]) for e in extensions] == \
        [(job["user"], "job", 20), (job["user"], "job", 10)]
    address = text.split("socket=")[1].split()[0]
    assert address.startswith("@melon-jobs-")

    # A process that is not part of a job is refused, whoever it runs as.
    reply = _ask(address, {"op": "extend", "add": 5})
    assert reply["ok"] is False and reply["error"]["code"] == "not_a_job"
    # A process of the job can only extend that job: a job id in the request means nothing.
    melon.run("mcancel", str(jid))  # (two CPUs here: room for the probe beside `other`)
    (melon.work / "probe.py").write_text(
        "import json, os, socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(chr(0) + os.environ['MELON_NODE_SOCKET'][1:])\n"
        f"s.sendall(json.dumps({{'op': 'extend', 'add': 7, 'job_id': {other}}}).encode() + b'\\n')\n"
        "print(s.makefile().readline(), end='')\n")
    probe = melon.submit("-t", "0:30", "-o", "probe-%j.out", "--wrap", f"{sys.executable} probe.py")
    wait_for(lambda: (melon.work / f"probe-{probe}.out").exists() and
             (melon.work / f"probe-{probe}.out").read_text().strip(), what="the probe job's answer")
    answer = json.loads((melon.work / f"probe-{probe}.out").read_text())
    assert answer["ok"] is True and answer["job_id"] == probe
    assert melon.job(probe)["time_limit_seconds"] == 37 and melon.job(other)["time_limit_seconds"] == 30
    melon.run("mcancel", str(other))


@needs_root
def test_policy_applies_as_on_the_login_node(melon_factory) -> None:
    """The owner's caps hold (an operator's own jobs are not bound by them, so the job is nobody's)."""
    melon = melon_factory(inventory='[partitions.short]\ndefault = true\nmax_time = "1:00"\n')
    jid = melon.submit("-t", "0:30", "-o", "capped-%j.out", "--export", "PATH",
                       "--wrap", f"{BIN}/mextend -t +5:00; echo rc=$?", user="nobody")
    melon.wait_state(jid, {"CD"})
    text = (melon.work / f"capped-{jid}.out").read_text()
    assert "rc=1" in text and "MaxTime" in text, text
    assert melon.job(jid)["time_limit_seconds"] == 30


def test_outside_a_job_mextend_still_needs_j(melon: Melon) -> None:
    r = melon.run("mextend", "-t", "+5", check=False)
    assert r.returncode != 0 and "give the job with -j ID" in r.stderr


def test_the_job_channel_bounds_every_number_as_the_api_does(melon: Melon) -> None:
    """An `add` of 2^62 was once granted (and then broke mshow), a larger one crashed the handler:
    every value past the API's own bounds is a clear refusal, and the limit stays as it was."""
    asks = [{"op": "extend", "add": 2**62}, {"op": "extend", "add": 2**64}, {"op": "extend", "to": 2**63},
            {"op": "extend", "add": 100 * 365 * 86400}, {"op": "extend", "add": 10**300}]
    (melon.work / "bounds.py").write_text(
        "import json, os, socket\n"
        f"for ask in {asks!r}:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect(chr(0) + os.environ['MELON_NODE_SOCKET'][1:])\n"
        "    s.sendall(json.dumps(ask).encode() + b'\\n')\n"
        "    print(s.makefile().readline(), end='', flush=True)\n"
        "    s.close()\n")
    jid = melon.submit("-t", "0:30", "-o", "bounds-%j.out", "--wrap", f"{sys.executable} bounds.py; sleep 30")
    out = melon.work / f"bounds-{jid}.out"
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == len(asks),
             what="the job's answers")
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    for ask, answer in zip(asks, answers):
        assert answer["ok"] is False and answer["error"]["code"] == "bad_request", (ask, answer)
    assert "100 years" in answers[0]["error"]["message"]
    assert "beyond the longest" in answers[3]["error"]["message"]  # 30 s + a century
    job = melon.job(jid)
    assert job["time_limit_seconds"] == 30 and not [e for e in job["events"] if e["kind"] == "extended"]
    assert melon.run("mshow", str(jid)).returncode == 0
    melon.run("mcancel", str(jid))
