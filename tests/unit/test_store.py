"""melond/state/store.py and migrations.py on real temporary SQLite files: group commit, guards, ids, schema."""

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from melond.errors import MelonError
from melond.state.migrations import MIGRATIONS
from melond.spec.states import State
from melond.state.job import Job, check_transition
from melond.sched import steps
from melond.spec.cpulist import parse_cpuset
from melond.state.pages import PageRequest
from melond.state.store import Store

NOW = 1_700_000_000.0


def row(**overrides) -> Job:
    """A minimal pending job."""
    base = {
        "user": "alice", "uid": 1000, "name": "job", "state": "PENDING", "partition": "debug",
        "cpus": 1, "memory": 1 << 30, "time_limit": 600, "script": "#!/bin/sh\ntrue\n",
        "chdir": "/tmp", "output": "melon-%j.out", "submit_time": NOW,
    }
    base.update(overrides)
    base["state"] = State(base["state"])
    return Job(**base)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def sqlite_path(tmp_path):
    """For what is SQLite's alone (its file, its log, its query planner)."""
    return tmp_path / "melon.db"


def on_postgres(where) -> bool:
    return str(where).startswith("postgresql://")


def with_store(path, body):
    """Open the store, run `body(store)` in an event loop, always close it."""
    async def go():
        store = Store(str(path))
        try:
            return await body(store)
        finally:
            await store.close()
    return run(go())


def raw(path) -> contextlib.closing:
    """A plain connection of our own, closed after use (PostgreSQL's takes the same statements)."""
    if on_postgres(path):
        from melond.state.postgres import Connection
        return contextlib.closing(Connection(path))
    return contextlib.closing(sqlite3.connect(str(path), isolation_level=None))


def test_concurrent_writes_all_commit_and_survive_a_reopen(db_path):
    count = 300

    async def body(store):
        ids = await asyncio.gather(*(
            store.write(Store.op_insert_jobs, [row(name=f"j{i}", script_args=["-n", str(i)],
                                                   environment={"I": str(i)})], "alice", NOW + i)
            for i in range(count)))
        return [i[0] for i in ids], store.commits

    ids, commits = with_store(db_path, body)
    assert len(set(ids)) == count
    assert commits < count  # writes that queue up share a commit

    async def check(store):
        jobs = store.jobs()
        assert [j.id for j in jobs] == sorted(ids)
        by_name = {j.name: j for j in jobs}
        assert by_name["j7"].script_args == ["-n", "7"]  # JSON columns come back decoded
        assert by_name["j7"].environment == {"I": "7"}
        assert store.count_events("submitted") == {i: 1 for i in ids}

    with_store(db_path, check)


