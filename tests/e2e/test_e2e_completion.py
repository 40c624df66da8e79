"""Shell completion for every command, with job ids and node names from the real melond."""
from __future__ import annotations

import subprocess

import pytest

from conftest import BIN, Melon

COMMANDS = ["mbatch", "mqueue", "mcancel", "mextend", "mshow", "minfo", "mhold", "mrelease", "mnode", "mtoken"]


def _complete(melon: Melon, words: str, cword: int) -> list[str]:
    tool = words.split()[0]
    env = melon.env(COMP_WORDS=words, COMP_CWORD=str(cword), **{f"_{tool.upper()}_COMPLETE": "bash_complete"})
    r = subprocess.run([str(BIN / tool)], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split(",", 1)[1] for line in r.stdout.splitlines()]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_command_has_a_completion_script(melon: Melon, shell: str) -> None:
    for tool in COMMANDS:
        env = melon.env(**{f"_{tool.upper()}_COMPLETE": f"{shell}_source"})
        r = subprocess.run([str(BIN / tool)], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0 and f"_{tool}_completion" in r.stdout.replace("-", "_"), (tool, shell, r)


def test_job_ids_and_nodes_complete_from_the_queue(melon: Melon) -> None:
    single = melon.submit("-H", "--wrap", "true")
    arr = melon.submit("-H", "--array", "1-2", "--wrap", "true")
    assert set(_complete(melon, "mcancel ", 1)) == {str(single), str(arr), f"{arr}_1", f"{arr}_2"}
    assert set(_complete(melon, f"mshow {arr}_", 1)) == {f"{arr}_1", f"{arr}_2"}
    assert str(single) in _complete(melon, "mextend -j ", 2)
    assert _complete(melon, "mnode drain ", 2) == ["local"]
    assert "--partition" in _complete(melon, "mqueue --pa", 1)
    melon.run("mcancel", str(single), str(arr))


def test_no_melond_completes_nothing_quietly(melon: Melon) -> None:
    env = melon.env(COMP_WORDS="mcancel ", COMP_CWORD="1", _MCANCEL_COMPLETE="bash_complete",
                    MELON_API="unix:/nonexistent/melond.sock")
    r = subprocess.run([str(BIN / "mcancel")], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr == ""
