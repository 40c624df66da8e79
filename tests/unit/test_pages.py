"""melond/state/pages.py: keyset pages of the job list, from real SQLite, real PostgreSQL and
from memory, read whole page by page, against a plain sort of every row; and each page's SQL
read off an index (SQLite's plan)."""

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melond.errors import BadRequest
from melond.state import pages
from melond.state.job import Job
from melond.state.pages import PageRequest
from melond.state.store import Store
from tests.unit.test_store import row, run

NAMES = ["align", "align-2", "bake", "", "zeta", "é-job"]
NODES = [None, "n1", "n2"]
STATES = ["PENDING", "RUNNING", "COMPLETED", "FAILED"]


def sample() -> list[Job]:
    """60 jobs with NULLs, ties and text sorting mixed."""
    jobs = []
    for i in range(60):
        state = STATES[i % 4]
        node = NODES[i % 3] if state != "PENDING" else None
        jobs.append(row(name=NAMES[i % 6], user=["alice", "bob"][i % 2], state=state, node=node,
                        partition=["debug", "long"][i // 30], time_limit=[60, 600, 0][i % 3],
                        start_time=None if state == "PENDING" else 1000.0 + i % 7,
                        end_time=2000.0 + i % 5 if state in ("COMPLETED", "FAILED") else None))
    return jobs


def fill(path: str, jobs: list[Job]) -> None:
    """The jobs, in a real store at `path` (a file or a URL), with their states, nodes and times."""
    async def insert():
        store = Store(path)
        try:
            return await store.write(Store.op_insert_jobs, jobs, "test", 0.0)
        finally:
            await store.close()
    ids = run(insert())
    conn = connect(path)
    for job_id, job in zip(ids, jobs):
        job.id = job_id
        conn.execute("UPDATE jobs SET state=?, node=?, start_time=?, end_time=? WHERE id=?",
                     (job.state.value, job.node, job.start_time, job.end_time, job_id))
    conn.close()


def connect(path: str):
    if path.startswith("postgresql://"):
        from melond.state.postgres import Connection
        return Connection(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The sample in a real SQLite store, and in memory."""
    path = str(tmp_path_factory.mktemp("pages") / "melon.db")
    jobs = sample()
    fill(path, jobs)
    conn = connect(path)
    conn.execute("SELECT count(*) FROM jobs")  # its log's files opened now, not by the first test
    yield conn, jobs
    conn.close()


@pytest.fixture(scope="module")
def stored_pg(pg_server):
    """The sample in a real PostgreSQL store, and in memory."""
    url = pg_server.new_database()
    jobs = sample()
    fill(url, jobs)
    conn = connect(url)
    yield conn, jobs
    conn.close()
    pg_server.drop_database(url)


def reference(jobs: list[Job], req: PageRequest) -> list[int]:
    """Every matching id in the page order, by a plain sort: NULLs first ascending, ties by id."""
    def keep(j: Job) -> bool:
        return ((req.states is None or j.state.value in req.states) and (req.user is None or j.user == req.user)
                and (req.node is None or j.node == req.node) and (req.name is None or j.name.startswith(req.name))
                and (req.partition is None or j.partition == req.partition))
    kept = [j for j in jobs if keep(j)]
    nulls = sorted((j for j in kept if getattr(j, req.sort) is None), key=lambda j: j.id)
    values = sorted((j for j in kept if getattr(j, req.sort) is not None), key=lambda j: (getattr(j, req.sort), j.id))
    order = nulls + values
    return [j.id for j in (order[::-1] if req.descending else order)]


def walk(req: PageRequest, one_page) -> list[int]:
    """Every id, page after page, each page starting after the last one's cursor."""
    seen: list[int] = []
    while True:
        page, more = one_page(req)
        assert len(page) <= req.limit
        seen += [j.id for j in page]
        if not more:
            return seen
        last = page[-1]
        req = PageRequest(**{**req.__dict__, "after": (getattr(last, req.sort), last.id)})


requests = st.builds(
    PageRequest,
    states=st.none() | st.sets(st.sampled_from(STATES), min_size=1).map(lambda s: tuple(sorted(s))),
    user=st.none() | st.sampled_from(["alice", "bob", "carol"]),
    name=st.none() | st.sampled_from(["al", "align", "b", "é", "zz"]),
    node=st.none() | st.sampled_from(["n1", "n2"]),
    partition=st.none() | st.sampled_from(["debug", "long"]),
    sort=st.sampled_from(pages.SORTABLE), descending=st.booleans(), limit=st.integers(1, 25))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests)
def test_pages_read_every_row_once_in_order_from_sqlite_and_from_memory(stored, req):
    conn, jobs = stored
    want = reference(jobs, req)

    def from_sql(walking):
        def one(r):
            rows = [Job.from_row(x) for x in pages.read(conn, r, walking)]
            return rows[:r.limit], len(rows) > r.limit
        return one

    assert walk(req, from_sql(False)) == want
    assert walk(req, from_sql(True)) == want  # walking the sort's index: the same rows
    assert walk(req, lambda r: pages.window(pages.select(jobs, r), r)) == want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests)
