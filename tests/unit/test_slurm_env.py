"""`melon-slurm env`: the PATH line, then the MANPATH line whose trailing empty element keeps man's
own search path, so `man sbatch` finds Melon's page and every other page is still found."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from melon_cli.slurm import env


@pytest.fixture
def lines(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    monkeypatch.setattr(env, "bin_dir", lambda: str(tmp_path / "slurm" / "bin"))
    env.main(["env"])
    out = capsys.readouterr()
    assert out.err == ""
    return out.out.splitlines()


def test_path_first_then_manpath(lines: list[str], tmp_path: Path) -> None:
    assert lines == [f'export PATH="{tmp_path}/slurm/bin:$PATH"', f'export MANPATH="{env.man_dir()}:${{MANPATH-}}"']
    assert (tmp_path / "slurm" / "bin" / "sbatch").exists()


@pytest.mark.parametrize(("before", "after"), [
    (None, "{dir}:"),  # unset: a trailing empty element, man's own path after Melon's
    ("", "{dir}:"),
    ("/opt/man", "{dir}:/opt/man"),  # the user's choice, kept as it was
    (":/opt/man", "{dir}::/opt/man"),  # an empty element stays one
])
def test_manpath_keeps_what_was_there(lines: list[str], before: str | None, after: str) -> None:
    unset = "unset MANPATH; " if before is None else f"MANPATH='{before}'; "
    out = subprocess.run(["sh", "-c", unset + lines[1] + '; printf %s "$MANPATH"'], capture_output=True, text=True,
                         check=True)
    assert out.stdout == after.format(dir=env.man_dir())


def test_man_finds_melons_sbatch_and_still_the_system_pages(lines: list[str]) -> None:
    if not shutil.which("man"):
        pytest.skip("man-db is not installed (Debian: apt-get install man-db)")
    if subprocess.run(["sh", "-c", "unset MANPATH; man -w sbatch"], capture_output=True).returncode == 0:
        pytest.skip("a real Slurm's sbatch(1) is installed here, which man-db's cache ranks first (README)")
    script = f"unset MANPATH; {lines[1]}; man -w sbatch; man -w man"
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    found = out.stdout.splitlines()
    assert found[0] == f"{env.man_dir()}/man1/sbatch.1", out.stderr
    if len(found) < 2:
        pytest.skip("this system has no man(1) page of its own to find (a minimal image)")
    assert not found[1].startswith(env.man_dir())


def test_an_installation_uses_its_share_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip puts the pages in <prefix>/share/melon/slurm/man; a checkout installed in place has its man/slurm."""
    assert env.man_dir() == str(Path(env.__file__).resolve().parents[2] / "man" / "slurm") or \
        Path(env.man_dir()).match("share/melon/slurm/man")
    (tmp_path / "share" / "melon" / "slurm" / "man").mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python3"))
    assert env.man_dir() == str(tmp_path / "share" / "melon" / "slurm" / "man")


def test_help_and_version_and_usage(capsys) -> None:
    env.main(["--help"])
    assert capsys.readouterr().out == env.HELP
    with pytest.raises(SystemExit) as exc:
        env.main(["bogus"])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith('usage: eval "$(melon-slurm env)"')
