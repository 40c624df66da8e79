"""Attacks on the web API's edges, each against a real melond over real HTTP: signing a browser
in from another site, a session that outlives its sign-out, a stream that outlives its token, and
what one user's requests tell about another user's jobs."""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from urllib.parse import urlsplit

from conftest import Melon, as_user, needs_root, slurm_names_env


def _http(melon: Melon, method: str, path: str, body: bytes | str | dict | None = None,
          headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """One request to melon's TCP port: status, headers, body."""
    parts = urlsplit(melon.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    if isinstance(body, dict):
        body = json.dumps(body)
    try:
        conn.request(method, "/api/v1" + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _host(melon: Melon) -> str:
    return urlsplit(melon.url).netloc



# A job with everything another user must not see: arguments, folder, comment, mail, paths.
PRIVATE = {"script_path", "script_args", "chdir", "submit_dir", "output", "error", "output_path", "error_path",
           "comment", "mail_user", "slurm_options", "detail"}


@needs_root
def test_another_users_job_shows_no_private_field_on_any_route(melon_factory) -> None:
    melon = melon_factory(tcp=True, inventory="[web]\nopen_job_list = true\n")
    script = melon.work / "private.sh"
    script.write_text("#!/bin/sh\n#SBATCH --comment=the-comment\n#SBATCH --mail-user=nobody@example.org\n"
                      "#SBATCH --wckey=secret-key\nsleep 60\n")
    script.chmod(0o755)
    (melon.work / "secret-dir").mkdir()
    (melon.work / "secret-dir").chmod(0o777)
    pending = melon.submit("-H", "-D", str(melon.work / "secret-dir"), "-o", "secret-%j.out", "-e",
                           "secret-%j.err", str(script), "secret-arg", user="nobody")
    running = melon.submit("-D", str(melon.work / "secret-dir"), str(script), "secret-arg", user="nobody")
    melon.wait_state(running, {"R"})
    ended = melon.submit("-D", str(melon.work / "secret-dir"), "--wrap", "exit 3", user="nobody")
    melon.wait_state(ended, {"F"})
    ids = f"{pending},{running},{ended}"
    routes = ["/jobs", "/jobs?fold=1", f"/jobs?ids={ids}", f"/jobs?ids={ids}&all=1", "/jobs?all=1",
              "/jobs?limit=50", "/jobs?limit=50&all=1&sort=-id", "/jobs?state=R,PD&fold=1&limit=10",
              f"/jobs?ids={ids}&fields=id,user,chdir,script_args,comment,output_path,mail_user",
              "/jobs?fields=id,user,chdir,script_path,error_path&all=1",
              f"/accounting?ids={ids}&user=nobody", "/accounting?fields=id,user,chdir,comment&user=nobody"]
    viewers = {"another user": {"Authorization": f"Bearer {melon.token(user='bin')}"},
               "anyone (open job list)": {}}
    for route in routes:
        for who, headers in viewers.items():
            if route.startswith("/accounting") and not headers:
                continue  # not part of the open job list
            status, _, body = _http(melon, "GET", route, headers=headers)
            assert status == 200, (route, who, body)
            jobs = [j for j in json.loads(body)["jobs"] if j["id"] in (pending, running, ended)]
            assert jobs, (route, who)
            for job in jobs:
                shown = PRIVATE & set(job)
                assert not shown, f"{route} shows {who} {sorted(shown)} of nobody's job {job['id']}"
                assert job["user"] == "nobody"
            assert b"secret" not in body and b"the-comment" not in body, (route, who)
        # the owner and operators still see everything
        for who in ("nobody", "root"):
            headers = {"Authorization": f"Bearer {melon.token(user=who)}"}
            body = _http(melon, "GET", route, headers=headers)[2]
            jobs = [j for j in json.loads(body)["jobs"] if j["id"] in (pending, running, ended)]
            assert all("chdir" in j for j in jobs), (route, who)
            assert b"secret-dir" in body, (route, who)

    # The CLIs print a placeholder for what is withheld, and the real values to the owner.
    line = melon.run("mqueue", "-h", "-j", str(pending), "-o", "%i|%u|%Z|%o", user="bin").stdout.strip()
    assert line == f"{pending}|nobody|N/A|N/A"
    line = melon.run("mqueue", "-h", "-j", str(pending), "-o", "%i|%u|%Z|%o", user="nobody").stdout.strip()
    assert line == f"{pending}|nobody|{melon.work / 'secret-dir'}|{script}"
    shown = subprocess.run(["scontrol", "show", "job"], capture_output=True, text=True, env=slurm_names_env(melon),
                           cwd=melon.work, preexec_fn=as_user("bin"), timeout=60).stdout
    assert f"JobId={pending}" in shown and "WorkDir=(null)" in shown and "secret" not in shown
    melon.run("mcancel", str(pending), str(running))
