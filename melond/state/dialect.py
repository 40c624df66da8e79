"""What the store says differently to SQLite and to PostgreSQL, beyond the mechanical
translation melond.state.postgres makes of every statement."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


class Connection(Protocol):
    """What the store's statements run on: an sqlite3 connection, or melond.state.postgres's."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    # A set of ids passed as one parameter (a JSON array's text), whatever its length: a
    # 100,000-task array's cancel is two statements, not 100,000 or a chunked IN list.
    id_set: str
    # An integer field of a JSON text column ({column}, {field}); NULL where it is absent.
    json_integer: str
    # Whether the job list may tell the planner which index to read (SQLite's INDEXED BY, used
    # because it plans with no statistics; PostgreSQL keeps statistics and plans well alone).
    index_hints: bool

    def json_field(self, column: str, field: str) -> str:
        return self.json_integer.format(column=column, field=field)


SQLITE = Dialect("sqlite", id_set="SELECT value FROM json_each(?)",
                 json_integer="json_extract({column}, '$.{field}')", index_hints=True)
POSTGRESQL = Dialect("postgresql",
                     id_set="SELECT CAST(e.value AS BIGINT) AS value FROM json_array_elements_text(CAST(? AS JSON)) "
                            "AS e(value)",
                     json_integer="CAST(CAST({column} AS JSON) ->> '{field}' AS BIGINT)", index_hints=False)


def of(conn: Any) -> Dialect:
    """The dialect of a store connection (an sqlite3 one, or melond.state.postgres's)."""
    return POSTGRESQL if getattr(conn, "dialect_name", None) == "postgresql" else SQLITE


def is_url(where: str) -> bool:
    """Whether the store's address is a PostgreSQL URL (else an SQLite file)."""
    return where.startswith(SCHEMES)


def shown(url: str) -> str:
    """A URL as messages and logs show it: never its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
