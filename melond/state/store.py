"""melond's state: jobs, the append-only job event log, nodes, API tokens; in SQLite (the
embedded default, a file in the state directory) or PostgreSQL (`[store] url`, for two
melonds over one database: melond.state.postgres).

One writer thread owns the write connection (Datasette's pattern): callers
queue small functions, the writer runs every queued function inside one
`BEGIN IMMEDIATE` transaction (each in its own savepoint, so one failure does
not sink the others) and commits once — group commit. With WAL and
synchronous=FULL that commit is durable against a power cut, and its cost is
shared by everything that arrived while the previous commit was syncing.
Results reach the event loop through futures only after the commit, so an
acknowledged submission is on disk. Reads use their own connection. PostgreSQL takes the
same statements, and the same group commit over one session.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlite_utils

from melond.errors import MelonError, NotLeader
from melond.figures import Timings
from melond.spec.cpulist import cpuset_text, node_cpusets_text
from melond.spec.states import ACTIVE, State
from melond.state import dbfile, dialect, lease, pages
from melond.state import step
from melond.state.job import COLUMNS, Job, check_transition
from melond.state.step import Step
from melond.state.pages import PageRequest
from melond.state.migrations import MIGRATIONS, behind, migrate, migrate_postgres

log = logging.getLogger("melond.store")

Conn = dialect.Connection

BATCH_MAX = 1000


def _connect(path: str) -> sqlite3.Connection:
    return _configure(sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30))


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _keep_before_upgrade(conn: Conn, path: str, version: int) -> str:
    """A copy of the database as the older melond left it, next to it, before any migration
    touches it: a failed or regretted upgrade is undone by stopping melond and moving it back."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.schema{version}-{stamp}.bak"
    _copy_into_new(conn, target)
    log.warning("database upgrade: schema %d to %d; the database as it was is kept in %s", version,
                len(MIGRATIONS), target, extra={"backup": target, "from": version, "to": len(MIGRATIONS)})
    return target