def test_a_failing_op_does_not_sink_its_group(db_path):
    in_writer = threading.Event()
    release = threading.Event()

    def hold(conn):
        in_writer.set()
        release.wait(10)

    def fail_after_writing(conn):
        Store.op_insert_jobs(conn, [row(name="doomed")], "alice", NOW)
        raise ValueError("refused by the op")

    async def body(store):
        loop = asyncio.get_running_loop()
        held = asyncio.ensure_future(store.write(hold))
        await loop.run_in_executor(None, in_writer.wait, 10)
        commits_before = store.commits
        # Queued while the writer is busy, so all three share the next transaction.
        ops = [asyncio.ensure_future(store.write(Store.op_insert_jobs, [row(name="a")], "alice", NOW)),
               asyncio.ensure_future(store.write(fail_after_writing)),
               asyncio.ensure_future(store.write(Store.op_insert_jobs, [row(name="b")], "alice", NOW))]
        await asyncio.sleep(0)  # let each task queue its op
        release.set()
        await held
        results = await asyncio.gather(*ops, return_exceptions=True)
        return results, store.commits - commits_before - 1

    results, group_commits = with_store(db_path, body)
    assert group_commits == 1
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused by the op"
    assert isinstance(results[0], list) and isinstance(results[2], list)
    with raw(db_path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM jobs ORDER BY id")]
        assert names == ["a", "b"]  # the failing op's own insert was rolled back
        assert conn.execute("SELECT COUNT(*) FROM job_events").fetchone()[0] == 2


def test_a_failing_sql_statement_is_reported_to_its_caller_only(db_path):
    async def body(store):
        return await asyncio.gather(
            store.write(lambda conn: conn.execute("INSERT INTO no_such_table VALUES (1)")),
            store.write(Store.op_insert_jobs, [row()], "alice", NOW),
            return_exceptions=True)

    bad, good = with_store(db_path, body)
    assert "no_such_table" in str(bad)  # sqlite3's OperationalError, psycopg's UndefinedTable
    assert good == [1]


# name: (state before, event, changes, expected outcome)
TRANSITIONS = {
    "pending job starts": ("PENDING", "started", {"state": "RUNNING", "node": "n1"}, True),
    "running job cannot start again": ("RUNNING", "started", {"state": "RUNNING", "node": "n2"}, False),
    "finished job cannot be extended": ("COMPLETED", "extended", {"time_limit": 900}, False),
    "running job is extended": ("RUNNING", "extended", {"time_limit": 900}, True),
    "pending job is extended": ("PENDING", "extended", {"time_limit": 900}, True),
    "event only, allowed": ("RUNNING", "cancel_requested", {}, True),
    "event only, refused": ("CANCELLED", "cancel_requested", {}, False),
    "running job requeued": ("RUNNING", "requeued", {"state": "PENDING", "restarts": 1}, True),
    "pending job cannot end": ("PENDING", "ended", {"state": "COMPLETED"}, False),
    "running job ends": ("RUNNING", "ended", {"state": "TIMEOUT", "end_time": NOW + 1}, True),
}


@pytest.mark.parametrize("before, kind, changes, expected", TRANSITIONS.values(), ids=TRANSITIONS.keys())
def test_transition_applies_only_from_the_states_the_table_allows(db_path, before, kind, changes, expected):
    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state=before)], "alice", NOW)
        untouched = store.job(jid)
        done = await store.write(Store.op_transition, jid, kind, changes, "bob", {"why": 1}, NOW + 1)
        return done, untouched, store.job(jid), store.events(jid)

    done, untouched, job, events = with_store(db_path, body)
    assert done is expected
    assert [e["kind"] for e in events] == (["submitted", kind] if expected else ["submitted"])
    if expected:
        assert events[1] == {"time": NOW + 1, "kind": kind, "actor": "bob", "data": {"why": 1}}
        changed = {k: State(v) if k == "state" else v for k, v in changes.items()}
        assert dataclasses.asdict(job) == dataclasses.asdict(dataclasses.replace(untouched, **changed))
    else:
        assert dataclasses.asdict(job) == dataclasses.asdict(untouched)


@pytest.mark.parametrize("kind, changes", [
    ("extended", {"state": "COMPLETED"}),  # an extension never changes the state
    ("ended", {"end_time": NOW}),  # an end must say which state
    ("ended", {"state": "PENDING"}),  # ...and it is a final one
    ("requeued", {"state": "RUNNING"}),
    ("renamed", {}),  # no such event
])
def test_the_table_refuses_a_change_it_does_not_list(db_path, kind, changes):
    with pytest.raises(ValueError):
        check_transition(kind, changes)

    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state="RUNNING")], "alice", NOW)
        with pytest.raises(ValueError):
            await store.write(Store.op_transition, jid, kind, changes, "bob", {}, NOW + 1)
        return store.job(jid), store.events(jid)

    job, events = with_store(db_path, body)
    assert job.state is State.RUNNING and [e["kind"] for e in events] == ["submitted"]


def test_transition_of_a_missing_job_writes_nothing(db_path):
    async def body(store):
        done = await store.write(Store.op_transition, 999, "started", {"state": "RUNNING"}, "a", {}, NOW)
        return done, store.count_events("started")

    assert with_store(db_path, body) == (False, {})


def test_set_reasons_touches_pending_jobs_only(db_path):
    async def body(store):
        ids = await store.write(Store.op_insert_jobs, [row(), row(state="RUNNING"), row()], "alice", NOW)
        await store.write(Store.op_set_reasons, {ids[0]: "Resources", ids[1]: "Priority", ids[2]: None})
        return [store.job(i).reason for i in ids]

    assert with_store(db_path, body) == ["Resources", None, None]


