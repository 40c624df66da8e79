"""On the node: who a job runs as, what it can see of other jobs, and that job data is never parsed.

Driven through mbatch as a person would, against the real melond and the real node helper.
(A request naming a user the node does not know is refused by the helper:
test_helper_protocol.py::test_unknown_user_is_refused_and_the_id_stays_free.)
"""
from __future__ import annotations

import json
import pwd
import stat
import subprocess

import pytest

from conftest import BIN, Melon, as_user, needs_root, wait_for
from test_e2e_limits import raw

TRICKY = ["a b", "  lead and trail  ", "$(touch pwned)", "`touch pwned`", "semi;colon; touch pwned", "quote'\"",
          "new\nline", "tab\tand\\backslash", "*", "~", "$HOME", "${IFS}", "|| touch pwned &", "-n", "", "é日本"]
ECHO_BACK = "#!/bin/sh\nprintf '%s\\0' \"$@\" \"$MELON_JOB_NAME\" \"$TRICKY\" \"$(pwd)\"\n"


def _pwned(melon: Melon) -> list[str]:
    return [str(p) for p in melon.work.rglob("pwned")]


def test_arguments_name_environment_and_paths_reach_the_job_exactly(melon: Melon) -> None:
    folder = melon.work / "dir with $(touch pwned); `x` 'q\""
    folder.mkdir()
    script = melon.work / "echo.sh"
    script.write_text(ECHO_BACK)
    name = "name $(touch pwned);`id`'\"\n"
    value = "value $(touch pwned) `id`; 'q' \"dq\"\nline2 \\ *"
    out = "out $(touch pwned);`x` 'q'.txt"
    jid = melon.submit("-J", name, "-D", str(folder), "-o", out, str(script), *TRICKY,
                       env=melon.env(TRICKY=value))
    melon.wait_state(jid, {"CD"})
    written = (folder / out).read_bytes().split(b"\0")[:-1]
    assert written == [a.encode() for a in [*TRICKY, name, value, str(folder)]]
    assert _pwned(melon) == []


