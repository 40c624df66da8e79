"""More time than policy grants, on request: the request's life and who may see and decide it."""
from __future__ import annotations

import json

from conftest import Melon, needs_root

CAPPED = 'operators = ["daemon"]\n[partitions.p]\ndefault = true\nmax_time = "1:00"\n'


def _requests(melon: Melon, user: str | None = None) -> list[dict]:
    return json.loads(melon.run("mextend", "--requests", "--json", user=user).stdout)


@needs_root
def test_request_approve_deny_withdraw_expire_and_who_sees_them(melon_factory) -> None:
    melon = melon_factory(inventory=CAPPED)
    jid = melon.submit("-t", "0:30", "--wrap", "sleep 120", user="nobody")
    melon.wait_state(jid, {"R"})
    refused = melon.run("mextend", "-j", str(jid), "-t", "+5:00", check=False, user="nobody")
    assert refused.returncode == 1 and "MaxTime" in refused.stderr
    r = melon.run("mextend", "-j", str(jid), "-t", "+5:00", "--request", check=False, user="nobody")
    assert r.returncode != 0 and "--reason" in r.stderr
    filed = melon.run("mextend", "-j", str(jid), "-t", "+5:00", "--request", "--reason", "needs to converge",
                      user="nobody").stdout
    assert filed.startswith("Extension request ") and "an operator decides" in filed
    rid = int(filed.split()[2].rstrip(":"))

    # Another user sees nothing of it and cannot decide it; its owner cannot approve it.
    assert _requests(melon, user="bin") == []
    r = melon.run("mextend", "--approve", str(rid), check=False, user="bin")
    assert r.returncode == 1 and f"no extension request {rid} of yours" in r.stderr
    r = melon.run("mextend", "--approve", str(rid), check=False, user="nobody")
    assert r.returncode == 1 and "only an operator may approve" in r.stderr
    mine = _requests(melon, user="nobody")
    assert [(q["id"], q["state"], q["reason"]) for q in mine] == [(rid, "pending", "needs to converge")]

    # An operator (root) sees it and approves it: the node learns the new limit at once.
    assert [q["id"] for q in _requests(melon)] == [rid]
    done = melon.run("mextend", "--approve", str(rid), "--reason", "fine").stdout
    assert f"Extension request {rid}: approved" in done and "0:30 -> 5:30" in done
    job = melon.job(jid)
    assert job["time_limit_seconds"] == 330
    extended = [e for e in job["events"] if e["kind"] == "extended"]
    assert extended[-1]["actor"] == "root" and extended[-1]["data"]["via"] == f"request {rid}"
    kinds = [e["kind"] for e in job["events"]]
    assert "extension_requested" in kinds and "extension_request_approved" in kinds
    shown = melon.run("mshow", str(jid), user="nobody").stdout
    assert f"#{rid}" in shown and "needs to converge" in shown and "approved by root" in shown
    r = melon.run("mextend", "--approve", str(rid), check=False)
    assert r.returncode == 1 and "approved already" in r.stderr

    # Denied with a reason (required); withdrawn by its owner; expired with its job.
    second = json.loads(melon.run("mextend", "-j", str(jid), "--to", "2:00:00", "--request", "--reason", "more",
                                  "--json", user="nobody").stdout)["id"]
    r = melon.run("mextend", "--deny", str(second), check=False)
    assert r.returncode == 1 and "say why" in r.stderr
    melon.run("mextend", "--deny", str(second), "--reason", "the partition is for short jobs")
    third = json.loads(melon.run("mextend", "-j", str(jid), "-t", "+1:00:00", "--request", "--reason", "x",
                                 "--json", user="nobody").stdout)["id"]
    r = melon.run("mextend", "--withdraw", str(third), check=False)  # root is not its owner
    assert r.returncode == 1 and "only they may withdraw it" in r.stderr
    melon.run("mextend", "--withdraw", str(third), user="nobody")
    fourth = json.loads(melon.run("mextend", "-j", str(jid), "-t", "+1:00:00", "--request", "--reason", "y",
                                  "--json", user="nobody").stdout)["id"]
    melon.run("mcancel", str(jid))
    melon.wait_state(jid, {"CA"})
    states = {q["id"]: (q["state"], q.get("verdict")) for q in _requests(melon, user="nobody")}
    assert states[second] == ("denied", "the partition is for short jobs")
    assert states[third] == ("withdrawn", None)
    assert states[fourth][0] == "expired" and "ended" in states[fourth][1]
    r = melon.run("mextend", "--approve", str(fourth), check=False)
    assert r.returncode == 1 and "expired already" in r.stderr


@needs_root
def test_an_operator_cannot_decide_their_own_request(melon_factory) -> None:
    melon = melon_factory(inventory=CAPPED)
    jid = melon.submit("-H", "-t", "0:30", "--wrap", "true", user="daemon")
    rid = json.loads(melon.run("mextend", "-j", str(jid), "-t", "+1:00:00", "--request", "--reason", "mine",
                               "--json", user="daemon").stdout)["id"]
    r = melon.run("mextend", "--approve", str(rid), check=False, user="daemon")
    assert r.returncode == 1 and "is your own: another operator must approve it" in r.stderr
    assert "approved" in melon.run("mextend", "--approve", str(rid)).stdout  # root, another operator
    assert melon.job(jid)["time_limit_seconds"] == 3630
    melon.run("mcancel", str(jid))
