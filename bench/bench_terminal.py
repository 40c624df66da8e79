"""A keystroke's round trip in an interactive session on the Docker cluster, beside `ssh -tt` to
the same node: a byte typed into the local terminal, to the remote pty (whose line discipline
echoes it) and back, timed until the echo arrives. Melon's path is srun --pty's: this terminal,
a WebSocket to melond, melond's SSH connection to the node's helper, the job's holder, the pty;
ssh's is one SSH session straight to the node's sshd.

Both are measured in the same run, interleaved in rounds (the machine's speed drifts by up to 2x
within an hour), and reported with the ratio per round and its range. Brings up its own 3-node
cluster (tests/docker-sshd/cluster) and always tears it down.
Usage: python bench/bench_terminal.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time

import pexpect

from bench_cluster import CLUSTER, DIR, INVENTORY
from harness import BIN, REPO, docker_missing, median_range, melond, pct, skip, summary, table

ROUNDS = 5
KEYS = 40  # keystrokes per round and path
PROMPT = "RT> "


def keystrokes(child: pexpect.spawn, count: int) -> list[float]:
    """Milliseconds from writing one byte to reading its echo, `count` times (cooked mode: the
    remote pty echoes; the line is cleared with ^U every so often)."""
    out = []
    for i in range(count):
        key = "abcdefghij"[i % 10]
        start = time.perf_counter()
        child.send(key)
        child.expect_exact(key)
        out.append((time.perf_counter() - start) * 1000)
        if i % 10 == 9:
            child.send("\x15")  # ^U: kill the line
            time.sleep(0.05)
    return out


def ssh_command() -> list[str]:
    from melond import config
    node = config.load(str(INVENTORY)).nodes["node1"]
    return ["ssh", "-tt", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-i", node.identity_file, "-p", str(node.port), f"{node.user or 'root'}@{node.host}",
            f"env PS1='{PROMPT}' bash --norc --noprofile"]


def main() -> None:
    why = docker_missing()
    if why:
        skip("terminal", why)
    subprocess.run([str(CLUSTER), "up", "3", "--inventory", str(INVENTORY), "--dir", str(DIR)], check=True)
    try:
        with melond("--inventory", str(INVENTORY)) as (client, state, work, _):
            slurm_bin = subprocess.run([str(BIN / "melon-slurm"), "env"], capture_output=True, text=True,
                                       check=True).stdout.split('"')[1].split(":")[0]
            env = {**os.environ, "MELON_API": f"unix:{state}/melond.sock", "TERM": "xterm",
                   "PATH": f"{slurm_bin}:{BIN}:{os.environ['PATH']}"}
            melon = pexpect.spawn(f"{slurm_bin}/srun", ["--pty", "-w", "node1", "-t", "10", "env", f"PS1={PROMPT}",
                                                        "bash", "--norc", "--noprofile"],
                                  env=env, cwd=str(DIR / "shared"), encoding="utf-8", timeout=60)
            ssh = pexpect.spawn(ssh_command()[0], ssh_command()[1:], env=env, encoding="utf-8", timeout=60)
            for child in (melon, ssh):
                child.delaybeforesend = None  # pexpect waits 50 ms before each send unless told not to
                child.expect_exact(PROMPT)
            ours, theirs, ratios = [], [], []
            for _ in range(ROUNDS):
                a, b = keystrokes(melon, KEYS), keystrokes(ssh, KEYS)
                ours += a
                theirs += b
                ratios.append(statistics.median(a) / statistics.median(b))
            for child in (melon, ssh):
                child.sendline("")
                child.sendline("exit")
                child.expect(pexpect.EOF)
    finally:
        subprocess.run([str(CLUSTER), "down", "--dir", str(DIR)], check=False)
        INVENTORY.unlink(missing_ok=True)
    table(f"A keystroke's round trip to node1 and its echo back ({ROUNDS} rounds of {KEYS}, interleaved)",
          ["path", "p50 ms", "p90 ms", "ratio to ssh -tt, median (range over rounds)"],
          [["ssh -tt node1 (one SSH session to its sshd)", f"{statistics.median(theirs):.2f}",
            f"{pct(theirs, 0.9):.2f}", "1.00"],
           ["srun --pty -w node1 (WebSocket to melond, its SSH connection, the holder)",
            f"{statistics.median(ours):.2f}", f"{pct(ours, 0.9):.2f}",
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"]])
    summary("terminal", f"{statistics.median(ours):.2f} ms a keystroke, {median_range(ratios, 'x ssh -tt')}")


if __name__ == "__main__":
    os.chdir(REPO)
    main()