def _mbatch_bytes(melon: Melon, *args: bytes | str, env: dict[bytes, bytes] | None = None
                  ) -> subprocess.CompletedProcess:
    base = {k.encode(): v.encode() for k, v in melon.env().items()}
    return subprocess.run([str(BIN / "mbatch"), "--parsable", *args], env={**base, **(env or {})}, cwd=melon.work,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("args, env, words", [
    (["echo.sh", b"ok", b"caf\xe9"], None, "argument 2 is not valid UTF-8 (b'caf\\xe9')"),
    (["-J", b"j\xff", "echo.sh"], None, "name is not valid UTF-8"),
    (["-o", b"out\xff", "echo.sh"], None, "output is not valid UTF-8"),
    (["latin1.sh"], None, "script is not valid UTF-8"),
])
def test_bytes_that_are_not_utf8_are_refused_naming_where(melon: Melon, args: list, env: dict | None,
                                                          words: str) -> None:
    """argv and the environment are bytes on Linux; Melon keeps text, so it refuses rather than alters."""
    (melon.work / "echo.sh").write_text(ECHO_BACK)
    (melon.work / "latin1.sh").write_bytes(b"#!/bin/sh\n# caf\xe9\ntrue\n")
    r = _mbatch_bytes(melon, *args, env=env)
    assert r.returncode != 0 and words in r.stderr.decode(), r.stderr
    assert b"Traceback" not in r.stderr and melon.jobs("--all") == []


def test_an_environment_variable_that_is_not_utf8_is_left_out_with_a_warning(melon: Melon) -> None:
    """With the default --export=ALL, one such variable in a login shell must not block every
    submission: the job runs without it, and mbatch says so."""
    r = _mbatch_bytes(melon, "--wrap", "echo ${LATIN-unset} $KEPT", env={b"LATIN": b"\xe9t\xe9", b"KEPT": b"yes"})
    assert r.returncode == 0, r.stderr
    assert b"environment variable LATIN is not valid UTF-8 and is not passed" in r.stderr
    jid = int(r.stdout)
    melon.wait_state(jid, {"CD"})
    assert (melon.work / f"melon-{jid}.out").read_text() == "unset yes\n"


@pytest.mark.parametrize("change, words", [
    ({"script_args": ["a\u0000b"]}, "NUL"),
    ({"environment": {"V": "x\u0000y"}}, "NUL"),
    ({"environment": {"A=B": "x"}}, "not a variable name"),
    ({"environment": {"": "x"}}, "not a variable name"),
    ({"name": "n\u0000"}, "NUL"),
    ({"output": "o\u0000.txt"}, "NUL"),
    ({"chdir": "/tmp\u0000/x"}, "NUL"),
])
def test_nul_bytes_and_bad_variable_names_are_refused(melon: Melon, change: dict, words: str) -> None:
    """A NUL cannot cross execve or open(): refused at submit with a clear reason, never truncated."""
    body = {"script": "#!/bin/sh\ntrue\n", "name": "n", "chdir": str(melon.work), **change}
    status, _, reply = raw(melon, "POST", "/jobs", json.dumps(body).encode())
    assert status == 400 and words in reply["error"]["message"], reply
    assert melon.jobs("--all") == []


@needs_root
def test_jobs_run_as_their_submitter_and_root_only_for_root(melon: Melon) -> None:
    ids = {user: melon.submit("--wrap", "id -u; id -un", user=user) for user in ("daemon", "nobody")}
    ids["root"] = melon.submit("--wrap", "id -u; id -un")
    for user, jid in ids.items():
        melon.wait_state(jid, {"CD"})
        uid = pwd.getpwnam(user).pw_uid
        assert (melon.work / f"melon-{jid}.out").read_text().split() == [str(uid), user]


@needs_root
def test_the_spool_is_private_to_melond(melon: Melon) -> None:
    jid = melon.submit("-t", "1:00", "--wrap", "sleep 30", env=melon.env(SECRET="s3cret-in-spool"))
    melon.wait_state(jid, {"R"})
    spool = melon.state / "spool"
    # RUNNING is melond's word as it sends the start; the node writes the run's files a moment later.
    files = wait_for(lambda: [p for p in spool.rglob("*") if p.is_file() and p.name == "started.json"] and
                     [p for p in spool.rglob("*") if p.is_file()], what="the running job's spool files")
    for folder in (spool, spool / "jobs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == 0
    for path in [spool, spool / "jobs", *files]:
        tool = ["ls", str(path)] if path.is_dir() else ["cat", str(path)]
        r = subprocess.run(tool, capture_output=True, text=True, preexec_fn=as_user("nobody"))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (path, r.stdout)
    melon.run("mcancel", str(jid))


@needs_root
def test_a_job_cannot_read_another_users_job(melon: Melon) -> None:
    secret = "s3cret-of-daemon"
    victim = melon.submit("-t", "1:00", "--wrap", "echo $$; sleep 30", user="daemon",
                          env=melon.env(SECRET=secret))
    melon.wait_state(victim, {"R"})
    victim_out = melon.work / f"melon-{victim}.out"
    # Running is recorded as the job's child forks; it opens its output a moment later.
    pid = int(wait_for(lambda: victim_out.exists() and victim_out.read_text().strip(), what="the victim's pid"))
    # The job prints its pid as it starts; its supervisor records the start (started.json) a moment later.
    spool = melon.state / "spool"
    wait_for(lambda: any(p.name == "started.json" for p in spool.rglob("*")), what="the victim's spool record")
    spool_files = [str(p) for p in spool.rglob("*") if p.is_file()]
    probe = "\n".join(
        [f"cat /proc/{pid}/environ && echo LEAK-environ || echo denied-environ",
         f"for f in /proc/{pid}/fd/*; do cat \"$f\" && echo LEAK-fd; done 2>&1 | grep -v 'Permission denied' || true",
         f"ls /proc/{pid}/fd && echo LEAK-fdlist || echo denied-fdlist"]
        + [f"cat '{f}' && echo LEAK-spool || echo denied-spool" for f in spool_files])
    thief = melon.submit("--wrap", probe, user="nobody")
    melon.wait_state(thief, {"CD"})
    seen = (melon.work / f"melon-{thief}.out").read_text()
    assert secret not in seen and "LEAK" not in seen, seen
    assert "denied-environ" in seen and "denied-fdlist" in seen
    assert seen.count("denied-spool") == len(spool_files) > 0
    melon.run("mcancel", str(victim))
