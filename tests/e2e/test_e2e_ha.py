"""Two melonds over one PostgreSQL database, on two local nodes whose spools both reach (as two
login nodes reach the same compute nodes): the leader killed, paused past its lease, cut from
the database, and the database restarted, each while jobs come and go. Each time: every job
whose submission was acknowledged runs to its end, none runs twice (a marker file per job,
written by the job itself), and the standby takes over within the goal of 10 s. And meanwhile
the standby serves reads of the database and refuses changes."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, Melon, UnixHTTP, wait_for

LEASE = 2.0
TAKEOVER_GOAL = 10.0


def health(m: Melon) -> dict | None:
    """This melond's own /health (never the other's), or None if it does not answer."""
    try:
        conn = UnixHTTP(str(m.state / "melond.sock"))
        conn.timeout = 2
        conn.request("GET", "/health")
        reply = json.loads(conn.getresponse().read())
        conn.close()
        return reply
    except (OSError, ValueError):
        return None


def role(m: Melon) -> str | None:
    reply = health(m)
    return (reply or {}).get("leader", {}).get("role")


class Pair:
    """melond a and b: the same inventory but for the database URL (each may reach the server by
    a socket folder of its own, which a test can take away), both endpoints in MELON_API."""

    def __init__(self, root: Path, pg_server, url: str) -> None:
        self.root, self.pg = root, pg_server
        self.markers = root / "work" / "markers"
        self.markers.mkdir(parents=True, mode=0o777)
        database = url.split("?")[0].rsplit("/", 1)[1]
        self.links: dict[str, Path] = {}
        self.melons: dict[str, Melon] = {}
        for name in ("a", "b"):
            link = root / f"pg-{name}"  # a folder with a link to the server's socket: cut by removing it
            link.mkdir()
            self.links[name] = link
            self.connect(name)
            inventory = (f'[store]\nurl = "postgresql://melon@/{database}?host={link}"\nlease = {LEASE}\n'
                         + "".join(f'[nodes.n{i}]\nspool = "{root}/spool-n{i}"\ncpus = 4\n' for i in (1, 2)))
            (root / name).mkdir()
            self.melons[name] = Melon(root / name, inventory=inventory, work=root / "work")
        both = ",".join(f"unix:{m.state}/melond.sock" for m in self.melons.values())
        for m in self.melons.values():
            m.endpoint = both

    @property
    def a(self) -> Melon:
        return self.melons["a"]

    @property
    def b(self) -> Melon:
        return self.melons["b"]

    def connect(self, name: str) -> None:
        target = self.pg.socket / ".s.PGSQL.5432"
        (self.links[name] / ".s.PGSQL.5432").symlink_to(target)

    def cut(self, name: str) -> None:
        """melond `name` can no longer reach the database: its socket link gone, its sessions ended."""
        (self.links[name] / ".s.PGSQL.5432").unlink()
        pid = self.melons[name].proc.pid
        import psycopg
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                         (f"melond {pid}",))

    def start(self, m: Melon, leading: bool) -> None:
        m.start(ready=lambda: role(m) == ("leader" if leading else "standby") and (not leading or m._node_up()))

    def leader(self) -> Melon:
        return wait_for(lambda: next((m for m in self.melons.values() if role(m) == "leader"), None), timeout=30,
                        what="a melond to lead")

    def submit(self, *args: str) -> int:
        """Submit as a user would, again while no answer acknowledges it: a refusal that did nothing
        (a takeover under way), or an answer lost with a melond stepping down (the job may then be
        there, unacknowledged: it must still run at most once); the job id once acknowledged."""
        deadline = time.monotonic() + 30
        while True:
            r = self.a.run("mbatch", "--parsable", *args, check=False, timeout=30)
            if r.returncode == 0:
                return int(r.stdout.strip())
            assert any(s in r.stderr for s in ("stands by", "cannot reach", "no longer leads", "not connected",
                                               "did not answer", "lost the connection")), r.stderr
            if time.monotonic() > deadline:
                pytest.fail(f"no melond acknowledged a submission for 30 s: {r.stderr}")
            time.sleep(0.1)

    def job_script(self, seconds: float, code: int = 0) -> str:
        return f"echo $MELON_JOB_ID >> {self.markers}/$MELON_JOB_ID; sleep {seconds}; exit {code}"

    def check_every_job_ran_once(self, acked: list[int],
                                 ends: dict[int, tuple[str, int | None]] | None = None) -> dict:
        """Every acknowledged job (each array task too) ended as `ends` says (COMPLETED, 0 else),
        and its marker holds its id once; the jobs as macct shows them."""
        ends = ends or {}
        wait_for(lambda: not self.a.jobs(), timeout=120, what="every job to end")
        stored = json.loads(self.a.run("macct", "--json", "-S", "2000-01-01").stdout)
        by_id = {j["id"]: j for j in stored}
        expected = {t["id"] for t in stored if t["id"] in acked or t.get("array_job_id") in acked}
        assert set(acked) <= set(by_id), f"acknowledged but lost: {sorted(set(acked) - set(by_id))}"
        for jid in expected:
            state, code = ends.get(jid, ("COMPLETED", 0))
            assert (by_id[jid]["state"], by_id[jid]["exit_code"]) == (state, code), by_id[jid]
            assert (self.markers / str(jid)).read_text().split() == [str(jid)], f"job {jid} ran more than once"
        for marker in self.markers.iterdir():  # unacknowledged ones too: a job that exists runs at most once
            assert marker.name in {str(j) for j in by_id}, marker.name
            assert marker.read_text().split() == [marker.name], f"job {marker.name} ran more than once"
        return by_id

    def stop(self) -> None:
        for m in self.melons.values():
            if m.proc and m.proc.poll() is None:
                m.cleanup()


@pytest.fixture
def pair(short_tmp, pg_server):
    url = pg_server.new_database()
    p = Pair(short_tmp, pg_server, url)
    yield p
    p.stop()
    pg_server.drop_database(url)


def _log_lines(m: Melon, since: float) -> list[dict]:
    lines = [json.loads(line) for line in m.log.read_text().splitlines() if line.startswith("{")]
    return [r for r in lines if r["time"] >= since and r["level"] != "debug"]


def test_kill_9_of_the_leader_loses_no_acknowledged_job_and_runs_none_twice(pair: Pair):
    pair.start(pair.a, leading=True)
    pair.start(pair.b, leading=False)
    acked: list[int] = []
    ends: dict[int, tuple[str, int | None]] = {}
    takeover = None
    # Mixed: short and longer, arrays, failing ones; one to cancel and one to extend across the
    # takeover, each through the tools' endpoints (the new leader's, once a is gone).
    cancelled = pair.submit("-t", "10:00", "--wrap", pair.job_script(600))
    extended = None
    for i in range(150):
        if i == 74:  # just before the kill: it ends TIMEOUT 20 s after it starts, unless extended
            extended = pair.submit("-t", "0:20", "--wrap", pair.job_script(25))
        if i == 75:
            pair.a.stop(signal.SIGKILL)
            killed = time.monotonic()
        args = ["--array", "0-3"] if i % 5 == 4 else []
        code = 3 if i % 7 == 3 and not args else 0
        jid = pair.submit(*args, "-t", "1:00", "--wrap", pair.job_script([0.1, 0.5, 1, 2][i % 4], code))
        acked.append(jid)
        if code:
            ends[jid] = ("FAILED", code)
        if i == 75:
            takeover = time.monotonic() - killed
            pair.a.run("mextend", "-j", str(extended), "-t", "+0:30")  # through the new leader
    assert pair.leader() is pair.b
    assert takeover is not None and takeover <= TAKEOVER_GOAL, takeover
    pair.a.run("mcancel", str(cancelled))
    acked += [cancelled, extended]
    ends[cancelled] = ("CANCELLED", None)  # killed by its signal: no exit code
    by_id = pair.check_every_job_ran_once(acked, ends)
    assert by_id[extended]["time_limit"] == 50  # the extension, made through the new leader, held
    print(f"takeover after kill -9: {takeover:.2f} s (lease {LEASE:g} s)")


def test_a_leader_paused_past_its_lease_steps_down_without_acting(pair: Pair):
    pair.start(pair.a, leading=True)
    pair.start(pair.b, leading=False)
    acked = [pair.submit("-t", "1:00", "--wrap", pair.job_script(s)) for s in (0.2, 1, 2, 3) * 5]
    pair.a.proc.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    wait_for(lambda: role(pair.b) == "leader", timeout=TAKEOVER_GOAL, what="b to take over")
    takeover = time.monotonic() - paused
    only_b = pair.b.env(MELON_API=f"unix:{pair.b.state}/melond.sock")  # a user who knows a is frozen
    for s in (0.2, 1) * 5:
        acked.append(int(pair.b.run("mbatch", "--parsable", "-t", "1:00", "--wrap", pair.job_script(s),
                                    env=only_b).stdout))
    # A user whose tools try a first: the frozen a holds the request until it wakes, then answers
    # not_leader (it acts on nothing), and the tools go on to b.
    held = subprocess.Popen([str(BIN / "mbatch"), "--parsable", "--wrap", pair.job_script(0.2)], env=pair.a.env(),
                            cwd=pair.a.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert held.poll() is None
    resumed = time.time()
    pair.a.proc.send_signal(signal.SIGCONT)
    out, err = held.communicate(timeout=20)
    assert held.returncode == 0, err
    acked.append(int(out))
    assert pair.a.proc.wait(timeout=10) == 75  # it stepped down: EX_TEMPFAIL, for systemd to start it again
    after = _log_lines(pair.a, resumed)
    # What it logged once awake: its step down, then only what the database refused it (writes it
    # had queued, or made before it saw its lease gone; a commit it was paused in, whose session
    # the server ended): no start, no end, no node contacted.
    assert after[0]["level"] == "critical" and "steps down" in after[0]["msg"], after
    for r in after[1:]:
        assert "no longer leads" in json.dumps(r) or "nothing was changed" in json.dumps(r), r
    pair.check_every_job_ran_once(acked)
    pair.start(pair.a, leading=False)  # started again, it stands by
    assert role(pair.b) == "leader"
    print(f"takeover after SIGSTOP: {takeover:.2f} s")


def test_the_leader_cut_from_the_database_gives_way(pair: Pair):
    pair.start(pair.a, leading=True)
    pair.start(pair.b, leading=False)
    acked = [pair.submit("-t", "1:00", "--wrap", pair.job_script(s)) for s in (0.5, 2, 4) * 4]
    pair.cut("a")
    cut = time.monotonic()
    assert pair.a.proc.wait(timeout=LEASE + 5) == 75
    wait_for(lambda: role(pair.b) == "leader", timeout=TAKEOVER_GOAL, what="b to take over")
    takeover = time.monotonic() - cut
    acked += [pair.submit("-t", "1:00", "--wrap", pair.job_script(0.5)) for _ in range(5)]
    pair.check_every_job_ran_once(acked)
    pair.connect("a")
    pair.start(pair.a, leading=False)
    print(f"takeover after the leader's database connection was cut: {takeover:.2f} s")


def test_a_database_restart_loses_no_acknowledged_job(pair: Pair):
    pair.start(pair.a, leading=True)
    pair.start(pair.b, leading=False)
    acked: list[int] = []
    stop = threading.Event()

    def restart() -> None:
        time.sleep(1.0)
        pair.pg.kill()
        time.sleep(0.5)
        pair.pg.start()
        stop.set()

    restarter = threading.Thread(target=restart)
    restarter.start()
    while not stop.is_set() or len(acked) < 40:
        acked.append(pair.submit("-t", "1:00", "--wrap", pair.job_script(0.3)))
    restarter.join()
    pair.check_every_job_ran_once(acked)
    stepped_down = [m for m in pair.melons.values() if m.proc.poll() is not None]
    for m in stepped_down:  # the one that stepped down, if one did, stands by when started again
        assert m.proc.returncode == 75
        m.proc = None
        m.start(ready=lambda m=m: role(m) == "standby")
    assert sorted(role(m) for m in pair.melons.values()) == ["leader", "standby"]
    print(f"after the database restart: {'a stepped down, b leads' if stepped_down else 'a still leads'}")


def test_a_standby_serves_reads_of_the_database_and_refuses_changes(pair: Pair):
    pair.start(pair.a, leading=True)
    pair.start(pair.b, leading=False)
    long = pair.submit("-t", "1:00", "--array", "0-2", "--wrap", pair.job_script(30))
    short = pair.submit("-t", "1:00", "--wrap", pair.job_script(0.5))
    wait_for(lambda: [j["state"] for j in pair.a.jobs()] == ["R"] * 3, timeout=20, what="the array to run")
    pair.a.wait_state(short, {"CD"})
    only_b = pair.b.env(MELON_API=f"unix:{pair.b.state}/melond.sock")

    def queue_on_b() -> list[int]:
        return sorted(j["id"] for j in json.loads(pair.b.run("mqueue", "--json", env=only_b).stdout))

    wait_for(lambda: queue_on_b() == [long, long + 1, long + 2], timeout=10, what="b's queue to match a's")
    shown = json.loads(pair.b.run("mshow", "-p", str(long + 1), env=only_b).stdout)
    assert (shown["id"], shown["state"], shown["array_task_id"]) == (long + 1, "R", 1)
    history = json.loads(pair.b.run("macct", "--json", "-S", "2000-01-01", env=only_b).stdout)
    assert {j["id"]: j["state"] for j in history}[short] == "COMPLETED"
    refused = pair.b.run("mbatch", "--wrap", "true", env=only_b, check=False)
    assert refused.returncode == 1 and "stands by" in refused.stderr and "nothing was done" in refused.stderr
    assert "stands by" in pair.b.run("minfo", env=only_b, check=False).stderr  # nodes are the leader's to tell
    cancel = pair.b.run("mcancel", str(long), env=only_b, check=False)
    assert cancel.returncode == 1 and "stands by" in cancel.stderr
    pair.a.run("mcancel", str(long))  # through the leader, b's next view has it gone
    wait_for(lambda: queue_on_b() == [], timeout=10, what="b's queue to follow a's")
    ui = UnixHTTP(str(pair.b.state / "melond.sock"))
    ui.request("GET", "/")
    assert ui.getresponse().status == 200
    ui.close()
