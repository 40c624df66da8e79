"""One page of the job list, sorted and filtered, the same way from SQLite and from memory.

The web UI pages through a history of a million jobs. OFFSET paging reads every row it skips,
so pages are keyset pages: a cursor holds the last row's sort value and id, and the next page
starts after it. Every sortable column has an index on (column, id) — SQLite's index on a
column ends in the rowid — so a page reads its own rows off the index and nothing more.
NULLs sort first ascending and last descending, as SQLite orders them; a NULL cannot be
compared in a row value, so the NULL rows are their own segment of the walk.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from melond.errors import BadRequest

# Sortable columns: each has an index (migrations 001 and 009), `id` is the primary key.
SORTABLE = ("id", "name", "user", "state", "node", "partition", "start_time", "end_time", "time_limit")
SORT_INDEX = {"name": "jobs_name", "user": "jobs_user", "state": "jobs_state", "node": "jobs_node",
              "partition": "jobs_partition", "start_time": "jobs_start_time", "end_time": "jobs_end_id",
              "time_limit": "jobs_time_limit"}
_TEXT = frozenset({"name", "user", "state", "node", "partition"})  # the others are numbers
NULLABLE = frozenset({"node", "start_time", "end_time"})  # the others are NOT NULL
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_TOP = "\U0010ffff"  # above every character: `name < prefix + _TOP` bounds a prefix range


@dataclass(frozen=True)
class PageRequest:
    """What a page holds: filters (an exact user, node and partition, a name prefix, states),
    the order, and where it starts (after the cursor's row)."""

    states: tuple[str, ...] | None = None
    user: str | None = None
    name: str | None = None
    node: str | None = None
    partition: str | None = None
    sort: str = "id"
    descending: bool = True
    after: tuple[object, int] | None = None
    limit: int = DEFAULT_LIMIT


def encode_cursor(value: object, job_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, job_id]).encode()).decode().rstrip("=")


def decode_cursor(text: str, column: str) -> tuple[object, int]:
    """A cursor from `next`, checked against the sort it is for: a text column's value is text, a
    time or limit a number (a forged one is a 400, not a comparison of text with numbers)."""
    wrong = BadRequest("`after` is not a cursor this server gave for this sort (take `next` from the previous page)")
    try:
        value, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise wrong from None
    kind = str if column in _TEXT else (int, float)
    if type(job_id) is not int or not (value is None or (isinstance(value, kind) and not isinstance(value, bool))):
        raise wrong
    return value, job_id


def parse_sort(text: str | None) -> tuple[str, bool]:
    """`sort=-end_time`: descending by end time; `sort=name`: ascending by name. Default: newest first."""
    if not text:
        return "id", True
    column, descending = (text[1:], True) if text.startswith("-") else (text, False)
    if column not in SORTABLE:
        raise BadRequest(f"cannot sort by {column!r}; sortable: {', '.join(SORTABLE)} (prefix - for descending)")
    return column, descending


def parse_limit(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text[:50]!r}")
    return int(text)


def filters(req: PageRequest) -> tuple[list[str], list]:
    where: list[str] = []
    params: list = []
    if req.states is not None:
        where.append(f"state IN ({', '.join('?' * len(req.states))})")
        params += req.states
    for column in ("user", "node", "partition"):
        if (value := getattr(req, column)) is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if req.name:
        where.append("name >= ? AND name < ?")
        params += [req.name, req.name + _TOP]
    return where, params


