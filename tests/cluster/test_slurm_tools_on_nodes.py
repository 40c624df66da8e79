"""A tool that drives Slurm, unchanged, with its jobs on the Docker cluster's sshd nodes."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import Melon, slurm_names_env

TOOLS = Path(__file__).parent.parent / "e2e" / "slurm_tools"


def _copy_packages(names: list[str], into: Path) -> None:
    """The pure-Python packages the job needs, on the shared folder: nothing is installed on a node."""
    into.mkdir(parents=True)
    for name in names:
        origin = Path(importlib.util.find_spec(name).origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, into / origin.name)


def test_submitit_maps_an_array_across_the_nodes(melon_on_cluster: Melon) -> None:
    m = melon_on_cluster
    lib = m.work / "pylib"
    _copy_packages(["submitit", "cloudpickle", "typing_extensions"], lib)
    # The nodes' own interpreter runs the job (submitit's python=); srun inside a job needs Melon's
    # commands on the node, which a site's shared install gives, so the job runs Python directly.
    r = subprocess.run([sys.executable, str(TOOLS / "submitit_run.py"), str(m.work / "submitit"), "--python",
                        "/usr/bin/python3", "--no-srun", "--only-map"], capture_output=True, text=True,
                       env=slurm_names_env(m, PYTHONPATH=str(lib)), cwd=m.work, timeout=180)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-4000:]}"
    (mapped,) = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert mapped["map"] == [10, 20, 30]
    assert set(mapped["hosts"]) <= {"node1", "node2", "node3"} and all(mapped["hosts"])
