"""melond/state/lease.py on a real PostgreSQL: one leader at a time on the database's clock,
and a former leader's writes fenced by the epoch each group commit checks."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from melond.errors import NotLeader
from melond.state import lease
from melond.state.postgres import Connection
from melond.state.store import Store
from tests.unit.test_store import NOW, row


@pytest.fixture
def url(pg_server):
    url = pg_server.new_database()
    asyncio.run(_opened(url))  # the schema, the leader's row
    yield url
    pg_server.drop_database(url)


async def _opened(url: str) -> None:
    await Store(url).close()


@pytest.fixture
def conns(url):
    made = [Connection(url), Connection(url)]
    yield made
    for c in made:
        c.close()


def test_one_leader_at_a_time_and_the_epoch_grows_at_each_change(conns):
    a, b = conns
    assert not lease.read(a).live
    assert lease.claim(a, "a", "https://a:8443", 1.0) == 1
    assert lease.claim(b, "b", None, 1.0) is None  # a's lease runs
    seen = lease.read(b)
    assert (seen.live, seen.holder, seen.address, seen.epoch) == (True, "a", "https://a:8443", 1)
    assert lease.renew(a, "a", 1, 1.0)
    time.sleep(1.2)  # a renews no more: its lease runs out on the database's clock
    assert not lease.read(b).live
    assert lease.claim(b, "b", None, 1.0) == 2
    assert not lease.renew(a, "a", 1, 1.0)  # a learns it no longer leads
    lease.give_back(b, "b", 2)  # a clean stop: the next claim need not wait
    assert lease.claim(a, "a", None, 5.0) == 3


def test_a_former_leaders_writes_roll_back_whole(url, conns):
    a, b = conns
    fenced: list[NotLeader] = []

    async def body():
        store = Store(url)
        try:
            store.epoch = lease.claim(a, "a", None, 1.0)
            store.on_fenced = fenced.append
            [first] = await store.write(Store.op_insert_jobs, [row(name="while-leading")], "alice", NOW)
            await asyncio.sleep(1.2)
            assert lease.claim(b, "b", None, 30.0) == 2
            with pytest.raises(NotLeader, match="no longer leads"):
                await asyncio.gather(store.write(Store.op_insert_jobs, [row(name="stale")], "alice", NOW),
                                     store.write(Store.op_set_drain, "n1", "stale"))
            return first, [j.name for j in store.jobs()], store.nodes()
        finally:
            await store.close()

    first, names, nodes = asyncio.run(body())
    assert names == ["while-leading"] and nodes == []
    assert len(fenced) >= 1


def test_a_claim_waits_for_the_leaders_commit_in_flight(url, conns):
    """The leader checked its epoch at its transaction's start; a claim made meanwhile (its lease
    ran out during a long commit) waits for that commit, so no write lands after a newer epoch."""
    a, b = conns
    inside, release = threading.Event(), threading.Event()
    claimed: list[tuple[int | None, float]] = []

    def slow(conn):
        Store.op_insert_jobs(conn, [row(name="long-commit")], "alice", NOW)
        inside.set()
        release.wait(10)

    def claim_now() -> None:
        claimed.append((lease.claim(b, "b", None, 30.0), time.monotonic()))

    async def body():
        store = Store(url)
        try:
            store.epoch = lease.claim(a, "a", None, 1.0)
            write = asyncio.ensure_future(store.write(slow))
            await asyncio.to_thread(inside.wait, 10)
            await asyncio.sleep(1.2)  # the lease has run out, the transaction holds the row
            claimer = threading.Thread(target=claim_now)
            claimer.start()
            await asyncio.sleep(0.5)
            assert claimed == []  # blocked behind the leader's transaction
            committed = time.monotonic()
            release.set()
            await write
            await asyncio.to_thread(claimer.join, 10)
            return committed, [j.name for j in store.jobs()]
        finally:
            await store.close()

    committed, names = asyncio.run(body())
    assert names == ["long-commit"]
    assert claimed[0][0] == 2 and claimed[0][1] >= committed


def test_a_standby_claims_just_after_a_dead_leaders_lease_runs_out(url, conns):
    """Leadership.stand_by looks again just past the expiry it last read, not a whole look later."""
    from melond.engine.leadership import Leadership
    a, _ = conns
    assert lease.claim(a, "a", None, 3.0) == 1  # a leads, then dies: it renews no more
    expires = lease.read(a)
    assert isinstance(expires.now, float) and isinstance(expires.expires, float)

    async def body():
        standby = Leadership(url, 3.0, "unix:/b.sock on b")
        try:
            epoch = await asyncio.wait_for(standby.stand_by(), 10)
            return epoch, lease.read(a)
        finally:
            standby.close()

    epoch, row = asyncio.run(body())
    assert epoch == 2 and row.address == "unix:/b.sock on b"
    assert 0 <= row.since - expires.expires < 0.3, row.since - expires.expires  # at once, on the database's clock


def test_the_lease_is_renewed_while_the_event_loop_is_busy_and_given_back_at_a_clean_stop(url, conns):
    """A new leader may hold its event loop for seconds (loading 100,000 jobs): its renewals go
    on, on their own thread; its clean stop ends the lease at once."""
    from melond.engine.leadership import Leadership
    a, _ = conns

    async def body():
        leader = Leadership(url, 1.0, None)
        try:
            epoch = await leader.stand_by()
            leader.start_renewing()
            time.sleep(2.5)  # the loop blocked for two and a half leases
            busy_valid = leader.valid()
            live = lease.read(a).live
            await leader.give_back()
            return epoch, busy_valid, live, lease.read(a)
        finally:
            leader.close()

    epoch, busy_valid, live, after = asyncio.run(body())
    assert (epoch, busy_valid, live) == (1, True, True)
    assert not after.live and after.epoch == 1  # given back: the next claim need not wait


def test_a_leader_paused_inside_a_commit_holds_no_takeover_past_its_hold_limit(url, conns):
    """A leader stopped in the middle of a group commit keeps its share lock on the lease's row;
    the server ends that session after `hold_limit`, so a claim goes through, and the paused
    commit is refused, not made."""
    a, b = conns
    inside, release = threading.Event(), threading.Event()

    def paused(conn):
        Store.op_insert_jobs(conn, [row(name="paused")], "alice", NOW)
        inside.set()
        release.wait(10)  # as a SIGSTOP between two statements: the session idles in its transaction

    async def body():
        store = Store(url, hold_limit=1.0)
        try:
            store.epoch = lease.claim(a, "a", None, 1.0)
            write = asyncio.ensure_future(store.write(paused))
            await asyncio.to_thread(inside.wait, 10)
            began = time.monotonic()
            epoch = None
            while epoch is None and time.monotonic() - began < 10:  # a standby's looks
                epoch = await asyncio.to_thread(lease.claim, b, "b", None, 30.0)
                await asyncio.sleep(0.1)
            took = time.monotonic() - began
            release.set()
            with pytest.raises(Exception):
                await write
            return epoch, took, [j.name for j in store.jobs()]
        finally:
            release.set()
            await store.close()

    epoch, took, names = asyncio.run(body())
    assert epoch == 2 and took < 3.0, took
    assert names == []
