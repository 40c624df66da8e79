"""Melon as a site installs it: a wheel built from this checkout (offline, with the build backend
pyproject names) and the checkout itself, each pip-installed into a fresh venv (what pipx does,
in a venv of its own). Each puts only Melon's own names in site-packages, runs a job end to end
with its own commands (the node helper bootstrapped from the installed melon_remote), ships its
man pages and systemd unit, and lets a user who cannot write the install run `melon-slurm env`."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, REPO, as_user, needs_root, wait_for

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
DEPS = sysconfig.get_paths()["purelib"]  # the test venv's site-packages: Melon's dependencies, offline


def _run(*args: str | Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def place() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mi-", dir="/tmp"))
    d.chmod(0o755)  # other users run the installed commands
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(place: Path) -> Path:
    out = place / "dist"
    _run(BIN / "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, REPO, cwd=place)
    (found,) = out.glob("melon-*.whl")
    return found


def _install(place: Path, name: str, what: str | Path, *pip_args: str) -> Path:
    """A fresh venv with Melon installed from `what` (a wheel or a source folder). Its
    dependencies come from the test venv through a path entry, so nothing is downloaded."""
    venv = place / name
    _run(PYTHON, "-m", "venv", venv)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "melon-deps.pth").write_text(DEPS + "\n")
    _run(venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", *pip_args, what, cwd=place)
    return venv


def _site(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site


def _runs_a_job(venv: Path, place: Path) -> None:
    """melond and the CLIs of the install: a job submitted, run on the local node, accounted."""
    state = Path(tempfile.mkdtemp(prefix="st-", dir=place))
    empty = state / "no-inventory.toml"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELON_", "SLURM_", "SBATCH_"))}
    env |= {"MELON_API": f"unix:{state}/s/melond.sock", "MELON_CONFIG": str(empty)}
    log = open(state / "melond.log", "ab")
    melond = subprocess.Popen([venv / "bin" / "melond", "--state-dir", state / "s", "--kill-wait", "1"],
                              stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        wait_for(lambda: (state / "s" / "melond.sock").exists() or melond.poll() is not None, timeout=30,
                 what="the installed melond to serve")
        assert melond.poll() is None, (state / "melond.log").read_text()[-3000:]
        job = _run(venv / "bin" / "mbatch", "--parsable", "-o", place / "out-%j.txt", "--wrap",
                   "python3 -c 'import sys; print(\"ran\", sys.version_info[0])'", env=env, cwd=place).stdout.strip()

        def ended() -> dict | None:
            shown = json.loads(_run(venv / "bin" / "mshow", "-p", job, env=env).stdout)
            return shown if shown["state"] not in ("PD", "R", "CG") else None
        shown = wait_for(ended, timeout=30, what=f"job {job} to end")
        assert shown["state"] == "CD", shown
        assert (place / f"out-{job}.txt").read_text() == "ran 3\n"
        assert job in _run(venv / "bin" / "macct", "-j", job, "-P", "-o", "JobID,State", env=env).stdout
    finally:
        melond.send_signal(signal.SIGTERM)
        melond.wait(timeout=30)
        log.close()


@needs_root
def test_a_wheel_installs_under_melons_own_names_and_runs_a_job(place: Path, wheel: Path) -> None:
    venv = _install(place, "from-wheel", wheel)
    site = _site(venv)
    ours = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))} - {
        "pip", "setuptools", "pkg_resources", "_distutils_hack"}
    assert ours == {"melond", "melon_cli", "melon_remote"}, ours  # no bare `cli` or `remote`
    assert (site / "melond" / "data" / "melond.service").is_file() and (site / "melond" / "ui").is_dir()
    for page in ("mbatch.1", "melond.1", "mqueue.1"):
        assert (venv / "share" / "man" / "man1" / page).is_file()
    assert (venv / "share" / "melon" / "slurm" / "man" / "man1" / "sbatch.1").is_file()
    assert not (venv / "share" / "man" / "man1" / "sbatch.1").exists()  # never where a real Slurm's is
    version = _run(venv / "bin" / "mqueue", "--version").stdout
    assert version.startswith("mqueue (Melon) ")
    unit = _run(venv / "bin" / "melond", "--print-systemd-unit").stdout
    assert f"ExecStart={venv / 'bin' / 'melond'}" in unit
    _runs_a_job(venv, place)


@needs_root
def test_the_checkout_pip_installs_as_the_wheel_does(place: Path) -> None:
    source = place / "source"  # a copy: the build leaves its build/ and egg-info there
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests", "bench"))
    venv = _install(place, "from-source", source, "--no-build-isolation")
    assert {p.name for p in _site(venv).iterdir()} >= {"melond", "melon_cli", "melon_remote"}
    assert not {"cli", "remote"} & {p.name for p in _site(venv).iterdir()}
    _runs_a_job(venv, place)


@needs_root
def test_melon_slurm_env_works_for_a_user_who_cannot_write_the_install(place: Path, wheel: Path) -> None:
    """A site's install is root's, read-only to users: `melon-slurm env` writes the launchers in the
    user's own data folder instead, and Slurm's names then run from there."""
    venv = _install(place, "site", wheel)
    home = place / "nobody-home"
    home.mkdir()
    shutil.chown(home, "nobody")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    lines = _run(venv / "bin" / "melon-slurm", "env", env=env, preexec_fn=as_user("nobody")).stdout.splitlines()
    path_line = lines[0]
    assert path_line.startswith(f'export PATH="{home / "data" / "melon" / "slurm"}/') and path_line.endswith(
        '/bin:$PATH"'), lines
    assert not (venv / "slurm").exists()  # nothing written into the install
    assert f'export MANPATH="{venv / "share" / "melon" / "slurm" / "man"}:' in lines[1]
    shell = _run("bash", "-c", f'{"; ".join(lines)}; command -v sbatch; sbatch --version', env=env,
                 preexec_fn=as_user("nobody")).stdout.splitlines()
    assert shell[0].startswith(str(home / "data")) and shell[1] == "slurm 23.11.0", shell
    again = _run(venv / "bin" / "melon-slurm", "env", env=env, preexec_fn=as_user("nobody")).stdout.splitlines()
    assert again == lines  # the same folder each time

    # Once root has run it, the install's own launchers serve everyone.
    root_lines = _run(venv / "bin" / "melon-slurm", "env").stdout.splitlines()
    assert root_lines[0] == f'export PATH="{venv / "slurm" / "bin"}:$PATH"'
    assert _run(venv / "bin" / "melon-slurm", "env", env=env, preexec_fn=as_user("nobody")).stdout.splitlines()[0] \
        == root_lines[0]
