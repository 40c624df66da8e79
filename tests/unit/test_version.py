"""`--version` on every command: `PROG (Melon) X.Y.Z`, exit 0, from melond/version.py (which
pyproject reads too), without loading click or importlib.metadata on a fast command's path; Slurm's
names print Slurm's line alone where a program reads it and add Melon's at a terminal."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from melon_cli import macct, mbatch, mcancel, mextend, mhold, minfo, mnode, mqueue, mshare, mshow, mtoken
from melon_cli.slurm import env
from melond import main as melond_main
from melond.version import __version__

REPO = Path(__file__).resolve().parents[2]
FAST = {"mbatch": mbatch.main, "mqueue": mqueue.main, "mcancel": mcancel.main, "mextend": mextend.main,
        "mshow": mshow.main, "macct": macct.main, "mshare": mshare.main, "mhold": mhold.hold, "mrelease": mhold.release,
        "melon-slurm": env.main}
CLICK = {"melond": melond_main.main, "minfo": minfo.main, "mnode": mnode.main, "mtoken": mtoken.main}
SLURM = ("sbatch", "srun", "squeue", "sinfo", "sacct", "scancel", "scontrol")


def _run(capsys, main, argv: list[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("prog", sorted({*FAST, *CLICK}))
def test_every_melon_command_prints_its_name_and_the_version(capsys, prog: str) -> None:
    main = FAST.get(prog) or CLICK[prog]
    assert _run(capsys, main, ["--version"]) == (0, f"{prog} (Melon) {__version__}\n", "")


def test_version_wins_over_what_a_command_needs_but_not_over_a_script_argument(capsys) -> None:
    assert _run(capsys, mhold.hold, ["--version"])[:2] == (0, f"mhold (Melon) {__version__}\n")  # no ids
    assert _run(capsys, mextend.main, ["-j", "3", "--version"])[:2] == (0, f"mextend (Melon) {__version__}\n")
    values = mbatch.COMMAND.parse(["job.sh", "--version"])  # mbatch's options end at the script
    assert (values["script"], values["args"]) == ("job.sh", ("--version",))
    assert mqueue.COMMAND.parse(["-o", "--version"])["fmt"] == "--version"  # an option's value


def test_the_fallback_to_click_knows_version_too(capsys) -> None:
    """A line the fast parser hands to click (here: no ids) still has --version, and --help shows it."""
    cmd = mhold.HOLD.click()
    assert _run(capsys, lambda argv: cmd(argv, prog_name="mhold"), ["--version"])[:2] == \
        (0, f"mhold (Melon) {__version__}\n")
    code, out, _ = _run(capsys, lambda argv: cmd(argv, prog_name="mhold"), ["--help"])
    assert code == 0 and "--version" in out


@pytest.mark.parametrize("prog", ["mqueue", "mbatch", "mhold", "melon-slurm"])
def test_version_imports_neither_click_nor_importlib_metadata(prog: str) -> None:
    """The launchers start Python with -S and the fast path imports little: --version adds nothing."""
    module, fn = {"mhold": ("melon_cli.mhold", "hold"), "melon-slurm": ("melon_cli.slurm.env", "main")}.get(
        prog, (f"melon_cli.{prog}", "main"))
    src = Path(sys.executable).parent.parent / "melon-src"  # the packages by their installed names
    code = (f"import sys\nsys.path.insert(0, {str(src)!r})\nfrom {module} import {fn}\n"
            f"try:\n    {fn}(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({'click', 'rich_click', 'importlib.metadata', 're', 'typing'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"{prog} (Melon) {__version__}", "[]"]


@pytest.mark.parametrize("prog", SLURM)
def test_slurm_names_add_melon_only_at_a_terminal(capsys, monkeypatch: pytest.MonkeyPatch, prog: str) -> None:
    """A program reading `-V` gets `slurm 23.11.0` alone (test_slurm_argv); a person at a terminal
    learns beneath it which implementation answers."""
    main = importlib.import_module(f"melon_cli.slurm.{prog}").main
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert _run(capsys, main, ["-V"]) == (0, f"slurm 23.11.0\n{prog} (Melon) {__version__}\n", "")


def test_pyproject_reads_the_version_from_melond() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "melond.version.__version__"}


def test_the_installed_launchers_answer(tmp_path: Path) -> None:
    """The venv's own launchers (scripts/write_launchers.py; -S for the fast ones), as a user runs them."""
    bin_dir = Path(sys.executable).parent
    names = [n for n in (*FAST, *CLICK) if (bin_dir / n).exists()]
    if not names:
        pytest.skip(f"no Melon launchers beside {sys.executable} (run `make setup`)")
    for name in names:
        out = subprocess.run([str(bin_dir / name), "--version"], capture_output=True, text=True, cwd=tmp_path,
                             env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
        assert (out.returncode, out.stdout, out.stderr) == (0, f"{name} (Melon) {__version__}\n", "")