def test_array_tasks_share_the_first_task_id(db_path):
    async def body(store):
        ids = await store.write(Store.op_insert_jobs, [row(array_task_id=t) for t in (0, 1, 2)], "alice", NOW)
        return ids, [store.job(i).array_job_id for i in ids], [j.id for j in store.jobs(ids=[ids[0]])]

    ids, array_ids, listed = with_store(db_path, body)
    assert array_ids == [ids[0]] * 3
    assert listed == ids


def test_job_ids_only_grow_after_deletes_and_reopen(db_path):
    async def insert(store):
        return (await store.write(Store.op_insert_jobs, [row(), row(), row()], "alice", NOW))

    assert with_store(db_path, insert) == [1, 2, 3]
    with raw(db_path) as conn:  # a wiped queue: even the highest ids are gone
        conn.execute("DELETE FROM job_events")
        conn.execute("DELETE FROM jobs")
    assert with_store(db_path, insert) == [4, 5, 6]
    with raw(db_path) as conn:
        conn.execute("DELETE FROM job_events WHERE job_id = 6")
        conn.execute("DELETE FROM jobs WHERE id = 6")
    assert with_store(db_path, insert) == [7, 8, 9]


def test_a_newer_schema_is_refused_naming_the_file(db_path):
    with_store(db_path, lambda store: asyncio.sleep(0))
    with raw(db_path) as conn:
        if on_postgres(db_path):  # the schema version there is the migrations applied
            conn.execute("INSERT INTO migrations (name, applied) VALUES ('999_from_the_future', 0)")
        else:
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(MelonError, match="newer") as err:
        Store(str(db_path))
    assert str(db_path) in str(err.value)
    with raw(db_path) as conn:  # and it was left as it was
        assert _version(conn, db_path) == len(MIGRATIONS) + 1


def _version(conn, where) -> int:
    if on_postgres(where):
        return conn.execute("SELECT count(*) FROM migrations").fetchone()[0]
    return conn.execute("PRAGMA user_version").fetchone()[0]


def test_reopening_applies_no_migration_twice(db_path):
    async def insert(store):
        return await store.write(Store.op_insert_jobs, [row()], "alice", NOW)

    with_store(db_path, insert)
    with raw(db_path) as conn:
        first = conn.execute("SELECT name, applied FROM migrations ORDER BY name").fetchall()
    with_store(db_path, insert)
    with_store(db_path, lambda store: asyncio.sleep(0))
    with raw(db_path) as conn:
        assert conn.execute("SELECT name, applied FROM migrations ORDER BY name").fetchall() == first
        assert [r[0] for r in first] == [name for name, _ in MIGRATIONS]
        assert _version(conn, db_path) == len(MIGRATIONS)
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 2


def test_database_is_private_and_in_wal_mode(sqlite_path):
    db_path = sqlite_path
    with_store(db_path, lambda store: asyncio.sleep(0))
    assert db_path.stat().st_mode & 0o077 == 0
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = """
import asyncio, sys
sys.path.insert(0, {repo!r})
from melond.spec.states import State
from melond.state.job import Job, check_transition
from melond.sched import steps
from melond.spec.cpulist import parse_cpuset
from melond.state.pages import PageRequest
from melond.state.store import Store
from tests.unit.test_store import row

async def main():
    store = Store({path!r})
    while True:
        ids = await asyncio.gather(*(store.write(Store.op_insert_jobs, [row(name="x" * 2000)], "alice", 1.0)
                                     for _ in range(20)))
        print(" ".join(str(i[0]) for i in ids), flush=True)

asyncio.run(main())
"""