class Store:
    """The database and its single writer."""

    def __init__(self, path: str, *, hold_limit: float | None = None) -> None:
        """`path`: the SQLite file, or a postgresql:// URL. `hold_limit` (PostgreSQL): seconds the
        server lets the writer's transaction wait on melond before it ends the session. A leader
        paused in the middle of a group commit holds its share lock on the lease's row, which a
        claim waits for: the limit (the lease) keeps a paused leader from holding a takeover off."""
        self.path = path
        if dialect.is_url(path):
            from melond.state import postgres  # psycopg: loaded by a melond on PostgreSQL alone
            self.dialect = dialect.POSTGRESQL
            self.path = dialect.shown(path)  # what messages name: never the password
            self._failure = postgres.failure
            self._begin = "BEGIN"
            self._writer, self._reader, self._slow_reader = self._open_postgres(path, hold_limit)
        else:
            self.dialect = dialect.SQLITE
            self._failure = dbfile.failure
            self._begin = "BEGIN IMMEDIATE"
            self._writer, self._reader, self._slow_reader = self._open_sqlite(path)
        self._slow = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="melon-store-reader")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.commits = 0
        self.commit_times = Timings()  # each group commit, BEGIN to COMMIT (`/metrics`)
        self.commit_failures = 0  # group commits that failed whole (a full disk, a lock held too long)
        # The leader's epoch, once it leads (PostgreSQL): each group commit checks it first
        # (melond/state/lease.py), and a commit it fails calls `on_fenced` from the writer's thread.
        self.epoch = 0
        self.on_fenced: Callable[[NotLeader], None] | None = None
        self.read_only = False  # a standby's: every write is refused, and none reaches the database
        self._thread = threading.Thread(target=self._run_writer, name="melon-store-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def _open_postgres(url: str, hold_limit: float | None) -> tuple[Any, Any, Any]:
        from melond.state import postgres
        limit = {"idle_in_transaction_session_timeout": f"{int(hold_limit * 1000)}ms"} if hold_limit else None
        writer = postgres.Connection(url, limit)
        try:
            migrate_postgres(writer)
            return writer, postgres.Connection(url), postgres.Connection(url)
        except Exception as exc:  # noqa: BLE001
            writer.close()
            raise postgres.explain(exc, url) from None

    @staticmethod
    def _open_sqlite(path: str) -> tuple[Any, Any, Any]:
        try:
            if not dbfile.check(path):
                dbfile.create(path, lambda conn: migrate(sqlite_utils.Database(_configure(conn))))
            writer = _connect(path)
        except Exception as exc:  # noqa: BLE001 - every way opening fails is told as one line
            raise dbfile.explain(exc, path) from None
        try:
            old = behind(sqlite_utils.Database(writer))
            if old is not None:
                _keep_before_upgrade(writer, path, old)
            migrate(sqlite_utils.Database(writer))
            dbfile.verify(writer, path)
            dbfile.check_companions(path)  # the -wal and -shm SQLite made: melond's user's alone, as the database
        except Exception as exc:  # noqa: BLE001
            writer.close()
            raise dbfile.explain(exc, path) from None
        # The second: quick reads, on the event loop's thread. The third: reads that may be long
        # (a history, a node's reconcile), on a thread of their own, so the event loop keeps
        # serving meanwhile.
        return writer, _connect(path), _connect(path)

    # ---- writing -------------------------------------------------------------------------

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(conn, *args) in the next group transaction; return once it is committed."""
        if self.read_only:
            raise NotLeader("this melond stands by and changes nothing; nothing was done. List both endpoints in "
                            "MELON_API (a,b) so that the tools find the leader")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((fn, args, fut, loop))
        return await fut

    def waiting(self) -> int:
        """Writes queued for the next group commit."""
        return self._queue.qsize()

    def _run_writer(self) -> None:
        conn = self._writer
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            outcomes: list[tuple[bool, Any]] = []
            began = time.perf_counter()
            try:
                conn.execute(self._begin)
                if self.epoch:
                    lease.check(conn, self.epoch)
                for fn, args, _, _ in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        outcomes.append((True, fn(conn, *args)))
                        conn.execute("RELEASE op")
                    except Exception as exc:  # noqa: BLE001 - handed to the caller
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        outcomes.append((False, self._failure(exc, self.path)))
                conn.execute("COMMIT")
                self.commits += 1
                self.commit_times.observe(time.perf_counter() - began)
            except Exception as exc:  # noqa: BLE001 - the whole batch failed to commit
                self.commit_failures += 1
                try:
                    conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - no transaction left, or no connection
                    pass
                outcomes = [(False, self._failure(exc, self.path))] * len(batch)
                if isinstance(exc, NotLeader) and self.on_fenced is not None:
                    self.on_fenced(exc)
            for (_, _, fut, loop), (ok, value) in zip(batch, outcomes):
                loop.call_soon_threadsafe(_settle, fut, ok, value)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a read method, fn(store, *args), off the event loop, on the slow reads' connection."""
        return await asyncio.get_running_loop().run_in_executor(self._slow, fn, _SlowView(self), *args)

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._slow.shutdown(wait=True)
        self._writer.close()
        self._reader.close()
        self._slow_reader.close()

    # ---- write operations (run in the writer thread) ----------------------------------------

    @staticmethod
    def op_insert_jobs(conn: Conn, jobs: list[Job], actor: str, now: float) -> list[int]:
        """Insert jobs (one submission, or every task of an array) with their `submitted` events."""
        if len(jobs) > 1 and dialect.of(conn) is dialect.POSTGRESQL:
            return _insert_tasks(conn, jobs, actor, now)
        ids = []
        first = None
        for job in jobs:
            row = job.to_row()
            if row.get("array_task_id") is not None and first is not None:
                row["array_job_id"] = first
            cols = ", ".join(row)
            jid = conn.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))}) RETURNING id",
                               list(row.values())).fetchone()[0]
            if row.get("array_task_id") is not None and first is None:
                first = jid
                conn.execute("UPDATE jobs SET array_job_id = ? WHERE id = ?", (jid, jid))
            _event(conn, jid, now, "submitted", actor, {})
            ids.append(jid)
        return ids

    @staticmethod
    def op_transition(conn: Conn, job_id: int, kind: str, changes: dict, actor: str, data: dict,
                      now: float) -> bool:
        """Record an event of a job's history with the changes it brings, only if the job is still
        in a state the transition table allows the event in; False if it is not."""
        allowed = [s.value for s in check_transition(kind, changes).sources]
        in_state = f"id = ? AND state IN ({', '.join('?' * len(allowed))})"
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            matched = conn.execute(f"UPDATE jobs SET {sets} WHERE {in_state}",
                                   [*changes.values(), job_id, *allowed]).rowcount == 1
        else:  # an event only (e.g. a cancel request), still guarded by the state
            matched = conn.execute(f"SELECT 1 FROM jobs WHERE {in_state}", [job_id, *allowed]).fetchone() is not None
        if not matched:
            return False
        _event(conn, job_id, now, kind, actor, data)
        return True

    @staticmethod
    def op_transition_many(conn: Conn, ids: list[int], kind: str, changes: dict, actor: str,
                           data: dict, now: float, only: Iterable[str] | None = None) -> list[int]:
        """op_transition for many jobs in one transaction (a 100,000-task array cancelled or held
        at once): the ids whose state still allowed it (and is among `only`, where given), each
        with its event. The ids go in as one JSON array (the dialect's id set), so two statements
        do it all, whatever their number."""
        allowed = [s.value for s in check_transition(kind, changes).sources if only is None or s.value in only]
        sets = ", ".join(f"{k} = ?" for k in changes) or "id = id"
        id_set = dialect.of(conn).id_set
        done = [r[0] for r in conn.execute(
            f"UPDATE jobs SET {sets} WHERE state IN ({', '.join('?' * len(allowed))}) AND id IN ({id_set}) "
            f"RETURNING id", [*changes.values(), *allowed, json.dumps(ids)])]
        conn.execute(f"INSERT INTO job_events (job_id, time, kind, actor, data) SELECT ids.value, ?, ?, ?, ? "
                     f"FROM ({id_set}) AS ids", (now, kind, actor, json.dumps(data), json.dumps(done)))
        return done

    @staticmethod
    def op_step_start(conn: Conn, job_id: int, run: int, node: str | None, name: str, ntasks: int,
                      decide: Callable[[list[Step]], tuple[int, list[int] | dict[str, list[int]]]],
                      now: float, gpus: Callable[[list[Step]], dict[str, list[int]]] | None = None,
                      ) -> tuple[int, list[int] | dict[str, list[int]], dict[str, list[int]] | None]:
        """Number a new step of the job's run (0, 1, ...) and record it running, holding the CPUs
        `decide` gives it given the running steps that hold some (decided here, in the write
        transaction, so two sruns at once never get the same CPUs; `decide` may raise to refuse):
        a list of ids, or ids by node for a job spanning nodes; and the GPUs `gpus` gives it, by
        node, where it asks for some."""
        running = [Step.from_row(r) for r in conn.execute(
            "SELECT * FROM steps WHERE job_id = ? AND run = ? AND state = ? AND (cpus > 0 OR gres_ids IS NOT NULL)",
            (job_id, run, step.RUNNING))]
        cpus, ids = decide([s for s in running if s.cpus])
        held = gpus([s for s in running if s.gres_ids]) if gpus else None
        step_id = conn.execute("SELECT coalesce(max(step_id) + 1, 0) FROM steps WHERE job_id = ? AND run = ?",
                               (job_id, run)).fetchone()[0]
        conn.execute("INSERT INTO steps (job_id, run, step_id, name, state, node, ntasks, cpus, start_time, cpu_ids, "
                     "gres_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (job_id, run, step_id, name, step.RUNNING, node, ntasks, cpus, now,
                      (node_cpusets_text(ids) if isinstance(ids, dict) else cpuset_text(ids)) if cpus and ids
                      else None, node_cpusets_text(held) if held is not None else None))
        return step_id, ids, held

    @staticmethod
    def op_step_end(conn: Conn, job_id: int, run: int, step_id: int, changes: dict, now: float) -> bool:
        """Close a running step with how it ended; False if it is not running (closed already)."""
        changes = {**changes, "end_time": now}
        sets = ", ".join(f"{k} = ?" for k in changes)
        return conn.execute(f"UPDATE steps SET {sets} WHERE job_id = ? AND run = ? AND step_id = ? AND state = ?",
                            [*changes.values(), job_id, run, step_id, step.RUNNING]).rowcount == 1

    @staticmethod
    def op_end_run(conn: Conn, job_id: int, run: int, changes: dict, actor: str, data: dict,
                   steps_state: str, now: float) -> bool:
        """A job's run ended: its `ended` event, and its steps still running closed as `steps_state`,
        in one transaction (one commit per job end, the hot path of a busy queue)."""
        done = Store.op_transition(conn, job_id, "ended", changes, actor, data, now)
        if done:
            Store.op_close_steps(conn, job_id, run, steps_state, now)
        return done

    @staticmethod
    def op_close_steps(conn: Conn, job_id: int, run: int, state: str, now: float) -> None:
        """The job's run ended: steps still running end with it (srun was killed with the job)."""
        conn.execute("UPDATE steps SET state = ?, end_time = ? WHERE job_id = ? AND run = ? AND state = ?",
                     (state, now, job_id, run, step.RUNNING))

    @staticmethod
    def op_set_reasons(conn: Conn, reasons: dict[int, str | None]) -> None:
        conn.executemany("UPDATE jobs SET reason = ? WHERE id = ? AND state = 'PENDING'",
                         [(r, j) for j, r in reasons.items()])

    @staticmethod
    def op_set_drain(conn: Conn, name: str, reason: str | None) -> None:
        conn.execute("INSERT INTO nodes (name, state, drain) VALUES (?, 'unknown', ?) "
                     "ON CONFLICT(name) DO UPDATE SET drain = excluded.drain", (name, reason))

    @staticmethod
    def op_upsert_node(conn: Conn, node: dict) -> None:
        cols = ", ".join(node)
        updates = ", ".join(f"{k} = excluded.{k}" for k in node if k != "name")
        conn.execute(f"INSERT INTO nodes ({cols}) VALUES ({', '.join('?' * len(node))}) "
                     f"ON CONFLICT(name) DO UPDATE SET {updates}", list(node.values()))

    @staticmethod
    def op_insert_token(conn: Conn, row: dict) -> None:
        conn.execute(f"INSERT INTO tokens ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    @staticmethod
    def op_revoke_tokens(conn: Conn, ids: list[str] | None, user: str | None, by: str,
                         now: float) -> list[str]:
        """Revoke the given ids (or all), only `user`'s unless user is None; the ids revoked. The
        browser sessions signed in with a revoked token (its children) are revoked with it."""
        where, params = ["revoked IS NULL"], []
        if ids is not None:
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            params += ids
        if user is not None:
            where.append("user = ?")
            params.append(user)
        cond = " AND ".join(where)
        revoked = [r[0] for r in conn.execute(f"SELECT id FROM tokens WHERE {cond} ORDER BY id", params)]
        conn.execute(f"UPDATE tokens SET revoked = ?, revoked_by = ? WHERE {cond}", [now, by, *params])
        for first in range(0, len(revoked), 500):  # SQLite's bound on a statement's parameters
            chunk = revoked[first:first + 500]
            conn.execute(f"UPDATE tokens SET revoked = ?, revoked_by = ? WHERE revoked IS NULL AND parent IN "
                         f"({', '.join('?' * len(chunk))})", [now, by, *chunk])
        return revoked

    @staticmethod
    def op_health(conn: Conn, now: float) -> None:
        """Rewrite the health row: its commit is `GET /health`'s proof that writes reach the disk."""
        conn.execute("INSERT INTO health (id, checked) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET checked = "
                     "excluded.checked", (now,))

    @staticmethod
    def op_token_used(conn: Conn, token_id: str, now: float) -> None:
        conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token_id))

    # ---- reading ---------------------------------------------------------------------------

    def job(self, job_id: int) -> Job | None:
        row = self._reader.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def task_id(self, array_job_id: int, task: int) -> int | None:
        """The job id of task `task` of array `array_job_id` (indexed: jobs_array)."""
        row = self._reader.execute("SELECT id FROM jobs WHERE array_job_id = ? AND array_task_id = ?",
                                   (array_job_id, task)).fetchone()
        return row[0] if row else None

    def jobs(self, *, states: Iterable[str] | None = None, user: str | None = None,
             ids: Iterable[int] | None = None) -> list[Job]:
        return _jobs(self._reader, states, user, ids)

    def active_jobs(self) -> list[Job]:
        """The pending and running jobs melond holds in memory, read at its start. Equal JSON
        values and texts (an array's tasks' environment, options, script, user, folders) become
        one shared object each, as the submission made them, so that a restart with 100,000
        queued tasks takes about the memory of the melond before it."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE state IN ({', '.join('?' * len(ACTIVE))}) ORDER BY id"
        shared: dict[Any, Any] = {}
        if self.dialect is dialect.SQLITE:
            cursor = self._reader.cursor()
            cursor.row_factory = None  # plain tuples: a Row read as a dict finds each of its 67 names by a search
        else:
            cursor = self._reader
        return [Job.from_row(dict(zip(COLUMNS, r)), shared)
                for r in cursor.execute(sql, [s.value for s in ACTIVE])]

    def states(self, ids: Iterable[int]) -> dict[int, State]:
        """The states of these jobs (those that exist), for dependencies."""
        ids = list(ids)
        rows = self._reader.execute(f"SELECT id, state FROM jobs WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return {r[0]: State(r[1]) for r in rows}

    def events(self, job_id: int) -> list[dict]:
        rows = self._reader.execute("SELECT time, kind, actor, data FROM job_events WHERE job_id = ? ORDER BY seq",
                                    (job_id,))
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def extensions_by(self, user: str, since: float) -> list[dict]:
        """A user's own extensions of their jobs since `since` (time and the event's data), oldest
        first: what their extension budget has spent in its window."""
        rows = self._reader.execute("SELECT time, data FROM job_events WHERE kind = 'extended' AND actor = ? "
                                    "AND time >= ? ORDER BY time", (user, since))
        return [{"time": r["time"], **json.loads(r["data"])} for r in rows]

    def last_event_seq(self) -> int:
        return self._reader.execute("SELECT COALESCE(MAX(seq), 0) FROM job_events").fetchone()[0]

    def events_after(self, seq: int, limit: int) -> list[dict]:
        """The job event log after `seq`: which job, what happened, when, and whose job it is (so
        each reader is sent only what it may learn), never an event's data."""
        rows = self._reader.execute("SELECT e.seq, e.job_id, e.kind, e.time, j.user FROM job_events e "
                                    "JOIN jobs j ON j.id = e.job_id WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
                                    (seq, limit))
        return [dict(r) for r in rows]

    def extension_requests(self, *, user: str | None = None, job_id: int | None = None,
                           request_id: int | None = None) -> list[dict]:
        """Extension requests, newest first: a user's, a job's, or one."""
        where, params = [], []
        for column, value in (("user", user), ("job_id", job_id), ("id", request_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM extension_requests" + (" WHERE " + " AND ".join(where) if where else "")
        return [dict(r) for r in self._reader.execute(sql + " ORDER BY id DESC", params)]

    @staticmethod
    def op_note(conn: Conn, job_id: int, kind: str, actor: str, data: dict, now: float) -> None:
        """An event that changes nothing of the job (a notice sent), in any state."""
        _event(conn, job_id, now, kind, actor, data)

    @staticmethod
    def op_file_request(conn: Conn, row: dict, actor: str, data: dict) -> int:
        """A new pending request, and its event in the job's history."""
        request_id = conn.execute(f"INSERT INTO extension_requests ({', '.join(row)}) VALUES "
                                  f"({', '.join('?' * len(row))}) RETURNING id", list(row.values())).fetchone()[0]
        _event(conn, row["job_id"], row["created"], "extension_requested", actor, {**data, "request": request_id})
        return request_id

    @staticmethod
    def op_decide_request(conn: Conn, request_id: int, state: str, by: str, verdict: str | None,
                          now: float) -> bool:
        """Settle a pending request (approved, denied, withdrawn, expired), once."""
        row = conn.execute("SELECT job_id FROM extension_requests WHERE id = ? AND state = 'pending'",
                           (request_id,)).fetchone()
        if row is None:
            return False
        conn.execute("UPDATE extension_requests SET state = ?, decided = ?, decided_by = ?, verdict = ? WHERE id = ?",
                     (state, now, by, verdict, request_id))
        _event(conn, row[0], now, f"extension_request_{state}", by, {"request": request_id, "verdict": verdict})
        return True

    def nodes(self) -> list[dict]:
        return [dict(r) for r in self._reader.execute("SELECT * FROM nodes ORDER BY name")]

    def token(self, token_id: str) -> dict | None:
        row = self._reader.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return dict(row) if row else None

    def tokens(self, user: str | None = None) -> list[dict]:
        """Tokens not revoked, the user's or everyone's, oldest first; never with their hash."""
        sql = "SELECT id, user, uid, created, expires, last_used, parent FROM tokens WHERE revoked IS NULL"
        params = []
        if user is not None:
            sql += " AND user = ?"
            params.append(user)
        return [dict(r) for r in self._reader.execute(sql + " ORDER BY created, id", params)]

    def steps(self, job_ids: Iterable[int], running_only: bool = False) -> list[Step]:
        """The steps of these jobs' current runs, by job and step."""
        return _steps(self._reader, job_ids, running_only)

    def running_steps(self) -> list[Step]:
        """Every step running now (squeue -s)."""
        sql = ("SELECT s.* FROM steps s JOIN jobs j ON j.id = s.job_id AND j.restarts = s.run "
               "WHERE s.state = 'RUNNING' AND j.state = 'RUNNING' ORDER BY s.job_id, s.step_id")
        return [Step.from_row(r) for r in self._reader.execute(sql)]

    def count_events(self, kind: str) -> dict[int, int]:
        rows = self._reader.execute("SELECT job_id, COUNT(*) FROM job_events WHERE kind = ? GROUP BY job_id", (kind,))
        return {r[0]: r[1] for r in rows}


# What `macct` may show of a job: never its script or environment.
ACCOUNTING_COLUMNS = ("id", "array_job_id", "array_task_id", "name", "user", "uid", "partition", "state", "reason",
                      "exit_code", "exit_signal", "submit_time", "start_time", "end_time", "time_limit", "node",
                      "cpus", "memory", "cpu_time", "max_rss", "chdir", "detail", "restarts", "comment",
                      "account", "array_throttle", "parts", "gres_total", "gpu_util", "gpu_mem_peak")
READABLE_COLUMNS = (*ACCOUNTING_COLUMNS, "slurm_options")  # melond's own reads may also want these


def accounting_query(start: float, end: float, states: Iterable[str] | None, users: Iterable[str] | None,
                     ids: Iterable[int] | None, columns: Iterable[str]) -> tuple[str, list]:
    """The accounting window's SQL: two ranges of the jobs_end index (ended since `start`, and not
    ended at all) rather than one OR, which SQLite reads far slower; a day among a million
    stored jobs then reads that day's entries of the index and their rows."""
    columns = list(dict.fromkeys(["id", *columns]))
    if not set(columns) <= set(READABLE_COLUMNS):
        raise ValueError(f"not accounting columns: {sorted(set(columns) - set(READABLE_COLUMNS))}")
    where, params = ["submit_time <= ?"], [end]
    for column, values in (("state", states), ("user", users)):
        if values is not None:
            values = list(values)
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
    if ids is not None:
        ids = list(ids)
        marks = ", ".join("?" * len(ids))
        where.append(f"(id IN ({marks}) OR array_job_id IN ({marks}))")
        params += ids + ids
    select, rest = f"SELECT {', '.join(columns)} FROM jobs WHERE ", " AND ".join(where)
    return f"{select}end_time >= ? AND {rest} UNION ALL {select}end_time IS NULL AND {rest}", [start, *params, *params]


class _SlowView:
    """What `Store.read` hands its function: the same reads, on the slow reads' connection."""

    def __init__(self, store: Store) -> None:
        self._conn = store._slow_reader
        self._dialect = store.dialect

    def jobs(self, *, states: Iterable[str] | None = None, user: str | None = None,
             ids: Iterable[int] | None = None, ended_since: float | None = None) -> list[Job]:
        return _jobs(self._conn, states, user, ids, ended_since)

    def page(self, req: PageRequest) -> tuple[list[Job], bool, int]:
        """One page of the job list (melond.state.pages): its jobs, whether more follow, and how
        many jobs match in all."""
        where, params = pages.filters(req)
        matching = self._conn.execute("SELECT count(*) FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else ""),
                                      params).fetchone()[0]
        stored = self._conn.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0]
        walk = self._dialect.index_hints and pages.should_walk(req, matching, stored)
        rows = [Job.from_row(r) for r in pages.read(self._conn, req, walk)]
        return rows[:req.limit], len(rows) > req.limit, matching

    def accounting(self, start: float, end: float, *, states: Iterable[str] | None = None,
                   users: Iterable[str] | None = None, ids: Iterable[int] | None = None,
                   columns: Iterable[str] = ACCOUNTING_COLUMNS) -> list[dict]:
        """`macct`: the jobs that were pending or running at some time in [start, end] (sacct's
        window), with the columns asked for, in id order."""
        cursor = self._conn.execute(*accounting_query(start, end, states, users, ids, columns))
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]
        rows.sort(key=lambda r: r["id"])  # here: an ORDER BY makes SQLite walk the whole table in id order
        return rows

    def steps(self, job_ids: Iterable[int]) -> list[Step]:
        return _steps(self._conn, job_ids, False)

    def events_this_run(self, ids: Iterable[int], kinds: Iterable[str]) -> list[tuple[int, str, float, dict]]:
        """These jobs' events of these kinds recorded during their current run, oldest first:
        (job id, kind, time, data). One query for a whole node's jobs at its reconnect. An event
        recorded without its run (before events named it) counts for every run."""
        ids, kinds = list(ids), list(kinds)
        out: list[tuple[int, str, float, dict]] = []
        for i in range(0, len(ids), 900):  # SQLite's bound on parameters
            chunk = ids[i:i + 900]
            rows = self._conn.execute(
                f"SELECT e.job_id, e.kind, e.time, e.data FROM job_events e JOIN jobs j ON j.id = e.job_id "
                f"WHERE e.kind IN ({', '.join('?' * len(kinds))}) "
                f"AND coalesce({self._dialect.json_field('e.data', 'run')}, j.restarts) = j.restarts "
                f"AND e.job_id IN ({', '.join('?' * len(chunk))}) ORDER BY e.seq", [*kinds, *chunk])
            out.extend((r[0], r[1], r[2], json.loads(r[3])) for r in rows)
        return sorted(out, key=lambda e: e[2])


