"""The manual pages: regenerated from the commands' definitions they equal the committed ones (so
they never drift from --help), every command has one, groff renders each without a warning, and
the package installs them (Slurm's names apart from Melon's, as `melon-slurm env` expects)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import gen_man  # noqa: E402 - scripts/ is not a package
import roff  # noqa: E402

PAGES = gen_man.pages()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_committed_pages_are_what_the_definitions_give() -> None:
    assert gen_man.stale() == [], "run `make man` (python scripts/gen_man.py) and commit man/"


def test_a_changed_help_text_is_caught(tmp_path: Path) -> None:
    gen_man.write(str(tmp_path))
    assert gen_man.stale(str(tmp_path)) == []
    page = tmp_path / gen_man.MELON_DIR / "mqueue.1"
    page.write_text(page.read_text().replace("Only my jobs.", "My jobs."))
    (tmp_path / gen_man.SLURM_DIR / "sbatch2.1").write_text(".TH X 1\n")
    assert gen_man.stale(str(tmp_path)) == [os.path.join(gen_man.MELON_DIR, "mqueue.1"),
                                            os.path.join(gen_man.SLURM_DIR, "sbatch2.1")]


def test_every_command_has_a_page() -> None:
    from melon_cli.slurm.env import COMMANDS

    melon = {f"{gen_man.MELON_DIR}/{name}.1" for name in PYPROJECT["project"]["scripts"]}
    slurm = {f"{gen_man.SLURM_DIR}/{name}.1" for name in COMMANDS}
    assert set(PAGES) == melon | slurm


def test_the_package_installs_them_apart() -> None:
    """pyproject's data-files: Melon's pages where man looks, Slurm's names where only
    `melon-slurm env`'s MANPATH leads, so a real Slurm's sbatch(1) is never replaced."""
    files = PYPROJECT["tool"]["setuptools"]["data-files"]
    installed = {f"{target}/{os.path.basename(path)}" for target, globs in files.items() for pattern in globs
                 for path in glob.glob(str(REPO / pattern))}
    assert installed == {f"share/man/man1/{os.path.basename(p)}" for p in PAGES if p.startswith(gen_man.MELON_DIR)} \
        | {f"share/melon/slurm/man/man1/{os.path.basename(p)}" for p in PAGES if p.startswith(gen_man.SLURM_DIR)}


@pytest.mark.parametrize("path", sorted(PAGES))
def test_groff_renders_each_page_without_a_warning(path: str) -> None:
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian: apt-get install groff-base), so the pages cannot be linted")
    out = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO / path)], capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize("path", sorted(PAGES))
def test_man_shows_each_page_with_its_sections(path: str) -> None:
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man-db or groff is not installed (Debian: man-db, groff-base)")
    out = subprocess.run(["man", "--warnings", "-l", str(REPO / path)], capture_output=True, text=True,
                         env={**os.environ, "MANWIDTH": "100", "PAGER": "cat"})
    assert (out.returncode, out.stderr) == (0, "")
    name = os.path.basename(path)[:-2]
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"):
        assert f"\n{heading}\n" in out.stdout
    words = " ".join(out.stdout.split())  # justified lines stretch the blanks
    assert f"NAME {name} - " in words and "--version" in words  # `\-` printed as the ASCII minus


def test_man_page_of_a_click_command_lists_what_its_help_lists() -> None:
    """The same definitions: every flag --help shows is in the page, with its words."""
    from melon_cli import mqueue

    cmd = mqueue.COMMAND.click()
    ctx = gen_man.context(cmd, "mqueue")
    page = PAGES[f"{gen_man.MELON_DIR}/mqueue.1"]
    for param in cmd.get_params(ctx):
        opts, words = param.get_help_record(ctx)
        for flag in param.opts:
            assert roff.escape(flag) in page
        assert roff.lines(roff.inline(words)).split("\n")[0] in page


@pytest.mark.parametrize(("text", "roffed"), [
    ("--cpus-per-task", "\\-\\-cpus\\-per\\-task"),
    ("C:\\dir", "C:\\edir"),
    ("a × b", "a \\[u00D7] b"),
])
def test_escape(text: str, roffed: str) -> None:
    assert roff.escape(text) == roffed


def test_a_line_never_starts_a_request_or_a_break() -> None:
    assert roff.lines(".hidden\n'quoted\n   indented") == "\\&.hidden\n\\&'quoted\nindented"
    assert roff.paragraphs("Run `mqueue -h`.\n\n    mbatch job.sh\n    .x") == [
        ".PP\nRun \\fBmqueue \\-h\\fR.", ".PP\n.RS 4\n.nf\n\\&mbatch job.sh\n\\&.x\n.fi\n.RE"]


def test_a_macro_argument_with_a_double_quote_is_refused() -> None:
    with pytest.raises(ValueError):
        roff.argument('say "hi"')
