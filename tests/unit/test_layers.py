"""Imports point one way between melond's layers (checked with `ast`, as test_bootstrap does for
the node helper's standard-library rule): the CLIs never reach the daemon's I/O layers, and
`main.py` never imports `cli`."""
from __future__ import annotations

import ast
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BASE = {"melond.errors", "melond.paths", "melond.files", "melond.trust", "melond.display", "melond.version",
        "melond.figures",
        "melon_remote.protocol", "melon_remote.marks"}
# What each part may import of ours, besides itself and BASE. Pure parts (spec, sched) import
# only the standard library; sched reads the typed records (a job, a step) but not the store.
ALLOWED: dict[str, set[str]] = {
    "melond.spec": set(),
    "melond.sched": {"melond.spec", "melond.state.job", "melond.state.step"},
    "melond.state": {"melond.spec"},
    "melond.config": {"melond.spec", "melond.state.dialect"},
    "melond.nss": set(),
    "melond.logs": set(),
    "melond.sdnotify": set(),
    "melond.heap": set(),
    "melond.service": set(),
    "melond.keys": set(),
    "melond.nodes": {"melond.spec", "melond.state.job", "melond.config", "melond.nss", "melon_remote.wire",
                     "melon_remote.bootstrap"},  # the node side's codec and first stage, shipped and imported
    "melond.engine": {"melond.spec", "melond.sched", "melond.state", "melond.config", "melond.nss", "melond.nodes"},
    "melond.api": {"melond.spec", "melond.sched", "melond.state", "melond.config", "melond.nss", "melond.nodes",
                   "melond.engine"},
    "melond.daemon": {"melond.spec", "melond.sched", "melond.state", "melond.config", "melond.nss", "melond.nodes",
                      "melond.engine", "melond.api", "melond.logs", "melond.keys", "melond.sdnotify", "melond.heap"},
    "melond.main": {"melond.config", "melond.logs", "melond.keys", "melond.service", "melond.daemon",
                    "melond.nodes.check",
                    "melond.nodes.setup",
                    "melond.state.store"},
    # srun binds its tasks to GPUs with the holder's function: the holder runs as a script of its
    # own on the job's other nodes, so that one copy lives there (melon_remote.holder.task_gpus)
    "melon_cli": {"melond.spec", "melond.api.tokens", "melon_remote.holder"},
}
STDLIB_ONLY = ("melond.spec", "melond.sched", "melond.errors", "melond.paths", "melond.trust", "melond.display",
               "melond.figures", "melond.sdnotify", "melond.heap", "melond.service", "melond.version", "melon_remote.protocol")


INSTALLED = {"cli": "melon_cli", "remote": "melon_remote"}  # the repository's folders' package names


def _module(path: pathlib.Path) -> str:
    top, *rest = path.relative_to(REPO).with_suffix("").parts
    return ".".join((INSTALLED.get(top, top), *rest)).removesuffix(".__init__")


def _part(module: str) -> str | None:
    """The longest key of ALLOWED (or BASE) the module belongs to."""
    for name in sorted({*ALLOWED, *BASE}, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _imports(path: pathlib.Path) -> set[str]:
    """Every module an absolute import names, at any depth of the file (lazy imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from melond import nss`
    return out


def _ours(name: str) -> bool:
    return name.split(".")[0] in ("melond", "melon_cli", "melon_remote")


def _allowed(module: str, target: str) -> bool:
    part = _part(module)
    if part is None or target in ("melond", "melon_remote", "melon_cli") or _part(target) in BASE:
        return True
    if _part(target) == part or (part == "melon_cli" and target.split(".")[0] == "melon_cli"):
        return True
    return any(target == a or target.startswith(a + ".") for a in ALLOWED[part])


FILES = sorted(p for d in ("melond", "cli") for p in (REPO / d).rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_one_way(path):
    module = _module(path)
    bad = sorted(t for t in _imports(path) if _ours(t) and not _allowed(module, t))
    assert bad == [], f"{module} ({_part(module)}) may not import {bad}"


@pytest.mark.parametrize("path", [p for p in FILES if _module(p).startswith(STDLIB_ONLY)],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_pure_parts_import_only_the_standard_library(path):
    third = sorted(t for t in _imports(path) if not _ours(t) and t.split(".")[0] not in sys.stdlib_module_names)
    assert third == [], f"{_module(path)} must stay standard-library only (the CLIs import it): {third}"


def test_the_checker_catches_a_wrong_direction():
    assert not _allowed("melon_cli.mqueue", "melond.state.store")
    assert not _allowed("melond.main", "melon_cli.common")
    assert not _allowed("melond.sched.plan", "melond.state.store")
    assert not _allowed("melond.spec.timespec", "melond.sched.plan")
    assert not _allowed("melond.nodes.fleet", "melond.engine.jobs")
    assert _allowed("melond.engine.ends", "melond.nodes.fleet")
    assert _allowed("melon_cli.mbatch", "melond.spec.directives")
