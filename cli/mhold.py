"""`mhold` and `mrelease`: keep a pending job from starting, and let it go (scontrol hold/release)."""
from __future__ import annotations

import sys

from melon_cli.args import Arg, Command, error
from melon_cli.common import client, each_job, echo, job_ids
from melond.errors import MelonError


def _apply(prog: str, action: str, done: str, ids: tuple[str, ...], endpoint: str | None) -> None:
    c = client(endpoint)
    failed = 0
    for jid in job_ids(ids):
        try:
            reply = c.call("POST", f"/jobs/{jid}/{action}")
        except MelonError as exc:
            error(prog, str(exc))
            failed += 1
            continue
        for r in each_job(reply, jid):
            echo(f"{done} job {r['job']}")
        for e in reply.get("errors", []):
            error(prog, e["message"])
            failed += 1
    sys.exit(1 if failed else 0)


def _hold(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Hold pending jobs: they stay pending (JobHeldUser) until released. An array's id holds its
    pending tasks."""
    _apply("mhold", "hold", "Held", ids, endpoint)


def _release(ids: tuple[str, ...], endpoint: str | None) -> None:
    """Release held jobs (submitted with -H or held with mhold) so they may start. An array's id
    releases its pending tasks."""
    _apply("mrelease", "release", "Released", ids, endpoint)


HOLD = Command("mhold", _hold, [], args=[Arg("ids", "+", complete="jobs")])
RELEASE = Command("mrelease", _release, [], args=[Arg("ids", "+", complete="jobs")])
hold, release = HOLD.main, RELEASE.main
