"""`GET /jobs/{id}/output` and `/script`: a job's output read on its node while it runs, for its
owner and operators only, and never a file that is not the job's."""
from __future__ import annotations

import os
import pwd

import pytest

from melon_cli.client import Client
from conftest import Melon, needs_root, wait_for
from melond.errors import MelonError, NotFound

pytestmark = needs_root


def _text(client: Client, jid: int, **query: str) -> dict | None:
    """The output read now if it has text; None until then, and while the file is not there yet
    (RUNNING is melond's word as it sends the start: the job opens its file a moment later)."""
    try:
        reply = client.call("GET", f"/jobs/{jid}/output", query=query or None)
    except NotFound:
        return None
    return reply if reply["text"] else None


def test_the_output_tail_grows_while_the_job_runs_and_continues_from_an_offset(tcp_melon: Melon) -> None:
    melon = tcp_melon
    owner = Client(melon.url, token=melon.token(user="nobody"))
    jid = melon.submit("-o", "tail-%j.out", "-e", "tail-%j.err", "--wrap",
                       "for i in $(seq 1 400); do echo line $i; echo oops $i >&2; sleep 0.05; done", user="nobody")
    first = wait_for(lambda: _text(owner, jid), what="first output")
    assert first["text"].startswith("line 1\n") and first["path"] == str(melon.work / f"tail-{jid}.out")
    later = wait_for(lambda: _text(owner, jid, offset=str(first["size"])), what="more output after the first read")
    assert later["offset"] == first["size"] and later["size"] > first["size"]
    assert (first["text"] + later["text"]).startswith("line 1\nline 2\n")
    tail = owner.call("GET", f"/jobs/{jid}/output", query={"limit": "8"})
    assert len(tail["text"]) <= 8 and tail["offset"] == tail["size"] - len(tail["text"])
    errors = owner.call("GET", f"/jobs/{jid}/output", query={"stream": "error"})
    assert errors["text"].startswith("oops 1\n")
    assert owner.call("GET", f"/jobs/{jid}/script")["script"].count("seq 1 400") == 1

    stranger = Client(melon.url, token=melon.token(user="bin"))
    for path in (f"/jobs/{jid}/output", f"/jobs/{jid}/script"):
        with pytest.raises(MelonError, match="belongs to nobody") as refused:
            stranger.call("GET", path)
        assert refused.value.status == 403
    operator = Client(melon.url, token=melon.token())  # root: an operator
    assert operator.call("GET", f"/jobs/{jid}/output")["text"]
    melon.run("mcancel", str(jid))


def test_a_file_that_is_not_the_jobs_is_not_shown(tcp_melon: Melon) -> None:
    melon = tcp_melon
    owner = Client(melon.url, token=melon.token(user="nobody"))
    jid = melon.submit("-o", "swap-%j.out", "--wrap", "echo mine", user="nobody")
    melon.wait_state(jid, {"CD"})
    out = melon.work / f"swap-{jid}.out"
    assert owner.call("GET", f"/jobs/{jid}/output")["text"] == "mine\n"
    out.unlink()
    out.write_text("root's secret\n")  # root's file where the job's was
    with pytest.raises(MelonError, match="belongs to another user") as refused:
        owner.call("GET", f"/jobs/{jid}/output")
    assert refused.value.status == 404
    out.unlink()
    os.symlink("/etc/shadow", out)
    with pytest.raises(MelonError, match="cannot open") as refused:
        owner.call("GET", f"/jobs/{jid}/output")
    assert refused.value.status == 404


def test_a_pending_job_has_no_output_yet(melon: Melon) -> None:
    jid = melon.submit("-H", "--wrap", "true")
    with pytest.raises(MelonError, match="has not started yet") as refused:
        Client(melon.endpoint).call("GET", f"/jobs/{jid}/output")
    assert refused.value.status == 409
    with pytest.raises(MelonError, match="stream is output or error"):
        Client(melon.endpoint).call("GET", f"/jobs/{jid}/output", query={"stream": "both"})


def test_output_in_a_folder_its_user_cannot_search_tells_nothing(tcp_melon: Melon) -> None:
    """The node's helper is root, but the answer must be what the job's user could learn: a file
    root keeps in its own 0700 folder is neither shown (even one the user owns) nor told apart
    from one that is missing."""
    melon = tcp_melon
    nobody = pwd.getpwnam("nobody")
    hidden = melon.root / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "roots.out").write_text("root's secret\n")
    (hidden / "theirs.out").write_text("found\n")
    os.chown(hidden / "theirs.out", nobody.pw_uid, nobody.pw_gid)
    owner = Client(melon.url, token=melon.token(user="nobody"))
    answers = {}
    for name in ("roots.out", "theirs.out", "missing.out"):
        jid = melon.submit("-o", str(hidden / name), "--wrap", "echo hi", user="nobody")
        melon.wait_state(jid, {"F", "CD"})  # it fails to open its output there, but it ran on a node
        with pytest.raises(MelonError) as refused:
            owner.call("GET", f"/jobs/{jid}/output")
        answers[name] = (refused.value.status, str(refused.value).replace(name, "FILE"))
    assert len(set(answers.values())) == 1, answers
    assert answers["missing.out"][0] == 404 and "Permission denied" in answers["missing.out"][1]
    assert (hidden / "theirs.out").read_text() == "found\n"  # the job never wrote there either