def test_kill_9_mid_write_keeps_the_database_whole_and_every_acknowledged_job(db_path):
    """A writer killed while group commits are in flight: the file passes SQLite's integrity
    check, and every insert the writer saw acknowledged is there."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=repo, path=str(db_path))],
                            stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    for line in proc.stdout:
        acked += [int(x) for x in line.split()]
        if len(acked) >= 2000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with raw(db_path) as conn:
        if not on_postgres(db_path):
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in conn.execute("SELECT id FROM jobs")}
    assert set(acked) <= stored
    assert with_store(db_path, lambda s: _count(s)) == len(stored)  # and melond's store opens it


async def _count(store: Store) -> int:
    return len(store.jobs())


def test_the_accounting_window_reads_through_the_end_index(db_path):
    """What macct lists: jobs pending or running at some time in [start, end], by two ranges of
    jobs_end (never a scan of the table, which a million stored jobs would make slow: SQLite's
    plan is checked; PostgreSQL plans by its statistics, and a table of five rows is scanned)."""
    from melond.state.store import ACCOUNTING_COLUMNS, accounting_query

    with_store(db_path, lambda store: asyncio.sleep(0))  # the schema
    jobs = [  # (submit, start, end, state)
        (NOW - 500, NOW - 400, NOW - 300, "COMPLETED"),  # ended before the window
        (NOW - 200, NOW - 150, NOW - 50, "FAILED"),  # ran into the window
        (NOW - 20, NOW - 10, None, "RUNNING"),  # running through it
        (NOW - 5, None, None, "PENDING"),  # pending in it
        (NOW + 500, None, None, "PENDING"),  # submitted after it
    ]
    with raw(db_path) as conn:
        for submit, start, end, state in jobs:
            conn.execute("INSERT INTO jobs (user, uid, name, state, partition, cpus, memory, time_limit, script, "
                         "chdir, output, submit_time, start_time, end_time) VALUES ('alice', 1000, 'j', ?, 'p', 1, 1, "
                         "60, 's', '/', 'o', ?, ?, ?)", (state, submit, start, end))
        if not on_postgres(db_path):
            sql, params = accounting_query(NOW - 100, NOW, None, None, None, ACCOUNTING_COLUMNS)
            plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "jobs_end" in plan and "SCAN jobs" not in plan, plan

    async def read(store):
        return await store.read(lambda db: db.accounting(NOW - 100, NOW, columns=["state"]))
    rows = with_store(db_path, read)
    assert rows == [{"id": 2, "state": "FAILED"}, {"id": 3, "state": "RUNNING"}, {"id": 4, "state": "PENDING"}]
    with pytest.raises(ValueError, match="script"):
        accounting_query(0, 1, None, None, None, ["script"])


def test_another_program_closing_its_connection_leaves_melonds_log_alone(sqlite_path):
    """An sqlite3 shell or a script that reads the database and closes must not take itself for
    the last connection: it would delete the log melond still writes to, and every commit after
    it would be lost to other readers, and to a kill -9."""
    def elsewhere() -> str:
        read = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                "print(c.execute('SELECT drain FROM nodes').fetchone()[0]); c.close()")
        return subprocess.run([sys.executable, "-c", read, str(sqlite_path)], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    async def body(store):
        await store.write(Store.op_set_drain, "n1", "first")
        assert elsewhere() == "first"
        assert os.path.exists(f"{sqlite_path}-wal")
        await store.write(Store.op_set_drain, "n1", "second")
        assert elsewhere() == "second"
    with_store(sqlite_path, body)


def test_steps_are_numbered_per_run_closed_once_and_ended_with_their_job(db_path):
    def grant(mode, want):  # as melond's engine asks it: the job's 4 CPUs, 0-3
        return lambda running: steps.grant(mode, want, 4, parse_cpuset("0-3"), running)

    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state="RUNNING", cpus=4, cpu_ids="0-3", node="n1")],
                                  "alice", NOW)
        first = await store.write(Store.op_step_start, jid, 0, "n1", "sh", 2, grant("exact", 2), NOW)
        second = await store.write(Store.op_step_start, jid, 0, "n1", "py", 1, grant("overlap", 0), NOW + 1)
        third = await store.write(Store.op_step_start, jid, 0, "n1", "py", 1, grant("exact", 2), NOW + 1)
        with pytest.raises(steps.Busy):  # all four held by the two exact steps
            await store.write(Store.op_step_start, jid, 0, "n1", "py", 1, grant("exact", 1), NOW + 1)
        with pytest.raises(ValueError, match="More processors requested than permitted"):
            await store.write(Store.op_step_start, jid, 0, "n1", "py", 1, grant("exact", 5), NOW + 1)
        closed = await store.write(Store.op_step_end, jid, 0, 0, {"state": "FAILED", "exit_code": 3}, NOW + 2)
        again = await store.write(Store.op_step_end, jid, 0, 0, {"state": "COMPLETED"}, NOW + 3)
        running = [s.step_id for s in store.steps([jid], running_only=True)]
        await store.write(Store.op_close_steps, jid, 0, "TIMEOUT", NOW + 4)
        other_run = await store.write(Store.op_step_start, jid, 1, "n2", "sh", 1, grant("whole", 0), NOW + 5)
        return first, second, third, closed, again, running, store.steps([jid]), other_run

    first, second, third, closed, again, running, steps_, other_run = with_store(db_path, body)
    assert (first, second, third) == ((0, [0, 1], None), (1, [0, 1, 2, 3], None), (2, [2, 3], None))  # overlap: all
    assert (closed, again, running) == (True, False, [1, 2])
    assert other_run == (0, [0, 1, 2, 3], None)  # a new run numbers its steps from 0, and holds all CPUs
    assert [(s.step_id, s.state, s.exit_code, s.end_time, s.cpu_ids) for s in steps_] == [
        (0, "FAILED", 3, NOW + 2, "0-1"), (1, "TIMEOUT", None, NOW + 4, None), (2, "TIMEOUT", None, NOW + 4, "2-3")]


def test_a_spanning_jobs_steps_hold_cpus_on_each_of_their_nodes(db_path):
    """Two --exact steps over a job's two nodes (0-1 on each) take one CPU each on every node;
    a third finds both nodes full; a whole step on one node takes all of that node's, and the
    record names each node's ids."""
    parts = {"n1": [0, 1], "n2": [2, 3]}

    def grant(mode, want):
        return lambda running: steps.grant_nodes(mode, want, parts, running)

    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state="RUNNING", cpus=4, node="n1")], "alice", NOW)
        first = await store.write(Store.op_step_start, jid, 0, "n[1-2]", "a", 2, grant("exact", {"n1": 1, "n2": 1}),
                                  NOW)
        second = await store.write(Store.op_step_start, jid, 0, "n[1-2]", "b", 2, grant("exact", {"n1": 1, "n2": 1}),
                                   NOW)
        with pytest.raises(steps.Busy):
            await store.write(Store.op_step_start, jid, 0, "n2", "c", 1, grant("exact", {"n2": 1}), NOW)
        with pytest.raises(ValueError, match="3 asked on n1, the job has 2 there"):
            await store.write(Store.op_step_start, jid, 0, "n1", "d", 3, grant("exact", {"n1": 3}), NOW)
        await store.write(Store.op_step_end, jid, 0, 0, {"state": "COMPLETED"}, NOW + 1)
        await store.write(Store.op_step_end, jid, 0, 1, {"state": "COMPLETED"}, NOW + 1)
        whole = await store.write(Store.op_step_start, jid, 0, "n2", "w", 1, grant("whole", {"n2": 1}), NOW + 2)
        return first, second, whole, [s.cpu_ids for s in store.steps([jid])]

    first, second, whole, recorded = with_store(db_path, body)
    assert (first, second) == ((0, {"n1": [0], "n2": [2]}, None), (1, {"n1": [1], "n2": [3]}, None))
    assert whole == (2, {"n2": [2, 3]}, None)
    assert recorded == ["n1:0;n2:2", "n1:1;n2:3", "n2:2-3"]