def segments(req: PageRequest, walk: bool = False) -> list[tuple[str, list]]:
    """The SQL to run in turn, each up to the page's limit, until the page is full. `walk`: read
    the sort column's index in order, testing the filters on the way (see `should_walk`)."""
    where, params = filters(req)
    c, order = req.sort, ("DESC" if req.descending else "ASC")
    source = f"jobs INDEXED BY {SORT_INDEX[c]}" if walk and c != "id" else "jobs NOT INDEXED" if walk else "jobs"

    def select(extra: list[str], extra_params: list, order_by: str) -> tuple[str, list]:
        clause = " AND ".join([*where, *extra]) or "TRUE"
        return (f"SELECT * FROM {source} WHERE {clause} ORDER BY {order_by} LIMIT ?",
                [*params, *extra_params, req.limit + 1])

    if c == "id":
        extra, extra_params = ([f"id {'<' if req.descending else '>'} ?"], [req.after[1]]) if req.after else ([], [])
        return [select(extra, extra_params, f"id {order}")]
    if c not in NULLABLE:  # a plain (column, id) walk
        if req.after is not None:
            return [select([f"({c}, id) {'<' if req.descending else '>'} (?, ?)"], list(req.after),
                           f"{c} {order}, id {order}")]
        return [select([], [], f"{c} {order}, id {order}")]
    after_null = req.after is not None and req.after[0] is None
    nulls = select([f"{c} IS NULL", *([f"id {'<' if req.descending else '>'} ?"] if after_null else [])],
                   [req.after[1]] if after_null else [], f"id {order}")
    if after_null:  # inside the NULL segment: the rest of it (descending, it is the last one)
        return [nulls] if req.descending else [nulls, select([f"{c} IS NOT NULL"], [], f"{c} ASC, id ASC")]
    if req.after is not None:
        values = select([f"({c}, id) {'<' if req.descending else '>'} (?, ?)"], list(req.after), f"{c} {order}, id {order}")
    else:
        values = select([f"{c} IS NOT NULL"], [], f"{c} {order}, id {order}")
    if req.descending:
        return [values, nulls]
    return [values] if req.after is not None else [nulls, values]


def _key(column: str, value: object, job_id: int) -> tuple:
    """Where a row falls in the order `segments` reads: NULLs first, then by value, then by id."""
    blank = "" if column in _TEXT else 0
    return value is not None, blank if value is None else value, job_id


def select(jobs: Iterable, req: PageRequest) -> list:
    """The jobs in memory (the pending and running ones) that pass the filters, in the page's
    order: the same filters and order as the SQL, so the queue reads the same from either."""
    def wanted(job) -> bool:
        return ((req.states is None or job.state in req.states)
                and all(getattr(req, f) is None or getattr(job, f) == getattr(req, f) for f in ("user", "node", "partition"))
                and (not req.name or job.name.startswith(req.name)))

    return sorted(filter(wanted, jobs), key=lambda job: _key(req.sort, getattr(job, req.sort), job.id),
                  reverse=req.descending)


def window(items: list, req: PageRequest, job_of=lambda item: item) -> tuple[list, bool]:
    """The page of `items` (in `select`'s order) after the cursor, and whether more follow."""
    if req.after is not None:
        mark = _key(req.sort, *req.after)

        def past(item) -> bool:
            job = job_of(item)
            key = _key(req.sort, getattr(job, req.sort), job.id)
            return key < mark if req.descending else key > mark

        items = [i for i in items if past(i)]
    return items[:req.limit], len(items) > req.limit


def should_walk(req: PageRequest, matching: int, stored: int) -> bool:
    """Walk the sort's index, or let SQLite read the filter's index and sort what matches? A walk
    reads about limit * stored / matching rows to fill a page, a sort reads all `matching`: walk
    when the matches are many (a state among a million jobs), sort when they are few (one
    user's dozen). SQLite's planner, with no statistics, always takes the filter's index."""
    filtered = any(getattr(req, f) is not None for f in ("states", "user", "name", "node", "partition"))
    return filtered and matching * matching > req.limit * stored


def read(conn, req: PageRequest, walk: bool = False) -> Iterator[tuple]:
    """Rows of the page (at most limit + 1, the extra one telling that more follow)."""
    left = req.limit + 1
    for sql, params in segments(req, walk):
        params[-1] = left
        for row in conn.execute(sql, params):
            yield row
            left -= 1
        if left <= 0:
            return
