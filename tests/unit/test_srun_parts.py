"""srun's pure parts: how a step takes the job's CPUs, and each task's own CPUs."""
from __future__ import annotations

import pytest

from melon_cli.slurm.srun import _binding, _mode, _unbound
from melond.errors import MelonError


@pytest.mark.parametrize(("opts", "env", "mode"), [
    ({}, {}, "whole"), ({"exact": ""}, {}, "exact"), ({"exclusive": ""}, {}, "exact"),
    ({"cpus-per-task": "2"}, {}, "exact"), ({"overlap": ""}, {}, "overlap"), ({}, {"SLURM_OVERLAP": "1"}, "overlap"),
    ({}, {"SLURM_EXACT": "1"}, "exact")])
def test_how_a_step_takes_the_jobs_cpus(opts: dict, env: dict, mode: str, monkeypatch) -> None:
    """srun.1 --exact/--overlap (Slurm >= 21.08): -c implies --exact; --exclusive inside a job is --exact."""
    for name in ("SLURM_OVERLAP", "SLURM_EXACT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _mode(opts) == mode


def test_exclusive_and_overlap_contradict() -> None:
    with pytest.raises(MelonError, match="--exclusive and --overlap are mutually exclusive"):
        _mode({"exclusive": "", "overlap": ""})


def test_each_task_gets_its_own_cpus_unless_told_not_to(monkeypatch) -> None:
    assert _binding([4, 5, 6, 7], 2, 2) == [[4, 5], [6, 7]]
    assert _binding([4, 5], 3, 1) == [[4, 5]] * 3  # too few for one each: they share the step's
    assert _binding([], 2, 1) == []  # the job is not pinned
    monkeypatch.delenv("SLURM_CPU_BIND", raising=False)
    assert _unbound({"cpu-bind": "quiet,none"}) and not _unbound({"cpu-bind": "cores"}) and not _unbound({})
    monkeypatch.setenv("SLURM_CPU_BIND", "none")
    assert _unbound({})
