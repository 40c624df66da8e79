"""Named schema migrations, each applied in one transaction with the row that records it.

The schema version is the number of migrations applied (also kept in
PRAGMA user_version on SQLite). melond refuses a database from a newer melond rather
than guess at columns it does not know. The migrations are written once, in SQLite's
words; on PostgreSQL melond.state.postgres maps their types.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import sqlite_utils

from melond.errors import MelonError
from melond.state.dialect import shown

# Taken (for its transaction) by a melond migrating a PostgreSQL database, so that two melonds
# starting at once apply each migration once between them.
PG_MIGRATION_LOCK = 0x6D656C6F6E  # "melon"


class Schema(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


def _m001_initial(db: Schema) -> None:
    # AUTOINCREMENT: SQLite then never hands out an id again, even after rows are deleted.
    db.execute("""
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL, uid INTEGER NOT NULL, gid INTEGER,
            name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
            priority INTEGER NOT NULL DEFAULT 0, partition TEXT NOT NULL,
            cpus INTEGER NOT NULL, memory INTEGER NOT NULL, time_limit INTEGER NOT NULL,
            script TEXT NOT NULL, script_path TEXT, script_args TEXT, environment TEXT,
            chdir TEXT NOT NULL, output TEXT NOT NULL, error TEXT,
            nodelist TEXT, exclude TEXT, begin_time REAL, hold INTEGER NOT NULL DEFAULT 0,
            dependency TEXT, array_job_id INTEGER, array_task_id INTEGER, array_throttle INTEGER,
            requeue INTEGER NOT NULL DEFAULT 0, signal TEXT,
            submit_host TEXT, submit_dir TEXT, submit_time REAL NOT NULL,
            start_time REAL, end_time REAL, node TEXT,
            exit_code INTEGER, exit_signal INTEGER, detail TEXT, restarts INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("CREATE INDEX jobs_state ON jobs (state)")
    db.execute("CREATE INDEX jobs_user ON jobs (user)")
    db.execute("CREATE INDEX jobs_array ON jobs (array_job_id)")
    db.execute("""
        CREATE TABLE job_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            time REAL NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, data TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX job_events_job ON job_events (job_id)")
    db.execute("""
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT,
            cpus INTEGER, memory INTEGER, backend TEXT, info TEXT, updated REAL
        )""")


def _m002_node_drain(db: Schema) -> None:
    # An operator's drain (its reason) outlives melond restarts, as Slurm's does.
    db.execute("ALTER TABLE nodes ADD COLUMN drain TEXT")


def _m003_tokens(db: Schema) -> None:
    # Bearer tokens for the TCP API. Only the secret's hash is kept; a revoked token keeps its
    # row, so using it again is answered "revoked" rather than "unknown".
    db.execute("""
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY, user TEXT NOT NULL, uid INTEGER NOT NULL, hash TEXT NOT NULL,
            created REAL NOT NULL, expires REAL, last_used REAL, revoked REAL, revoked_by TEXT
        )""")
    db.execute("CREATE INDEX tokens_user ON tokens (user)")


def _m004_accounting(db: Schema) -> None:
    # What a job used, recorded with its end; and the index `macct -S` reads a window through:
    # jobs still running (end NULL) or ended after the window's start.
    db.execute("ALTER TABLE jobs ADD COLUMN cpu_time REAL")
    db.execute("ALTER TABLE jobs ADD COLUMN max_rss INTEGER")
    db.execute("CREATE INDEX jobs_end ON jobs (end_time, submit_time)")  # the window read off the index


def _m005_slurm_options(db: Schema) -> None:
    # What sbatch was told that Melon does not act on (--comment, --account, --qos, ...), kept as given,
    # and each array task's --array, from which a task learns its array's range.
    db.execute("ALTER TABLE jobs ADD COLUMN comment TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN account TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN slurm_options TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN array_spec TEXT")  # an array's --array, for SLURM_ARRAY_TASK_MIN/MAX


def _m006_extension_requests(db: Schema) -> None:
    # An owner's request for more time than policy grants, and an operator's verdict on it.
    db.execute("""
        CREATE TABLE extension_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL REFERENCES jobs(id),
            user TEXT NOT NULL, uid INTEGER NOT NULL, add_seconds INTEGER, to_limit INTEGER,
            reason TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,
            decided REAL, decided_by TEXT, verdict TEXT
        )""")
    db.execute("CREATE INDEX extension_requests_job ON extension_requests (job_id)")
    db.execute("CREATE INDEX extension_requests_user ON extension_requests (user, state)")


def _m007_elastic(db: Schema) -> None:
    # Elastic jobs: the limit melond may grow a job to, and by how much at a time.
    db.execute("ALTER TABLE jobs ADD COLUMN time_max INTEGER")
    db.execute("ALTER TABLE jobs ADD COLUMN extend_step INTEGER")


def _m008_notices(db: Schema) -> None:
    # sbatch --mail-type and --mail-user: which notices a job's owner gets, and whom they name.
    db.execute("ALTER TABLE jobs ADD COLUMN mail_type TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN mail_user TEXT")


def _m009_job_list_indexes(db: Schema) -> None:
    # The web UI's job list sorts a million jobs by these and pages by keyset (melond.state.pages):
    # an index on a column ends in the rowid, so each sort reads its page off the index.
    for column in ("name", "node", "partition", "start_time", "time_limit"):
        db.execute(f"CREATE INDEX jobs_{column} ON jobs ({column})")
    db.execute("CREATE INDEX jobs_end_id ON jobs (end_time)")


def _m010_umask(db: Schema) -> None:
    # The submitter's umask, which the job runs with (Slurm's SLURM_UMASK).
    db.execute("ALTER TABLE jobs ADD COLUMN umask INTEGER")


def _m011_session_tokens(db: Schema) -> None:
    # A browser's sign-in mints a token of its own, the child of the token pasted (`parent`):
    # signing out revokes it alone, and revoking the parent revokes it too.
    db.execute("ALTER TABLE tokens ADD COLUMN parent TEXT")
    db.execute("CREATE INDEX tokens_parent ON tokens (parent)")


def _m012_health(db: Schema) -> None:
    # One row that `GET /health` rewrites: a commit that reaches the disk is what proves the
    # database writable (a full disk, a lock held elsewhere), not an open file.
    db.execute("CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), checked REAL NOT NULL)")


def _m013_job_shape(db: Schema) -> None:
    # A job's shape as sbatch gives it (-N, -n, --ntasks-per-node, -c, --exclusive, -m) and the
    # CPUs it is pinned to. `cpus` stays the CPUs it holds; a job from before has NULL here and
    # is read as one task of `cpus` CPUs (its -n, if any, from slurm_options).
    for column in ("nodes_min INTEGER", "nodes_max INTEGER", "ntasks INTEGER", "ntasks_per_node INTEGER",
                   "cpus_per_task INTEGER", "exclusive INTEGER NOT NULL DEFAULT 0", "distribution TEXT",
                   "cpu_ids TEXT"):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")


def _m014_steps(db: Schema) -> None:
    # The steps srun starts inside a job (J.0, J.1, ...), per run of the job: sacct's step rows,
    # and the job's CPUs each running step holds (`cpus`; their ids where the job is pinned).
    db.execute("""
        CREATE TABLE steps (
            job_id INTEGER NOT NULL REFERENCES jobs(id), run INTEGER NOT NULL, step_id INTEGER NOT NULL,
            name TEXT NOT NULL, state TEXT NOT NULL, node TEXT, ntasks INTEGER NOT NULL, cpus INTEGER NOT NULL,
            start_time REAL NOT NULL, end_time REAL, exit_code INTEGER, exit_signal INTEGER, cpu_time REAL,
            max_rss INTEGER, cpu_ids TEXT,
            PRIMARY KEY (job_id, run, step_id)
        ) WITHOUT ROWID""")


def _m015_job_parts(db: Schema) -> None:
    # A job spanning nodes: its part on each (node, CPUs, tasks, MiB, pinned CPUs), JSON, the
    # first being where its batch script runs; NULL for a job on one node (`node`, `cpus`,
    # `cpu_ids` say all). `mem_per_cpu`: --mem-per-cpu in MiB, which sizes each node's part.
    db.execute("ALTER TABLE jobs ADD COLUMN parts TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN mem_per_cpu INTEGER")


def _m016_interactive(db: Schema) -> None:
    # salloc and srun --pty: a job whose every node runs a holder, its user's terminal attached
    # through melond (melond/engine/terminal.py).
    db.execute("ALTER TABLE jobs ADD COLUMN interactive INTEGER NOT NULL DEFAULT 0")


def _m017_gres(db: Schema) -> None:
    # Generic resources: what a job asks per node and per task (format_gres's text), and the
    # devices it holds on its node (positions in the node's list, cpuset form; a spanning job's
    # further nodes' are in `parts`).
    # `gres_total`: what it asks for over all its nodes, then what it holds once started (sacct's TRES).
    for column in ("gres", "gpus_per_task", "gres_ids", "gres_total"):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")


def _m018_step_gpus(db: Schema) -> None:
    # The job's GPUs a step asked for and holds (srun --gres, --gpus, --gpus-per-task inside a
    # job): positions in each node's device list, by node ("n1:0-1;n2:3").
    db.execute("ALTER TABLE steps ADD COLUMN gres_ids TEXT")


def _m019_gpu_use(db: Schema) -> None:
    # A job's GPU use, sampled from nvidia-smi while it ran (melond/engine/gpu_usage.py): mean
    # utilization (percent) and its GPUs' peak memory together (bytes).
    db.execute("ALTER TABLE jobs ADD COLUMN gpu_util REAL")
    db.execute("ALTER TABLE jobs ADD COLUMN gpu_mem_peak INTEGER")


def _m020_extension_budget(db: Schema) -> None:
    # A user's extensions in a rolling window (their budget, melond.sched.sharing): read off the
    # index by kind, actor and time, not by walking every job's events.
    db.execute("CREATE INDEX job_events_kind_actor ON job_events (kind, actor, time)")


def _m021_leader(db: Schema) -> None:
    # Leadership of two melonds over one PostgreSQL database (melond/state/lease.py): who leads,
    # since when, until when (the database's clock, epoch seconds), and the epoch, one more at each
    # change of leader, which every write and every request to a node carries. SQLite has the row
    # too (one melond, epoch 0: nothing is fenced).
    db.execute("CREATE TABLE leader (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL, holder TEXT, "
               "address TEXT, since REAL, expires REAL NOT NULL)")
    db.execute("INSERT INTO leader (id, epoch, expires) VALUES (1, 0, 0)")


MIGRATIONS: list[tuple[str, Callable[[Schema], None]]] = [
    ("001_initial", _m001_initial),
    ("002_node_drain", _m002_node_drain),
    ("003_tokens", _m003_tokens),
    ("004_accounting", _m004_accounting),
    ("005_slurm_options", _m005_slurm_options),
    ("006_extension_requests", _m006_extension_requests),
    ("007_elastic", _m007_elastic),
    ("008_notices", _m008_notices),
    ("009_job_list_indexes", _m009_job_list_indexes),
    ("010_umask", _m010_umask),
    ("011_session_tokens", _m011_session_tokens),
    ("012_health", _m012_health),
    ("013_job_shape", _m013_job_shape),
    ("014_steps", _m014_steps),
    ("015_job_parts", _m015_job_parts),
    ("016_interactive", _m016_interactive),
    ("017_gres", _m017_gres),
    ("018_step_gpus", _m018_step_gpus),
    ("019_gpu_use", _m019_gpu_use),
    ("020_extension_budget", _m020_extension_budget),
    ("021_leader", _m021_leader),
]


def behind(db: sqlite_utils.Database) -> int | None:
    """The schema version of a database an older melond wrote (one this melond will migrate),
    else None (new, current, or newer: nothing to keep a copy of)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    return version if 0 < version < len(MIGRATIONS) else None


