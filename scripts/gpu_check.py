#!/usr/bin/env python3
"""Melon's GPU checks against a real NVIDIA driver, for a machine with GPUs (run as root, from a
checkout after `make setup`):

    sudo .venv/bin/python scripts/gpu_check.py

It starts a melond of its own (a temporary state folder, this machine as its one node, the GPUs
found by nvidia-smi) and checks, printing a line for each:
- the node's GPUs are detected (sinfo's %G);
- `nvidia-smi -L` inside a `--gres=gpu:1` job lists exactly one GPU, the one SLURM_JOB_GPUS names;
- two such jobs at once get different GPUs;
- a job without GPUs lists none (its cgroup opens no GPU: nvidia-smi finds no device);
- `sacct` shows the job's gres/gpu;
- the job's GPU utilization and peak GPU memory are recorded at its end.
Exit status 0 when every check passed. Nothing outside the temporary folder is changed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
failures: list[str] = []


def check(what: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}{f': {detail}' if detail and not ok else ''}")
    if not ok:
        failures.append(what)


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=120)


def wait_done(env: dict, job: str) -> dict:
    for _ in range(600):
        shown = json.loads(run(env, str(BIN / "mshow"), "-p", job).stdout)
        if shown["state"] not in ("PD", "R"):
            return shown
        time.sleep(0.2)
    raise SystemExit(f"job {job} did not end within two minutes")


def main() -> int:
    if os.geteuid() != 0 or shutil.which("nvidia-smi") is None:
        print("run as root on a machine with NVIDIA GPUs and nvidia-smi")
        return 2
    root = Path(tempfile.mkdtemp(prefix="melon-gpu-"))
    os.chmod(root, 0o755)
    inventory = root / "inventory.toml"
    inventory.write_text(f'gpu_sample_interval = 1\n[partitions.gpu]\ndefault = true\n'
                         f'[nodes.here]\npartition = "gpu"\nspool = "{root}/spool"\n')
    env = {**os.environ, "MELON_API": f"unix:{root}/state/melond.sock"}
    slurm = run(env, str(BIN / "melon-slurm"), "env").stdout.splitlines()[0]
    env["PATH"] = slurm[len('export PATH="'):-len(':$PATH"')] + f":{BIN}:{env['PATH']}"
    daemon = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(root / "state"), "--inventory", str(inventory)],
                              stdout=subprocess.DEVNULL, stderr=open(root / "melond.log", "w"))
    try:
        for _ in range(100):
            if run(env, str(BIN / "minfo"), "--json").returncode == 0:
                break
            time.sleep(0.2)
        gres = run(env, "sinfo", "-h", "-o", "%G").stdout.strip()
        check("the GPUs are detected", gres.startswith("gpu:"), gres)
        node = json.loads(run(env, str(BIN / "minfo"), "--json").stdout)[0]
        print(f"     GRES {gres}; devices: {node.get('device_isolation') or 'not isolated'}")
        probe = "echo GPUS=$SLURM_JOB_GPUS; nvidia-smi -L; sleep 5"
        jobs = [run(env, str(BIN / "mbatch"), "--parsable", "--gres=gpu:1", "-o", f"{root}/gpu-%j.out",
                    "--wrap", probe).stdout.strip() for _ in range(2)]
        none = run(env, str(BIN / "mbatch"), "--parsable", "-o", f"{root}/none-%j.out", "--wrap",
                   "nvidia-smi -L; echo listed").stdout.strip()
        seen = []
        for job in jobs:
            wait_done(env, job)
            text = (root / f"gpu-{job}.out").read_text()
            listed = [line for line in text.splitlines() if line.startswith("GPU ")]
            check(f"job {job} (--gres=gpu:1) lists exactly one GPU", len(listed) == 1, text)
            seen.append(next((line for line in text.splitlines() if line.startswith("GPUS=")), ""))
        if int(gres.split(":")[-1].split(",")[0] or 0) >= 2:
            check("two GPU jobs at once get different GPUs", seen[0] != seen[1], " ".join(seen))
        wait_done(env, none)
        text = (root / f"none-{none}.out").read_text()
        check("a job without GPUs lists none", not any(line.startswith("GPU ") for line in text.splitlines()), text)
        acct = run(env, "sacct", "-j", jobs[0], "-X", "-n", "-P", "-o", "AllocTRES").stdout
        check("sacct shows the job's GPU", "gres/gpu=1" in acct, acct)
        from melon_cli.client import Client
        shown = Client(env["MELON_API"]).call("GET", f"/jobs/{jobs[0]}")
        check("the job's GPU use is recorded", shown.get("gpu_util") is not None and shown.get("gpu_mem_peak") is not None,
              str({k: shown.get(k) for k in ("gpu_util", "gpu_mem_peak")}))
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        print(f"     melond's log and the jobs' output: {root}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
