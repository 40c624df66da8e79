"""The web UI's server side: a script's directives for the form (`POST /directives`), a job
from the form (`POST /jobs/form`), and the job list open to reading where `[web]` says so."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from melon_cli.client import Client
from conftest import Melon, needs_root
from melond.errors import MelonError

SCRIPT = """#!/bin/sh
#SBATCH --job-name=from-form
#SBATCH -t 10:00
#SBATCH -c 1 --mem=64M
#MBATCH --output=form-%j.out
echo "$USER in $PWD: $1"
"""


def test_directives_are_read_by_mbatchs_parser(melon: Melon) -> None:
    api = Client(melon.endpoint)
    got = api.call("POST", "/directives", {"script": SCRIPT})
    assert got["options"] == {"job-name": "from-form", "time": "10:00", "cpus-per-task": "1", "mem": "64M",
                              "output": "form-%j.out"}
    late = api.call("POST", "/directives", {"script": "#!/bin/sh\necho hi\n#SBATCH -t 5\n"})
    assert late["options"] == {} and "ignored" in late["warnings"][0]
    with pytest.raises(MelonError, match="time") as bad:
        api.call("POST", "/directives", {"script": "#!/bin/sh\n#SBATCH --time=soon\n"})
    assert bad.value.status == 400


@needs_root
def test_a_job_from_the_form_runs_as_its_user_in_their_home_with_the_forms_options_first(tcp_melon: Melon,
                                                                                          tmp_path) -> None:
    melon = tcp_melon
    api = Client(melon.url, token=melon.token(user="nobody"))
    work = melon.work / "form"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    reply = api.call("POST", "/jobs/form", {"script": SCRIPT, "args": ["x y"],
                                            "options": {"time": "2:00", "chdir": str(work), "mem": ""}})
    (jid,) = reply["job_ids"]
    job = melon.wait_state(jid, {"CD"})
    assert job["name"] == "from-form" and job["user"] == "nobody" and job["time_limit_seconds"] == 120
    assert (work / f"form-{jid}.out").read_text() == f"nobody in {work}: x y\n"
    with pytest.raises(MelonError, match="time") as bad:
        api.call("POST", "/jobs/form", {"script": SCRIPT, "options": {"time": "tomorrow"}})
    assert bad.value.status == 400 and len(melon.jobs("--all")) == 1  # nothing admitted


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_the_job_list_is_open_to_reading_only_where_the_inventory_says(melon_factory) -> None:
    closed = melon_factory(tcp=True)
    assert _get(f"{closed.url}/api/v1/jobs")[0] == 401
    opened = melon_factory(tcp=True, inventory="[web]\nopen_job_list = true\n")
    jid = opened.submit("-H", "--wrap", "true")
    status, body = _get(f"{opened.url}/api/v1/jobs?fields=id,state")
    assert status == 200 and body["jobs"][0]["id"] == jid
    assert _get(f"{opened.url}/api/v1/nodes")[0] == 200
    for private in (f"/jobs/{jid}", f"/jobs/{jid}/script", f"/jobs/{jid}/output", "/whoami", "/tokens"):
        assert _get(f"{opened.url}/api/v1{private}")[0] == 401, private
    request = urllib.request.Request(f"{opened.url}/api/v1/jobs/{jid}/cancel", method="POST")
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    assert opened.job(jid)["state"] == "PD"
