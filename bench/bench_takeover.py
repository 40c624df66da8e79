"""Two melonds over one PostgreSQL: how long from the leader's end to the standby leading, with
the running jobs adopted.

Each round starts melond a (it leads) and melond b (it stands by) over a fresh database, on two
local nodes whose spools both reach, with 20 jobs running. Then:
- kill -9 of a: seconds until b answers with both nodes up and the 20 jobs running (adopted).
  A takeover first waits out what is left of a's lease at the kill (between 2/3 of the lease and
  all of it: the leader renews every third), read off the database's clock at the kill; the rest
  is the takeover's own cost;
- SIGTERM of a (a clean stop, which gives the lease back): the same, with no lease to wait out.
The reference, in the same round: one melond on SQLite, kill -9ed and started again with the same
20 jobs running, until it answers the same way (the machine's floor for starting and adopting).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from harness import BIN, REPO, Client, job_body, median_range, skip, summary, table

sys.path.insert(0, str(REPO))
from tests.pgserver import PgServer, binaries  # noqa: E402 - the tests' private server, as the HA tests use it

LEASES = (2.0, 5.0)
ROUNDS = 3
JOBS = 20


class Site:
    """The inventory, the database and the state folders of one round."""

    def __init__(self, root: Path, url: str | None, lease: float) -> None:
        """`url` None: SQLite, in the state folder."""
        self.root = root
        self.inventory = root / "inventory.toml"
        store = f'[store]\nurl = "{url}"\nlease = {lease}\n' if url else ""
        self.inventory.write_text(store + "".join(f'[nodes.n{i}]\nspool = "{root}/spool-n{i}"\ncpus = 16\n'
                                            for i in (1, 2)))
        self.procs: dict[str, subprocess.Popen] = {}

    def socket(self, name: str) -> str:
        return f"unix:{self.root}/{name}/melond.sock"

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([str(BIN / "melond"), "--state-dir", str(self.root / name), "--inventory",
                                 str(self.inventory), "--kill-wait", "1", "--log-level", "WARNING"], stderr=log)
        self.procs[name] = proc
        return proc

    def serving(self, name: str, jobs: int) -> bool:
        """Whether melond `name` leads, with both nodes up and `jobs` jobs running."""
        try:
            client = Client(self.socket(name), timeout=2)
            nodes = client.call("GET", "/nodes")["nodes"]
            running = [j for j in client.call("GET", "/jobs")["jobs"] if j["state"] == "R"]
        except Exception:  # noqa: BLE001 - not leading yet
            return False
        return all(n["state"] != "down" for n in nodes) and len(running) == jobs

    def until_serving(self, name: str, jobs: int, timeout: float = 60) -> float:
        began = time.monotonic()
        while not self.serving(name, jobs):
            if time.monotonic() - began > timeout:
                raise RuntimeError((self.root / f"{name}.log").read_text()[-2000:])
            time.sleep(0.02)
        return time.monotonic() - began

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


def submit(site: Site, name: str) -> None:
    client = Client(site.socket(name))
    for _ in range(JOBS):
        client.call("POST", "/jobs", job_body(site.root, "sleep 300", time_limit=600))


def cancel_all(site: Site, name: str) -> None:
    client = Client(site.socket(name))
    for j in client.call("GET", "/jobs")["jobs"]:
        client.call("POST", f"/jobs/{j['id']}/cancel")


def lease_left(url: str) -> float:
    """Seconds left of the lease now, on the database's clock."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT expires - EXTRACT(EPOCH FROM clock_timestamp()) FROM leader").fetchone()[0]


def one_round(server: PgServer, lease: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for how in ("kill", "term", "restart"):
        url = server.new_database() if how != "restart" else None
        root = Path(tempfile.mkdtemp(prefix="mt-", dir=os.environ.get("MELON_BENCH_DIR", "/tmp")))
        site = Site(root, url, lease)
        try:
            site.start("a")
            site.until_serving("a", 0)
            if how != "restart":
                site.start("b")
                time.sleep(1)  # b stands by
            submit(site, "a")
            site.until_serving("a", JOBS)
            site.procs["a"].send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
            ended = time.monotonic()
            if how == "kill":
                out["left"] = lease_left(url)
            site.procs["a"].wait(timeout=60)
            if how == "restart":
                site.start("a")
            taker = "a" if how == "restart" else "b"
            site.until_serving(taker, JOBS)
            out[how] = time.monotonic() - ended
            cancel_all(site, taker)
            site.until_serving(taker, 0)
        finally:
            site.stop_all()
            shutil.rmtree(root, ignore_errors=True)
            if url is not None:
                server.drop_database(url)
    out["own"] = out["kill"] - out["left"]
    return out


def spread(values: list[float]) -> str:
    return median_range(values, "")


def main() -> None:
    if binaries() is None:
        skip("takeover", "PostgreSQL is not installed (apt-get install postgresql-15)")
    if os.geteuid() != 0:
        skip("takeover", "the private PostgreSQL server runs as nobody, which takes root to arrange")
    server = PgServer()
    rows, points = [], []
    try:
        for lease in LEASES:
            rounds = [one_round(server, lease) for _ in range(ROUNDS)]
            for how, what in (("kill", "kill -9 of the leader: takeover"), ("left", "  of which the lease left"),
                              ("own", "  of which the takeover's own"),
                              ("term", "SIGTERM of the leader (lease given back)"),
                              ("restart", "one melond on SQLite, kill -9 and start (reference)")):
                values = [r[how] for r in rounds]
                ratio = [r[how] / r["restart"] for r in rounds]
                rows.append([f"{lease:g}", what, spread(values), spread(ratio) if how != "restart" else "1"])
                points.append({"lease": lease, "how": how, "seconds": values})
    finally:
        server.close()
    table(f"Two melonds over one PostgreSQL, {JOBS} jobs running on 2 local nodes, {ROUNDS} rounds",
          ["lease s", "what", "s until the jobs are adopted, median (min-max)", "x the reference"], rows)
    kill = [p for p in points if p["how"] == "kill" and p["lease"] == LEASES[0]][0]["seconds"]
    summary("takeover", f"{median_range(kill, ' s')} after kill -9 of the leader, lease {LEASES[0]:g} s")


if __name__ == "__main__":
    main()
