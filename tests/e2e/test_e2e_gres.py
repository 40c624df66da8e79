"""Generic resources (GPUs, licenses) a node has, from the inventory in gres.conf's terms, shown
where Slurm shows them: sinfo's %G, scontrol show node's Gres=, minfo and the API."""
from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import Melon, slurm_names_env
from melon_cli.client import Client

INVENTORY = """[partitions.p]
default = true
[nodes.g1]
partition = "p"
spool = "{tmp}/spool1"
gres = [{{name = "gpu", type = "a100", files = "/dev/nvidia[0-1]"}}, {{name = "license_x", count = 2}}]
[nodes.c1]
partition = "p"
spool = "{tmp}/spool2"
"""


def test_a_nodes_gres_is_shown_as_slurm_shows_it(short_tmp: Path) -> None:
    melon = Melon(short_tmp / "m", inventory=INVENTORY.format(tmp=short_tmp))
    melon.start()
    try:
        env = slurm_names_env(melon)

        def run(*args: str) -> str:
            r = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout
        assert run("sinfo", "-N", "-h", "-o", "%N %G").splitlines() == ["c1 (null)", "g1 gpu:a100:2,license_x:2"]
        assert sorted(run("sinfo", "-h", "-o", "%D %G").splitlines()) == ["1 (null)", "1 gpu:a100:2,license_x:2"]
        assert "Gres=gpu:a100:2,license_x:2" in run("scontrol", "show", "node", "g1")
        assert "Gres=(null)" in run("scontrol", "show", "node", "c1")
        table = run("minfo").splitlines()
        assert table[0].split()[-1] == "GRES"
        assert {line.split()[0]: line.split()[-1] for line in table[1:3]} == {"g1": "gpu:a100:2,license_x:2", "c1": "-"}
        assert {n["name"]: n["gres"] for n in Client(melon.endpoint).call("GET", "/nodes")["nodes"]} == {
            "g1": "gpu:a100:2,license_x:2", "c1": None}
    finally:
        melon.cleanup()
