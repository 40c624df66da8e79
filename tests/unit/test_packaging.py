"""pyproject's package list: every package folder of the repository, by its installed name, so a new
subpackage is never left out of the wheel (tests/e2e/test_e2e_install.py installs that wheel)."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_by_its_installed_name() -> None:
    folders = {folder: name for name, folder in SETUPTOOLS["package-dir"].items()} | {"melond": "melond"}
    found = set()
    for top, name in folders.items():
        for init in (REPO / top).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / top).parts
            found.add(".".join((name, *parts)))
    assert sorted(SETUPTOOLS["packages"]) == sorted(found)


def test_no_bare_generic_names_are_installed() -> None:
    assert not {"cli", "remote"} & {p.split(".")[0] for p in SETUPTOOLS["packages"]}
