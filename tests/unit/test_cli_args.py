"""The commands' fast option parser (cli.args) against the rich-click command built from the same
table: whatever the fast path accepts, click reads the same way; whatever it cannot place goes to click."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melon_cli import macct, mbatch, mcancel, mextend, mqueue, mshare, mshow
from melon_cli.args import Fallback

COMMANDS = {"mbatch": mbatch.COMMAND, "mqueue": mqueue.COMMAND, "mcancel": mcancel.COMMAND,
            "mextend": mextend.COMMAND, "mshow": mshow.COMMAND, "macct": macct.COMMAND, "mshare": mshare.COMMAND}


def _click_values(command, argv: list[str]) -> dict:
    cmd = command.click()
    with cmd.make_context(command.prog, list(argv)) as ctx:
        values = dict(ctx.params)
    return values


def _fast_values(command, argv: list[str], monkeypatch=None) -> dict:
    values = command.parse(argv)
    return values


@pytest.mark.parametrize("argv, expected", [
    (["-c4", "job.sh"], {"opt_cpus_per_task": "4", "script": "job.sh", "args": ()}),
    (["-Hc", "4", "job.sh", "-c", "8"], {"opt_hold": True, "opt_cpus_per_task": "4", "args": ("-c", "8")}),
    (["--time=1:00", "--wrap", "true"], {"opt_time": "1:00", "opt_wrap": "true", "script": None}),
    (["--", "-weird.sh", "a"], {"script": "-weird.sh", "args": ("a",)}),
    (["--parsable", "-W", "--dry-run", "--json", "x.sh"], {"parsable": True, "wait": True, "dry_run": True}),
    (["--api_endpoint", "http://[::1]:8080", "x.sh"], {"endpoint": "http://[::1]:8080"}),
])
def test_mbatch_reads_getopt_forms(argv: list[str], expected: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MELON_API", raising=False)
    values = mbatch.COMMAND.parse(argv)
    assert {k: values[k] for k in expected} == expected
    assert {k: _click_values(mbatch.COMMAND, argv)[k] for k in expected} == expected


def test_repeated_and_multiple_options() -> None:
    values = mqueue.COMMAND.parse(["-j", "1", "--jobs=2_[1-3]", "-rt", "PD", "--me"])
    assert values["ids"] == ("1", "2_[1-3]") and values["one_per_task"] and values["states"] == "PD"


@pytest.mark.parametrize("name, argv", [
    ("mqueue", ["--bogus"]), ("mcancel", ["-h"]), ("mqueue", ["--help"]), ("mqueue", ["-u"]),
    ("mqueue", ["--me=yes"]), ("mqueue", ["stray"]), ("mshow", []), ("mshow", ["1", "2"]),
    ("mextend", ["-t"]), ("mbatch", ["-c"]), ("mbatch", ["-Z", "x.sh"]),
])
def test_what_the_fast_path_cannot_place_goes_to_click(name: str, argv: list[str]) -> None:
    with pytest.raises(Fallback):
        COMMANDS[name].parse(argv)


def test_the_endpoint_comes_from_melon_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELON_API", "unix:/x.sock")
    assert mqueue.COMMAND.parse([])["endpoint"] == "unix:/x.sock"
    assert mqueue.COMMAND.parse(["-a", "unix:/y.sock"])["endpoint"] == "unix:/y.sock"


def _argv_for(command) -> st.SearchStrategy[list[str]]:
    """Command lines built from the command's own table: every flag form, values, then words."""
    words = st.text(st.sampled_from("abc123_[],-=:"), min_size=1, max_size=6).filter(lambda w: not w.startswith("-"))
    def one(opt):
        flag = st.sampled_from(opt.flags)
        if not opt.value:
            return flag.map(lambda f: [f])
        return st.tuples(flag, words, st.booleans()).map(
            lambda t: [f"{t[0]}={t[1]}"] if t[0].startswith("--") and t[2] else
            ([t[0] + t[1]] if t[2] else [t[0], t[1]]))
    options = st.lists(st.one_of([one(opt) for opt in command.options]), max_size=5)
    return st.tuples(options, st.lists(words, max_size=3)).map(lambda t: [w for o in t[0] for w in o] + t[1])


@pytest.mark.parametrize("name", sorted(COMMANDS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_and_click_read_every_line_alike(name: str, data: st.DataObject) -> None:
    command = COMMANDS[name]
    argv = data.draw(_argv_for(command))
    try:
        fast = command.parse(argv)
    except Fallback:
        return  # click reports it; what it says is click's own
    slow = _click_values(command, argv)
    fast.pop("endpoint")
    slow.pop("endpoint")
    assert fast == slow, argv


@pytest.mark.parametrize("tool", ["mqueue", "mshow", "mcancel", "mextend", "mhold", "mbatch", "macct", "mshare",
                                  "squeue", "scancel"])
def test_common_paths_import_no_click_regex_or_http_client(tool: str) -> None:
    """What makes a command start in a few milliseconds: no click, rich, re, typing, json, enum,
    http.client, socket or ssl on the common path (here, reading the options and failing to connect)."""
    module = {"mhold": "melon_cli.mhold:hold", "squeue": "melon_cli.slurm.squeue:main",
              "scancel": "melon_cli.slurm.scancel:main"}.get(tool, f"melon_cli.{tool}:main")
    mod, fn = module.split(":")
    args = {"mqueue": [], "mshow": ["1"], "mcancel": ["1"], "mextend": ["-j", "1", "-t", "+5"], "mhold": ["1"],
            "mbatch": ["--wrap", "true", "-t", "5", "-c", "1", "--mem", "1G", "-J", "x"],
            "macct": ["-o", "JobID,State,TotalCPU", "-j", "3_[1-2]"], "mshare": ["-A", "lab", "--all"],
            "squeue": ["-h", "-o", "%i %T"],
            "scancel": ["12", "--signal", "USR1"]}[tool]
    code = (f"import sys; sys.argv = ['{tool}', *{args!r}]\n"
            f"from {mod} import {fn}\n"
            "try:\n    " + fn + "()\nexcept SystemExit:\n    pass\n"
            "bad = {'click', 'rich_click', 'rich', 're', 'typing', 'json', 'enum', 'http.client', 'socket', 'ssl',"
            " 'dataclasses', 'urllib.parse', 'datetime'} & set(sys.modules)\n"
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"MELON_API": "unix:/nonexistent/melond.sock", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().splitlines()[-1] == "[]", out
    assert "cannot reach melond" in out.stderr


def test_mbatch_knows_every_final_state_by_its_code() -> None:
    """mbatch --wait keeps its own copy (importing the states' enum costs its start time)."""
    from melon_cli.mbatch import FINISHED_SHORT
    from melond.spec.states import FINISHED, SHORT
    assert FINISHED_SHORT == {SHORT[s] for s in FINISHED}