def test_steps_that_ask_for_gpus_divide_the_jobs_and_others_share_them(db_path):
    """The job holds GPUs 1 and 3 of n1: two steps asking one each get one each, a third waits
    (Busy), one asking three is refused; a step asking none holds none, whatever the others do."""
    job_gpus = {"n1": [1, 3]}

    def gpus(want):
        return lambda running: steps.grant_gpus(want, job_gpus, running)

    def cpus(running):
        return 0, []

    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state="RUNNING", cpus=2, node="n1")], "alice", NOW)
        a = await store.write(Store.op_step_start, jid, 0, "n1", "a", 1, cpus, NOW, gpus({"n1": 1}))
        b = await store.write(Store.op_step_start, jid, 0, "n1", "b", 1, cpus, NOW, gpus({"n1": 1}))
        with pytest.raises(steps.Busy):
            await store.write(Store.op_step_start, jid, 0, "n1", "c", 1, cpus, NOW, gpus({"n1": 1}))
        with pytest.raises(ValueError, match="3 asked on n1, the job has 2 there"):
            await store.write(Store.op_step_start, jid, 0, "n1", "d", 1, cpus, NOW, gpus({"n1": 3}))
        shared = await store.write(Store.op_step_start, jid, 0, "n1", "e", 1, cpus, NOW)
        await store.write(Store.op_step_end, jid, 0, 0, {"state": "COMPLETED"}, NOW + 1)
        again = await store.write(Store.op_step_start, jid, 0, "n1", "f", 1, cpus, NOW + 2, gpus({"n1": 1}))
        return a, b, shared, again, [s.gres_ids for s in store.steps([jid])]

    a, b, shared, again, recorded = with_store(db_path, body)
    assert (a[2], b[2], shared[2], again[2]) == ({"n1": [1]}, {"n1": [3]}, None, {"n1": [1]})
    assert recorded == ["n1:1", "n1:3", None, "n1:1"]


