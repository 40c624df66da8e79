"""Job notices (sbatch --mail-type) through the inventory's notifier: a command and a webhook."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from conftest import Melon, _others_can_run_tools, wait_for


def _notifier(melon_factory, tmp_path, extra: str = ""):
    log = tmp_path / "notices.jsonl"
    script = tmp_path / "notify.sh"
    script.write_text(f"#!/bin/sh\ncat >> {log}\necho >> {log}\n")
    script.chmod(0o755)
    melon = melon_factory(inventory=f'[notify]\ncommand = ["{script}"]\n{extra}')
    return melon, log


def _events(log, jid: int) -> list[dict]:
    if not log.exists():
        return []
    return [n for n in map(json.loads, filter(None, log.read_text().splitlines())) if n["job_id"] == jid]


def test_begin_thresholds_and_end_and_an_extension_rearms(melon_factory, tmp_path) -> None:
    melon, log = _notifier(melon_factory, tmp_path)
    jid = melon.submit("-t", "0:06", "--mail-type=BEGIN,END,TIME_LIMIT_50", "--mail-user=ada@example.org",
                       "--wrap", "sleep 5")
    wait_for(lambda: [n["event"] for n in _events(log, jid)] == ["BEGIN", "TIME_LIMIT_50"], timeout=15,
             what="BEGIN, then TIME_LIMIT_50 at 3 s")
    melon.run("mextend", "-j", str(jid), "-t", "+0:06")  # 12 s: its 50 % point, 6 s, is ahead again
    melon.wait_state(jid, {"CD"})
    wait_for(lambda: [n["event"] for n in _events(log, jid)][-1:] == ["END"], what="END")
    got = _events(log, jid)
    assert [n["event"] for n in got] == ["BEGIN", "TIME_LIMIT_50", "END"]  # 50 % of 12 s is never reached
    end = got[-1]
    assert end["mail_user"] == "ada@example.org" and end["state"] == "COMPLETED"
    assert end["subject"].startswith(f"Melon Job_id={jid} Name=wrap Ended, Run time 0:0") and "ExitCode 0" in end["subject"]
    kinds = [e["data"]["event"] for e in melon.job(jid)["events"] if e["kind"] == "notified"]
    assert kinds == ["BEGIN", "TIME_LIMIT_50", "END"]

    again = melon.submit("-t", "0:04", "--mail-type=TIME_LIMIT_50,TIME_LIMIT,FAIL", "--wrap", "sleep 3; sleep 30")
    wait_for(lambda: [n["event"] for n in _events(log, again)] == ["TIME_LIMIT_50"], what="50 % of 4 s")
    melon.run("mextend", "-j", str(again), "-t", "+0:04")  # 8 s: 50 % at 4 s, ahead: due again
    melon.wait_state(again, {"TO"}, timeout=20)
    wait_for(lambda: len(_events(log, again)) == 4, what="the notices of a timeout")
    assert [n["event"] for n in _events(log, again)] == ["TIME_LIMIT_50", "TIME_LIMIT_50", "FAIL", "TIME_LIMIT"]


class _Flaky(BaseHTTPRequestHandler):
    """Refuses the first notice (500), takes the next ones."""
    seen: list[dict] = []
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).calls == 1:
            self.send_response(500)
        else:
            type(self).seen.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_webhook_is_retried_and_a_request_verdict_is_told(melon_factory) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        melon = melon_factory(inventory=f'[notify]\nwebhook = "{url}"\n[partitions.p]\ndefault = true\n'
                                        f'max_time = "1:00"\n')
        jid = melon.submit("-t", "0:30", "--mail-type=END", "--wrap", "true")
        melon.wait_state(jid, {"CD"})
        wait_for(lambda: [n["event"] for n in _Flaky.seen] == ["END"], timeout=20, what="END after one retry")
        assert _Flaky.calls == 2
        assert "notice not delivered" in (melon.root / "melond.log").read_text()
        if not _others_can_run_tools():
            return
        held = melon.submit("-H", "-t", "0:30", "--wrap", "true", user="nobody")
        rid = json.loads(melon.run("mextend", "-j", str(held), "-t", "+5:00", "--request", "--reason", "r",
                                   "--json", user="nobody").stdout)["id"]
        melon.run("mextend", "--deny", str(rid), "--reason", "short jobs only")  # root decides
        wait_for(lambda: any(n["event"] == "EXTENSION_REQUEST_DENIED" for n in _Flaky.seen), what="the verdict")
        told = next(n for n in _Flaky.seen if n["event"] == "EXTENSION_REQUEST_DENIED")
        assert told["mail_user"] == "nobody" and told["request"]["verdict"] == "short jobs only"
        assert told["subject"].endswith(f"extension request {rid} denied: short jobs only")
        melon.run("mcancel", str(held))
    finally:
        server.shutdown()


def test_without_a_notifier_mail_types_are_recorded_with_a_warning(melon: Melon) -> None:
    r = melon.run("mbatch", "--mail-type=END", "--wrap", "true")
    assert "no notifier" in r.stderr
    r = melon.run("mbatch", "--mail-type=SOMETIMES", "--wrap", "true", check=False)
    assert r.returncode != 0 and "unknown mail type 'SOMETIMES'" in r.stderr
    melon.wait_all_done()
