"""Melon reads the held-out Slurm corpus (64 real scripts) as sbatch's lenient rules say.

Expected values: tests/data/sbatch-conformance/expected.jsonl, derived by its RULES.md. Melon's
own defaults fill what the corpus leaves null (1 CPU, the script's name, melon-%j.out).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from melond.spec.directives import scan_script
from melond.spec.request import DEFAULT_OUTPUT, build_request, dry_run_view

CONFORMANCE = Path(__file__).resolve().parents[1] / "data" / "sbatch-conformance"


def _entries() -> list:
    """One pytest param per expected.jsonl entry, with the script's file name as id."""
    path = CONFORMANCE / "expected.jsonl"
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [pytest.param(entry, id=entry["file"]) for entry in entries]


def _expected_memory(entry: dict, cpus: int) -> int | None:
    """--mem wins (Melon's rule when both are given); --mem-per-cpu is per CPU."""
    if entry["mem_bytes"] is not None:
        return entry["mem_bytes"]
    if entry["mem_per_cpu_bytes"] is not None:
        return entry["mem_per_cpu_bytes"] * cpus
    return None


def _expected(entry: dict) -> dict:
    cpus = entry["cpus_per_task"] or 1
    per_gpu = {"--cpus-per-gpu", "--mem-per-gpu"} & set(entry["other_directives_canonical"])
    if per_gpu:  # Melon turns them into the job's CPUs and memory: checked by test_per_gpu_options_size_the_job
        return {key: value for key, value in _plain(entry, cpus).items()
                if not (key == "cpus" and "--cpus-per-gpu" in per_gpu and not entry["cpus_per_task"])
                and not (key == "memory" and "--mem-per-gpu" in per_gpu)}
    return _plain(entry, cpus)


def _plain(entry: dict, cpus: int) -> dict:
    return {
        "time_limit": None if entry["time_limit_seconds"] in (None, "unlimited") else entry["time_limit_seconds"],
        "cpus": cpus,
        "memory": _expected_memory(entry, cpus),
        "name": entry["job_name"] if entry["job_name"] is not None else entry["file"],
        "output": entry["output"] if entry["output"] is not None else DEFAULT_OUTPUT,
        "error": entry["error"],
        "array": entry["array"],
        "nodes": entry["nodes"],
        "ntasks": entry["ntasks"],
        "ntasks_per_node": entry["ntasks_per_node"],
    }


def test_per_gpu_options_size_the_job() -> None:
    """--gres=gpu:8 --cpus-per-gpu=4 --mem-per-gpu=20G on one node: 32 CPUs and 160 GiB, as
    Slurm allocates them; with -c given too, -c wins and Melon says Slurm would refuse both."""
    by_file = {p.values[0]["file"]: p.values[0] for p in _entries()}
    for name, cpus, memory in (("030_nodestest_template.sh", 32, 160 << 30), ("009_psmn_1gpu.sh", 1, 12 << 30)):
        text = (CONFORMANCE / "scripts" / name).read_text()
        request, warnings = build_request(
            script_text=text, script_path=name, script_args=[], cli={}, environ={}, cwd="/home/u",
            submit_host="login", user="u", now=1_700_000_000.0)
        assert (request["cpus"], request["memory"]) == (cpus, memory), name
        assert by_file[name]["sbatch_accepts"] is True or any("cpus-per-gpu" in w for w in warnings)
    assert request["gres"] == "gpu:1" and request["gpus_per_task"] == "gpu:1"


@pytest.mark.parametrize("entry", _entries())
def test_corpus_script(entry: dict) -> None:
    text = (CONFORMANCE / "scripts" / entry["file"]).read_bytes().decode("utf-8", errors="surrogateescape")
    request, warnings = build_request(
        script_text=text, script_path=entry["file"], script_args=[], cli={}, environ={"HOME": "/home/u"},
        cwd="/home/u", submit_host="login", user="u", now=1_700_000_000.0,
    )
    view = dry_run_view(request, warnings)
    expected = _expected(entry)
    assert {key: view[key] for key in expected} == expected
    assert request["exclusive"] is entry["exclusive"]
    if entry["sbatch_accepts"] is False:
        assert view["warnings"], "sbatch refuses this script, so Melon must at least warn"


def test_corpus_through_the_real_mbatch(tmp_path: Path) -> None:
    """The same corpus through the installed `mbatch --dry-run --json`, as a user would run it."""
    path = CONFORMANCE / "expected.jsonl"
    mbatch = Path(sys.executable).parent / "mbatch"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "MBATCH_"))}
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        shutil.copy(CONFORMANCE / "scripts" / entry["file"], tmp_path / entry["file"])
        r = subprocess.run([str(mbatch), "--dry-run", "--json", entry["file"]], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{entry['file']}: {r.stderr}"
        view = json.loads(r.stdout)
        assert sorted(view) == sorted(["name", "cpus", "nodes", "ntasks", "ntasks_per_node", "memory", "time_limit", "output", "error", "chdir",
                                       "array", "script_args", "warnings"])
        expected = _expected(entry)
        assert {key: view[key] for key in expected} == expected, entry["file"]
        assert view["chdir"] == str(tmp_path)


@pytest.mark.parametrize("entry", _entries())
def test_corpus_directive_lines(entry: dict) -> None:
    text = (CONFORMANCE / "scripts" / entry["file"]).read_bytes().decode("utf-8", errors="surrogateescape")
    scan = scan_script(text)
    assert [directive.line for directive in scan.directives] == entry["directive_lines"]
    assert scan.first_command_line == entry["first_command_line"]
    assert [line for line, _ in scan.ignored] == entry["ignored_directive_lines"]