def test_a_runs_end_closes_its_running_steps_in_the_same_write(db_path):
    async def body(store):
        [jid] = await store.write(Store.op_insert_jobs, [row(state="RUNNING", cpus=2, node="n1")], "alice", NOW)
        await store.write(Store.op_step_start, jid, 0, "n1", "sh", 1, lambda running: (0, []), NOW)
        done = await store.write(Store.op_end_run, jid, 0, {"state": "TIMEOUT", "end_time": NOW + 9}, "melond", {},
                                 "TIMEOUT", NOW + 9)
        again = await store.write(Store.op_end_run, jid, 0, {"state": "COMPLETED"}, "melond", {}, "CANCELLED", NOW)
        return done, again, store.job(jid).state, store.steps([jid])

    done, again, state, steps_ = with_store(db_path, body)
    assert (done, again, state) == (True, False, State.TIMEOUT)
    assert [(s.state, s.end_time) for s in steps_] == [("TIMEOUT", NOW + 9)]


def test_the_active_jobs_share_equal_values_as_their_submission_did(db_path):
    """An array's tasks read back at start share one environment, one set of options and one
    script (a restart with 100,000 queued tasks costs no more memory than before it), and each
    still reads as its own; an ended job is not read."""
    def task(t: int, **kw) -> Job:
        return row(array_task_id=t, environment={"PATH": "/bin", "X": "1"}, slurm_options={"qos": "normal"}, **kw)

    async def body(store):
        await store.write(Store.op_insert_jobs, [task(0), task(1, state="RUNNING"), task(2), task(3, state="FAILED")],
                          "alice", NOW)
        return store.active_jobs()

    jobs = with_store(db_path, body)
    assert [j.array_task_id for j in jobs] == [0, 1, 2]
    assert jobs[0].environment is jobs[1].environment is jobs[2].environment == {"PATH": "/bin", "X": "1"}
    assert jobs[0].slurm_options is jobs[2].slurm_options and jobs[0].script is jobs[1].script