def test_pages_read_the_same_from_postgresql(stored_pg, req):
    """PostgreSQL orders NULLs and text its own way unless told: the pages must still be SQLite's
    and memory's (NULL segments apart, text columns in byte order)."""
    conn, jobs = stored_pg

    def one(r):
        rows = [Job.from_row(x) for x in pages.read(conn, r)]
        return rows[:r.limit], len(rows) > r.limit
    assert walk(req, one) == reference(jobs, req)


@pytest.mark.parametrize("sort", pages.SORTABLE)
@pytest.mark.parametrize("descending", [False, True])
def test_each_page_reads_off_an_index_not_a_sort_of_the_table(stored, sort, descending):
    conn, _ = stored
    for after in (None, ("x" if sort in ("name", "user", "state", "node", "partition") else 5, 10), (None, 10)):
        req = PageRequest(states=None, sort=sort, descending=descending, after=after if sort != "id" or after else None)
        if sort == "id" and after is not None and after[0] is None:
            continue
        for sql, params in pages.segments(req, walk=True) + pages.segments(req):
            plan = " / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "TEMP B-TREE" not in plan, (sql, plan)  # no sort: the rows come in the index's order
            assert sort == "id" or "INDEX jobs_" in plan, (sql, plan)
        filtered = PageRequest(states=("FAILED",), user="bob", sort=sort, descending=descending)
        for sql, params in pages.segments(filtered, walk=True):  # many matches: the sort's index, not a sort
            plan = " / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "TEMP B-TREE" not in plan, (sql, plan)


def test_a_page_walks_the_sort_index_only_when_the_filter_matches_many():
    req = PageRequest(states=("FAILED",), sort="node", limit=50)
    assert pages.should_walk(req, 91_000, 1_000_000)  # a state among a million: walk
    assert not pages.should_walk(req, 900, 1_000_000)  # a user's few: read them all and sort
    assert not pages.should_walk(PageRequest(sort="node"), 1_000_000, 1_000_000)  # no filter: the index anyway


def test_a_cursor_round_trips_and_a_forged_one_is_refused():
    assert pages.decode_cursor(pages.encode_cursor("align", 12), "name") == ("align", 12)
    assert pages.decode_cursor(pages.encode_cursor(None, 3), "node") == (None, 3)
    assert pages.decode_cursor(pages.encode_cursor(1.5e9, 3), "end_time") == (1.5e9, 3)
    forged = ["nonsense", pages.encode_cursor("x", 1)[:-3], "W1tdLCAxXQ",
              pages.encode_cursor("x", 1), pages.encode_cursor(True, 1), pages.encode_cursor(5, "1")]
    for bad in forged:  # text for a number column, a bool, an id that is not a number
        with pytest.raises(BadRequest, match="cursor"):
            pages.decode_cursor(bad, "time_limit")
    with pytest.raises(BadRequest, match="cursor"):
        pages.decode_cursor(pages.encode_cursor(5, 1), "name")
    with pytest.raises(BadRequest, match="sortable"):
        pages.parse_sort("script")
    with pytest.raises(BadRequest, match="1 to 500"):
        pages.parse_limit("0")
