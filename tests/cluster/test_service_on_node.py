"""melond under a real systemd (a Docker node boots systemd as PID 1): installed from its wheel
into a venv of its own, its unit installed by `melond --install-systemd-unit`, started, stopped and
restarted with a job running, and killed to see Restart=on-failure bring it back. The job outlives
every stop and is adopted, as the unit's KillMode=process promises (README, "Run melond as a
service")."""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, REPO, Cluster, needs_root

NODE = "node3"
VENV = "/opt/melon-svc"
UNIT = "/etc/systemd/system/melond.service"


def _requirements(name: str) -> list[str]:
    """The distributions `name` needs at run time (no extras), as installed here."""
    out = []
    for line in importlib.metadata.requires(name) or []:
        if "extra ==" in line:
            continue
        out.append(re.match(r"[A-Za-z0-9_.-]+", line).group(0))
    return out


def _stage_dependencies(into: Path) -> None:
    """Melon's run-time dependencies (and pip, to install the wheel with), copied file by file from
    this venv: the node has the same Debian and Python, and no package index to download from."""
    seen: set[str] = set()
    todo = _requirements("melon") + ["pip"]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement only for another Python (a marker)
        root = Path(dist.locate_file(""))
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts in bin/, bytecode
            target = into / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / file, target)
        todo += _requirements(name)


def _on_node(cluster: Cluster, script: str, check: bool = True, timeout: float = 120) -> str:
    r = subprocess.run(["docker", "exec", f"melon-{NODE}", "bash", "-c", script], capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, f"{script}\nexit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout.strip()


def _wait(cluster: Cluster, script: str, what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["docker", "exec", f"melon-{NODE}", "bash", "-c", script], capture_output=True,
                             text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}: {out.stdout[-1000:]} {out.stderr[-1000:]}")
        time.sleep(0.5)


@needs_root
def test_melond_runs_as_a_systemd_service_whose_stops_and_restarts_leave_jobs_running(cluster: Cluster) -> None:
    staged = cluster.shared / "melon-svc"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        subprocess.run([str(BIN / "pip"), "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(staged),
                        str(REPO)], check=True, capture_output=True, cwd=staged.parent)
        (wheel,) = staged.glob("melon-*.whl")
        _stage_dependencies(staged / "deps")
        if _on_node(cluster, "cat /proc/1/comm") != "systemd":
            pytest.skip(f"{NODE} does not boot systemd as PID 1 here")
        _on_node(cluster, f"""set -e
            python3 -m venv --without-pip {VENV}
            echo {staged / 'deps'} > $(echo {VENV}/lib/python3*/site-packages)/melon-deps.pth
            {VENV}/bin/python -m pip install -q --no-deps --no-index {wheel}""")
        said = _on_node(cluster, f"{VENV}/bin/melond --install-systemd-unit")
        assert f"wrote {UNIT} (ExecStart={VENV}/bin/melond)" in said
        assert f"ExecStart={VENV}/bin/melond" in _on_node(cluster, f"cat {UNIT}")

        # Type=notify: `systemctl start` returns once melond serves, so mbatch works at once.
        _on_node(cluster, "systemctl daemon-reload && systemctl start melond && systemctl is-active melond")
        job = _on_node(cluster, f"{VENV}/bin/mbatch --parsable -t 2:00 -D /root -o svc-%j.out "
                                "--wrap 'sleep 25; echo survived'")
        _wait(cluster, f"{VENV}/bin/mqueue -h -j {job} -o %t | grep -x R", f"job {job} to run")

        _on_node(cluster, "systemctl stop melond")  # SIGTERM to melond alone (KillMode=process)
        assert _on_node(cluster, "systemctl is-active melond", check=False) == "inactive"
        assert _on_node(cluster, "pgrep -fx 'sleep 25'"), "stopping the service killed the job"

        _on_node(cluster, "systemctl start melond")
        assert _on_node(cluster, f"{VENV}/bin/mqueue -h -j {job} -o %t") == "R"  # adopted

        # A crash (SIGKILL to melond alone): Restart=on-failure brings it back after RestartSec.
        _on_node(cluster, "systemctl kill --kill-whom=main -s KILL melond")
        _wait(cluster, "[ \"$(systemctl show -p NRestarts --value melond)\" = 1 ] && systemctl is-active melond",
              "systemd to restart melond", timeout=30)
        assert _on_node(cluster, "pgrep -fx 'sleep 25'"), "melond's crash killed the job"
        _wait(cluster, f"{VENV}/bin/mqueue -h --all -j {job} -o %t | grep -x CD", f"job {job} to complete", 40)
        assert _on_node(cluster, f"cat /root/svc-{job}.out") == "survived"
        assert "melond ready" in _on_node(cluster, "journalctl -u melond -o cat --no-pager")
    finally:
        _on_node(cluster, f"systemctl disable --now melond; rm -f {UNIT}; systemctl daemon-reload; "
                          f"systemctl reset-failed melond; pkill -fx 'sleep 25'; "
                          f"rm -rf {VENV} /var/lib/melon /etc/melon /root/svc-*.out", check=False)
        shutil.rmtree(staged, ignore_errors=True)