def test_bulk_changes_events_requests_tokens_and_nodes_read_back_the_same(db_path):
    """The statements the other tests leave out, each written once for both databases: a bulk
    transition (the JSON id set), the event log and its reads, extension requests, tokens and
    their revocation, nodes, the health row, events of the current run (a JSON field), a page
    and the job filters (empty id lists included)."""
    async def body(store):
        ids = await store.write(Store.op_insert_jobs, [row(array_task_id=t, name=f"t{t}") for t in range(5)],
                                "alice", NOW)
        other = (await store.write(Store.op_insert_jobs, [row(user="bob", name="solo")], "bob", NOW))[0]
        held = await store.write(Store.op_transition_many, [*ids[:3], 999], "held", {"hold": True}, "alice",
                                 {"why": "x"}, NOW + 1)
        none = await store.write(Store.op_transition_many, [], "held", {"hold": True}, "alice", {}, NOW + 1)
        started = await store.write(Store.op_transition, ids[4], "started",
                                    {"state": "RUNNING", "node": "n1", "start_time": NOW + 2}, "melond", {}, NOW + 2)
        await store.write(Store.op_note, ids[4], "extended", "alice", {"run": 0, "by": 60}, NOW + 3)
        await store.write(Store.op_note, ids[4], "extended", "alice", {"run": 7, "by": 60}, NOW + 3)  # another run
        await store.write(Store.op_note, ids[4], "extended", "alice", {"by": 30}, NOW + 4)  # no run named
        request = await store.write(Store.op_file_request, {"job_id": ids[4], "user": "alice", "uid": 1000,
                                                            "add_seconds": 600, "to_limit": None, "reason": "more",
                                                            "state": "pending", "created": NOW + 5}, "alice", {})
        decided = await store.write(Store.op_decide_request, request, "approved", "carol", "fine", NOW + 6)
        again = await store.write(Store.op_decide_request, request, "denied", "carol", None, NOW + 7)
        for token, user, parent in (("t1", "alice", None), ("t2", "alice", "t1"), ("t3", "bob", None)):
            await store.write(Store.op_insert_token, {"id": token, "user": user, "uid": 1000, "hash": "h",
                                                      "created": NOW, "parent": parent})
        await store.write(Store.op_token_used, "t3", NOW + 8)
        revoked = await store.write(Store.op_revoke_tokens, ["t1"], "alice", "alice", NOW + 9)
        nothing = await store.write(Store.op_revoke_tokens, [], None, "root", NOW + 9)
        await store.write(Store.op_upsert_node, {"name": "n1", "state": "up", "cpus": 4, "memory": 1024,
                                                 "backend": "none", "updated": NOW})
        await store.write(Store.op_upsert_node, {"name": "n1", "state": "down", "reason": "gone", "updated": NOW})
        await store.write(Store.op_set_drain, "n1", "maintenance")
        await store.write(Store.op_set_drain, "n2", "new")
        await store.write(Store.op_health, NOW)
        await store.write(Store.op_health, NOW + 1)
        this_run = await store.read(lambda db: db.events_this_run([ids[4]], ["extended"]))
        page = await store.read(lambda db: db.page(PageRequest(user="alice", sort="name", descending=False, limit=2)))
        return {
            "held": held, "none": none, "started": started, "states": store.states(ids + [other, 4242]),
            "no_states": store.states([]), "by_user": [j.id for j in store.jobs(user="bob")],
            "by_ids": [j.id for j in store.jobs(ids=[ids[0]])], "no_ids": store.jobs(ids=[]),
            "task": store.task_id(ids[0], 3), "events": [e["kind"] for e in store.events(ids[0])],
            "budget": store.extensions_by("alice", NOW), "after": store.events_after(0, 3),
            "last": store.last_event_seq(), "requests": store.extension_requests(job_id=ids[4]),
            "decided": (decided, again), "revoked": revoked, "nothing": nothing,
            "tokens": [(t["id"], t["last_used"]) for t in store.tokens()], "nodes": store.nodes(),
            "this_run": [(e[1], e[3].get("by")) for e in this_run], "page": ([j.name for j in page[0]], page[1:]),
            "held_count": store.count_events("held"), "ids": ids, "other": other,
        }

    got = with_store(db_path, body)
    ids = got["ids"]
    assert got["held"] == ids[:3] and got["none"] == [] and got["started"] is True
    assert got["states"] == {**{i: State.PENDING for i in ids[:4]}, ids[4]: State.RUNNING, got["other"]: State.PENDING}
    assert got["no_states"] == {} and got["no_ids"] == []
    assert got["by_user"] == [got["other"]] and got["by_ids"] == ids and got["task"] == ids[3]
    assert got["events"] == ["submitted", "held"] and got["held_count"] == {i: 1 for i in ids[:3]}
    assert [e["by"] for e in got["budget"]] == [60, 60, 30]
    assert [(e["job_id"], e["kind"], e["user"]) for e in got["after"]] == [(i, "submitted", "alice") for i in ids[:3]]
    assert got["last"] == 15  # 6 submitted, 3 held, started, 3 notes, the request filed and decided
    [request] = got["requests"]
    assert (request["state"], request["decided_by"], request["verdict"], got["decided"]) == (
        "approved", "carol", "fine", (True, False))
    assert got["revoked"] == ["t1"] and got["nothing"] == []
    assert got["tokens"] == [("t3", NOW + 8)]  # t1 revoked, and t2 with it (its parent)
    assert [(n["name"], n["state"], n["reason"], n["cpus"], n["drain"]) for n in got["nodes"]] == [
        ("n1", "down", "gone", 4, "maintenance"), ("n2", "unknown", None, None, "new")]
    assert got["this_run"] == [("extended", 60), ("extended", 30)]  # the other run's left out
    assert got["page"] == (["t0", "t1"], (True, 5))