def _steps(conn: Conn, job_ids: Iterable[int], running_only: bool) -> list[Step]:
    ids = list(job_ids)
    out: list[Step] = []
    for i in range(0, len(ids), 900):  # SQLite's bound on parameters
        chunk = ids[i:i + 900]
        sql = (f"SELECT s.* FROM steps s JOIN jobs j ON j.id = s.job_id AND j.restarts = s.run "
               f"WHERE s.job_id IN ({', '.join('?' * len(chunk))})"
               + (" AND s.state = 'RUNNING'" if running_only else "") + " ORDER BY s.job_id, s.step_id")
        out += [Step.from_row(r) for r in conn.execute(sql, chunk)]
    return out


def _jobs(conn: Conn, states: Iterable[str] | None, user: str | None,
          ids: Iterable[int] | None, ended_since: float | None = None) -> list[Job]:
    """Jobs by state, user and id; with `ended_since`, only those not ended or ended since then
    (`squeue -t all`: what Slurm still holds within MinJobAge), read through jobs_end."""
    where, params = [], []
    if states is not None:
        states = list(states)
        where.append(f"state IN ({', '.join('?' * len(states))})")
        params += states
    if user is not None:
        where.append("user = ?")
        params.append(user)
    if ids is not None:
        ids = list(ids)
        where.append(f"(id IN ({', '.join('?' * len(ids))}) OR array_job_id IN ({', '.join('?' * len(ids))}))")
        params += ids + ids
    if ended_since is not None:
        rest = "".join(f" AND {w}" for w in where)
        sql = f"SELECT * FROM jobs WHERE end_time >= ?{rest} UNION ALL SELECT * FROM jobs WHERE end_time IS NULL{rest}"
        found = conn.execute(sql, [ended_since, *params, *params])
        return sorted((Job.from_row(r) for r in found), key=lambda j: j.id)
    sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
    return [Job.from_row(r) for r in conn.execute(sql, params)]


