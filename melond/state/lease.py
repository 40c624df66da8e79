"""The leader's lease in the database: one row naming the melond that leads, until when (the
database's clock, never a melond's), and the epoch, a fencing token one larger at each change
of leader.

A melond leads from a successful `claim` (the lease had run out, or was given back) until a
`renew` fails. Every group commit of the leader first runs `check` on its own transaction: the
row, share-locked, must still carry its epoch and an unexpired lease. So a claim (which updates
the row) waits for a leader's commit in flight, and a former leader's commit after a claim
finds a newer epoch and rolls back whole. Statements for PostgreSQL; SQLite's one melond never
claims (epoch 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from melond.errors import NotLeader

# The database's clock, as epoch seconds (EXTRACT gives a numeric: a float here, as the columns are).
NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class Leader:
    """The row as read, with the database's clock at the read."""

    epoch: int
    holder: str | None
    address: str | None
    since: float | None
    expires: float
    now: float

    @property
    def live(self) -> bool:
        """Whether someone leads now (a lease not run out)."""
        return self.holder is not None and self.expires > self.now


def read(conn: Any) -> Leader:
    row = conn.execute(f"SELECT epoch, holder, address, since, expires, {NOW} FROM leader WHERE id = 1").fetchone()
    return Leader(*row)


def claim(conn: Any, holder: str, address: str | None, lease: float) -> int | None:
    """Lead, if the lease has run out: the new epoch; None while another leads."""
    row = conn.execute(f"UPDATE leader SET epoch = epoch + 1, holder = ?, address = ?, since = {NOW}, "
                       f"expires = {NOW} + ? WHERE id = 1 AND expires <= {NOW} RETURNING epoch",
                       (holder, address, lease)).fetchone()
    return row[0] if row else None


def renew(conn: Any, holder: str, epoch: int, lease: float) -> bool:
    """Extend the lease from now; False if another melond has claimed it since."""
    return conn.execute(f"UPDATE leader SET expires = {NOW} + ? WHERE id = 1 AND epoch = ? AND holder = ?",
                        (lease, epoch, holder)).rowcount == 1


def give_back(conn: Any, holder: str, epoch: int) -> None:
    """End the lease now (a clean stop): a standby takes over at its next look, not a lease later."""
    conn.execute(f"UPDATE leader SET expires = {NOW} WHERE id = 1 AND epoch = ? AND holder = ?", (epoch, holder))


def check(conn: Any, epoch: int) -> None:
    """Inside a write transaction: raise NotLeader unless `epoch` still leads on a live lease;
    the row stays share-locked to the commit, so no claim passes between."""
    if conn.execute(f"SELECT 1 FROM leader WHERE id = 1 AND epoch = ? AND expires > {NOW} FOR SHARE",
                    (epoch,)).fetchone() is None:
        raise NotLeader(f"this melond (epoch {epoch}) no longer leads: its lease ran out or a newer melond claimed "
                        f"it; nothing was changed")
