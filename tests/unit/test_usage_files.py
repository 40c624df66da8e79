"""Reading what a job used from its cgroup's files, as the kernel writes them.

This host mounts cgroup v1, so the v2 files are laid out in a folder here; the real v2 reading
runs where a node has cgroup v2 (the qemu VM). The v1 path is also read for real by the e2e and
cluster tests (tests/e2e/test_e2e_macct.py, tests/cluster/test_cluster.py).
"""
from __future__ import annotations

from pathlib import Path

from melon_remote.cgroup import NoLimits, v1_peak, v2_usage

CPU_STAT = "usage_usec 1534221\nuser_usec 1400000\nsystem_usec 134221\nnr_periods 0\n"


def test_v2_cpu_stat_and_memory_peak(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text(CPU_STAT)
    (tmp_path / "memory.peak").write_text("314572800\n")
    assert v2_usage(str(tmp_path)) == (1.534221, 314572800)


def test_v2_without_memory_peak_leaves_it_to_the_rusage(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text(CPU_STAT)  # kernels before 5.19 have no memory.peak
    assert v2_usage(str(tmp_path)) == (1.534221, None)
    assert v2_usage(str(tmp_path / "gone")) == (None, None)  # the cgroup was removed


def test_v1_memory_high_water_mark(tmp_path: Path) -> None:
    (tmp_path / "memory.max_usage_in_bytes").write_text("209715200\n")
    assert v1_peak(str(tmp_path)) == 209715200
    assert v1_peak(str(tmp_path / "gone")) is None


def test_a_node_without_cgroups_reports_nothing_itself() -> None:
    assert NoLimits("1", 1, 0, 0, "s").usage() == (None, None)