def backup(source: str, target: str) -> int:
    """An online, consistent copy of the database (SQLite's backup API; melond may keep writing)."""
    try:
        if not dbfile.check(source):
            raise MelonError(f"no database at {source}; pass the --state-dir melond uses")
    except OSError as exc:
        raise dbfile.explain(exc, source) from None
    if os.path.exists(target):
        raise MelonError(f"{target} exists; give a new file name (a backup never overwrites)")
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            return _copy_into_new(src, target)
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise dbfile.explain(exc, source) from None


def _copy_into_new(src: sqlite3.Connection, target: str) -> int:
    """SQLite's backup of `src` into `target`, a file made for it (never an existing one; 0600:
    scripts and environments inside); no half copy is left to be taken for a backup. Its pages."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            return dst.execute("PRAGMA page_count").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error:
        os.unlink(target)
        raise


def _insert_tasks(conn: Any, jobs: list[Job], actor: str, now: float) -> list[int]:
    """op_insert_jobs on PostgreSQL for many jobs (an array's tasks): the first alone (its id is
    the array's), the rest, and their events, each as one pipelined batch of statements. One
    statement a task, each waiting for its answer, is a round trip a task: 100,000 tasks would
    take most of a minute."""
    rows = [job.to_row() for job in jobs]
    cols = ", ".join(rows[0])
    insert = f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(rows[0]))}) RETURNING id"
    first = conn.execute(insert, list(rows[0].values())).fetchone()[0]
    if rows[0].get("array_task_id") is not None:
        conn.execute("UPDATE jobs SET array_job_id = ? WHERE id = ?", (first, first))
        for row in rows[1:]:
            if row.get("array_task_id") is not None:
                row["array_job_id"] = first
    ids = [first, *conn.insert_many(insert, [list(row.values()) for row in rows[1:]])]
    conn.executemany("INSERT INTO job_events (job_id, time, kind, actor, data) VALUES (?, ?, ?, ?, ?)",
                     [(jid, now, "submitted", actor, "{}") for jid in ids])
    return ids


def _event(conn: Conn, job_id: int, now: float, kind: str, actor: str, data: dict) -> None:
    conn.execute("INSERT INTO job_events (job_id, time, kind, actor, data) VALUES (?, ?, ?, ?, ?)",
                 (job_id, now, kind, actor, json.dumps(data)))


def _settle(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value if isinstance(value, BaseException) else MelonError(str(value)))

