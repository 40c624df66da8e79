"""Watching melond: `/metrics` read by Prometheus's own parser, `/health`, `minfo --stats` and `sdiag`,
against a real melond on the local node."""
from __future__ import annotations

import http.client
import json
import os
import pwd
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import Melon, UnixHTTP, is_root, slurm_names_env, wait_for
from melond.api.routes import PREFIX, ROUTES
from test_e2e_disk_full import fill, small_fs  # noqa: F401 - small_fs is a fixture

PER_USER = "[metrics]\nper_user = true\n"
PUBLIC = "[metrics]\npublic = true\n"
TEMPLATES = {PREFIX + path for _, path, *_ in ROUTES} | {"/metrics", "/health", "/", "/ui/{name}", "unmatched"}


def get(melon: Melon, path: str, headers: dict[str, str] | None = None, tcp: bool = False) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET, over the Unix socket or melond's TCP port."""
    if tcp:
        parts = urlsplit(melon.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    else:
        conn = UnixHTTP(str(melon.state / "melond.sock"))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


class Scrape:
    """One scrape, read by prometheus_client's parser: each sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The one sample with this name whose labels include `labels`."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name}


def scrape(melon: Melon, **kw) -> Scrape:
    status, content_type, body = get(melon, "/metrics", **kw)
    assert status == 200, (status, body[:500])
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return Scrape(body)


def test_the_figures_move_as_jobs_are_submitted_run_extended_and_end(melon: Melon) -> None:
    first = wait_for(lambda: (s := scrape(melon)).samples and
                     [x for x in s.samples if x.name == "melon_node_round_trip_seconds"] and s,
                     what="the local node's first ping")
    assert first.value("melon_jobs", partition="local", state="PENDING") == 0
    assert first.value("melon_jobs_submitted_total", partition="local") == 0
    assert first.value("melon_jobs_ended_total", partition="local", state="COMPLETED") == 0
    assert first.value("melon_node_state", node="local", state="idle") == 1
    assert first.value("melon_nodes", partition="local", state="idle") == 1
    assert first.value("melon_node_helper_starts_total", node="local") == 1
    assert first.value("melon_node_disconnects_total", node="local") == 0
    assert 0 < first.value("melon_node_round_trip_seconds", node="local") < 5
    cpus = first.value("melon_node_cpus", node="local")
    assert cpus >= 1 and first.value("melon_node_cpus_idle", node="local") == cpus
    assert first.value("melon_partition_cpus", partition="local") == cpus
    assert first.value("melon_node_memory_bytes", node="local") > 0
    assert not [s for s in first.samples if s.name.startswith("melon_user_")]  # [metrics] per_user is off
    assert first.value("process_resident_memory_bytes") > 0  # the process collector, in melond's own registry

    held = melon.submit("-H", "--wrap", "true")
    running = melon.submit("-c", "1", "-t", "10", "--wrap", "sleep 60")
    melon.wait_state(running, {"R"})
    melon.run("mextend", "-j", str(running), "-t", "+0:05")
    now = scrape(melon)
    assert now.value("melon_jobs", partition="local", state="PENDING") == 1
    assert now.value("melon_jobs", partition="local", state="RUNNING") == 1
    assert now.value("melon_jobs_pending", partition="local", reason="JobHeldUser") == 1
    assert now.value("melon_jobs_submitted_total", partition="local") == 2
    assert now.value("melon_jobs_started_total", partition="local") == 1
    assert now.value("melon_job_extensions_total", partition="local") == 1
    assert now.value("melon_node_cpus_allocated", node="local") == 1
    assert now.value("melon_partition_cpus_allocated", partition="local") == 1
    assert now.value("melon_node_cpus_idle", node="local") == cpus - 1
    assert now.value("melon_node_memory_allocated_bytes", node="local") > 0
    assert now.value("melon_node_state", node="local", state="allocated" if cpus == 1 else "mixed") == 1

    melon.run("mcancel", str(running))
    melon.wait_state(running, {"CA"})
    done = melon.submit("--wrap", "true")
    failed = melon.submit("--wrap", "exit 3")
    melon.wait_state(done, {"CD"})
    melon.wait_state(failed, {"F"})
    melon.run("mcancel", str(held))
    get(melon, "/api/v1/no/such/route/42")
    last = scrape(melon)
    for state, n in (("CANCELLED", 2), ("COMPLETED", 1), ("FAILED", 1), ("TIMEOUT", 0)):
        assert last.value("melon_jobs_ended_total", partition="local", state=state) == n, state
    assert last.value("melon_jobs_submitted_total", partition="local") == 4
    assert last.value("melon_jobs_started_total", partition="local") == 3
    assert last.value("melon_jobs", partition="local", state="RUNNING") == 0
    assert last.value("melon_jobs", partition="local", state="PENDING") == 0
    assert last.value("melon_node_cpus_allocated", node="local") == 0
    assert last.value("melon_scheduler_pass_seconds_count") > first.value("melon_scheduler_pass_seconds_count")
    passes = last.value("melon_scheduler_pass_seconds_count")
    assert last.value("melon_scheduler_pass_seconds_bucket", le="+Inf") == passes
    assert last.value("melon_store_commit_seconds_count") > first.value("melon_store_commit_seconds_count")
    assert last.value("melon_store_commit_failures_total") == 0
    # Request latency by route template: a job's own path is counted under its template, never its id.
    routes = last.labels("melon_api_request_duration_seconds_count", "route")
    assert routes <= TEMPLATES, routes - TEMPLATES
    assert {f"{PREFIX}/jobs", f"{PREFIX}/jobs/{{job_id}}", f"{PREFIX}/jobs/{{job_id}}/cancel", "/metrics",
            "unmatched"} <= routes
    assert last.value("melon_api_request_duration_seconds_count", method="POST", route=f"{PREFIX}/jobs") == 4
    assert last.value("melon_api_requests_total", method="POST", route=f"{PREFIX}/jobs", code="201") == 4
    assert last.value("melon_api_requests_total", method="GET", route="unmatched", code="404") == 1


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(melon: Melon) -> None:
    status, content_type, body = get(melon, "/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and content_type.startswith("application/openmetrics-text"), content_type
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(body)}
    assert families["melon_jobs_submitted"].type == "counter"
    assert families["melon_scheduler_pass_seconds"].type == "histogram"
    assert families["melon_node_memory_bytes"].unit == "bytes"


def test_per_user_series_appear_only_where_the_inventory_asks(melon_factory) -> None:
    melon = melon_factory(inventory=PER_USER)
    user = pwd.getpwuid(os.geteuid()).pw_name
    jid = melon.submit("-H", "--wrap", "true")
    s = scrape(melon)
    assert s.value("melon_user_jobs", user=user, state="PENDING") == 1
    assert s.value("melon_user_jobs", user=user, state="RUNNING") == 0
    assert s.value("melon_user_jobs_submitted_total", user=user) == 1
    assert s.value("melon_user_cpus_allocated", user=user) == 0
    melon.run("mcancel", str(jid))


def test_metrics_over_tcp_need_a_token_unless_the_inventory_makes_them_public(melon_factory) -> None:
    guarded = melon_factory(tcp=True)
    status, _, body = get(guarded, "/metrics", tcp=True)
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized", body
    status, _, body = get(guarded, "/metrics", headers={"Authorization": "Bearer melon_0123456789ab_" + "x" * 43},
                          tcp=True)
    assert status == 401, body
    token = guarded.token()
    scrape(guarded, headers={"Authorization": f"Bearer {token}"}, tcp=True)
    status, _, body = get(guarded, "/health", tcp=True)  # the health check never needs one
    assert status == 200 and json.loads(body)["status"] == "ok", body

    public = melon_factory(tcp=True, inventory=PUBLIC)
    assert scrape(public, tcp=True).value("melon_jobs", partition="local", state="PENDING") == 0
    status, _, body = get(public, PREFIX + "/jobs", tcp=True)  # public metrics open nothing else
    assert status == 401, body


def test_health_is_200_while_writes_reach_the_database_and_503_while_they_cannot(melon: Melon) -> None:
    status, content_type, body = get(melon, "/health")
    assert status == 200 and content_type.startswith("application/json"), (status, body)
    assert json.loads(body) == {"status": "ok", "database": {"writable": True}, "nodes": {"up": 1, "total": 1}}
    db = melon.state / "melon.db"
    checked = _health_row(db)
    assert checked is not None and time.time() - checked < 30  # a real commit, not a look at the file

    # Another process holds the database's write lock (a stuck tool, a backup that locks): no commit.
    holder = sqlite3.connect(db, timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(1.1)  # past the second one check's answer is reused for
        began = time.monotonic()
        status, _, body = get(melon, "/health")
        assert status == 503, body
        assert json.loads(body) == {"status": "failing", "database": {"writable": False, "problem": "timeout"},
                                    "nodes": {"up": 1, "total": 1}}
        assert time.monotonic() - began < 10
    finally:
        holder.rollback()
        holder.close()
    wait_for(lambda: get(melon, "/health")[0] == 200, what="/health to recover once the lock is gone")
    assert _health_row(db) > checked


def test_health_is_503_on_a_full_disk(small_fs: Path, short_tmp: Path) -> None:  # noqa: F811 - the fixture
    assert is_root()  # small_fs skips otherwise
    melon = Melon(short_tmp, work=short_tmp / "work")
    melon.state = small_fs / "state"
    melon.endpoint = f"unix:{melon.state}/melond.sock"
    melon.start()
    try:
        assert get(melon, "/health")[0] == 200
        fill(small_fs)
        time.sleep(1.1)
        status, _, body = get(melon, "/health")
        assert status == 503 and json.loads(body)["database"] == {"writable": False, "problem": "disk_full"}, body
        (small_fs / "filler").unlink()
        wait_for(lambda: get(melon, "/health")[0] == 200, what="/health to recover once there is room")
    finally:
        melon.cleanup()


def test_systemds_watchdog_is_fed_only_while_writes_reach_the_database(short_tmp: Path, monkeypatch) -> None:
    """Under a unit with Type=notify and WatchdogSec: READY=1 once melond serves, WATCHDOG=1 each
    half WatchdogSec while /health's check passes, none while it fails, STOPPING=1 at the end."""
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    melon = Melon(short_tmp)
    try:
        systemd.bind(str(short_tmp / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(short_tmp / "notify"))
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # WatchdogSec=1: a ping every half second

        def heard(seconds: float) -> list[str]:
            out, deadline = [], time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                systemd.settimeout(left)
                try:
                    out.append(systemd.recv(4096).decode())
                except TimeoutError:
                    break
            return out

        melon.start()
        first = heard(1.5)
        assert first[0].startswith("READY=1") and first.count("WATCHDOG=1") >= 2, first
        holder = sqlite3.connect(melon.state / "melon.db", timeout=1)
        try:
            holder.execute("BEGIN IMMEDIATE")
            heard(1.5)  # a check that passed just before still answers for a second
            assert "WATCHDOG=1" not in heard(4), "the watchdog was fed while no write reached the database"
        finally:
            holder.rollback()
            holder.close()
        assert "WATCHDOG=1" in heard(8)
        melon.stop()
        assert "STOPPING=1" in heard(2)
    finally:
        melon.cleanup()
        systemd.close()


def test_minfo_stats_and_sdiag_move_with_the_work(melon: Melon) -> None:
    before = json.loads(melon.run("minfo", "--stats", "--json").stdout)
    assert before["jobs_submitted"] == 0 and before["jobs_completed"] == 0
    jid = melon.submit("--wrap", "true")
    melon.wait_state(jid, {"CD"})
    after = json.loads(melon.run("minfo", "--stats", "--json").stdout)
    assert (after["jobs_submitted"], after["jobs_started"], after["jobs_completed"]) == (1, 1, 1)
    assert after["scheduler"]["count"] > before["scheduler"]["count"]
    assert after["store_commits"]["count"] > before["store_commits"]["count"]
    assert after["since"] == before["since"] and after["time"] > before["time"]
    posted = [r for r in after["requests"] if (r["method"], r["route"]) == ("POST", f"{PREFIX}/jobs")]
    assert len(posted) == 1 and posted[0]["count"] == 1 and posted[0]["total"] > 0

    text = melon.run("minfo", "--stats").stdout
    assert "Jobs: submitted 1, started 1, completed 1, cancelled 0, failed 0" in text, text
    assert "submissions per minute" in text and f"POST    {PREFIX}/jobs" in text, text

    sdiag = subprocess.run(["sdiag"], capture_output=True, text=True, env=slurm_names_env(melon), timeout=60)
    assert sdiag.returncode == 0, sdiag.stderr
    out = sdiag.stdout
    lines = out.splitlines()
    assert lines[0] == "*" * 55 and lines[1].startswith("sdiag output at ")
    for line in ("Jobs submitted: 1", "Jobs started:   1", "Jobs completed: 1", "Jobs canceled:  0",
                 "Jobs failed:    0", "Jobs pending:   0", "Main schedule statistics (microseconds):",
                 "Remote Procedure Call statistics by message type"):
        assert line in lines, (line, out)
    cycles = int(next(x for x in lines if x.startswith("\tTotal cycles:")).split(":")[1])
    assert cycles >= after["scheduler"]["count"]
    assert any(x.startswith(f"\tPOST {PREFIX}/jobs ") and "count:1 " in x for x in lines), out


def _health_row(db: Path) -> float | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT checked FROM health WHERE id = 1").fetchone()
    finally:
        conn.close()
    return row[0] if row else None