def migrate(db: sqlite_utils.Database) -> int:
    """Apply what is missing; return the schema version."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise MelonError(
            f"the database {db.conn.execute('PRAGMA database_list').fetchone()[2]} has schema version {version}, "
            f"newer than this melond understands ({len(MIGRATIONS)}); run a newer melond, or restore a backup")
    for number, (name, apply) in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            apply(db)
            db.execute("INSERT INTO migrations (name, applied) VALUES (?, ?)", (name, time.time()))
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def migrate_postgres(conn: Any) -> int:
    """Apply what is missing to a PostgreSQL database (a melond.state.postgres.Connection), all
    in one transaction under an advisory lock; return the schema version."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (PG_MIGRATION_LOCK,))
        conn.ddl("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        version = conn.execute("SELECT count(*) FROM migrations").fetchone()[0]
        if version > len(MIGRATIONS):
            raise MelonError(f"the PostgreSQL database {shown(conn.url)} has schema version {version}, newer than this melond "
                             f"understands ({len(MIGRATIONS)}); run a newer melond, or restore a dump")
        schema = _PostgresSchema(conn)
        for name, apply in MIGRATIONS[version:]:
            apply(schema)
            conn.execute("INSERT INTO migrations (name, applied) VALUES (?, ?)", (name, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        if not conn.broken:
            conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


class _PostgresSchema:
    """What a migration writes to, on PostgreSQL: its DDL with PostgreSQL's types."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self._conn.ddl(sql, params)
