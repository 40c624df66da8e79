"""melond with its state in PostgreSQL (`[store] url`): the same jobs, the same answers, and
what it acknowledged still there after a restart of melond and of the database."""
from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for


@pytest.fixture
def pg_url(pg_server):
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


def test_jobs_run_and_are_kept_in_postgresql_across_restarts(melon_factory, pg_server, pg_url):
    m = melon_factory(inventory=f'[store]\nurl = "{pg_url}"\n')
    first = m.submit("--wrap", "echo one")
    array = m.submit("--array", "0-4", "--wrap", "echo task $SLURM_ARRAY_TASK_ID")
    m.wait_state(first, {"CD"})
    wait_for(lambda: not m.jobs(), timeout=60, what="the array to finish")
    assert (m.work / f"melon-{first}.out").read_text() == "one\n"
    m.stop()
    pg_server.stop()  # the database restarted while melond is down
    pg_server.start()
    m.start()
    done = json.loads(m.run("macct", "--json", "-S", "2000-01-01").stdout)
    assert sorted(j["id"] for j in done) == [first, *range(array, array + 5)]
    assert all(j["state"] == "COMPLETED" for j in done), done
    later = m.submit("--wrap", "true")
    assert later == array + 5  # ids go on from where they were
    m.wait_state(later, {"CD"})


def test_a_bad_store_url_is_one_line_naming_it(melon_factory, short_tmp):
    from tests.conftest import refusing_melond, refused_in_one_line
    inventory = short_tmp / "bad.toml"
    inventory.write_text('[store]\nurl = "mysql://x@y/z"\n')
    refused_in_one_line(refusing_melond("--state-dir", str(short_tmp / "s"), "--inventory", str(inventory)),
                        "store.url", "postgresql://")
    inventory.write_text('[store]\nurl = "postgresql://melon@/nope?host=/nonexistent"\n')
    refused_in_one_line(refusing_melond("--state-dir", str(short_tmp / "s"), "--inventory", str(inventory)),
                        "cannot reach the PostgreSQL database", "[store] url")


def test_backup_of_a_postgresql_state_points_at_pg_dump(short_tmp, pg_url):
    from tests.conftest import refusing_melond, refused_in_one_line
    inventory = short_tmp / "pg.toml"
    inventory.write_text(f'[store]\nurl = "{pg_url}"\n')
    refused_in_one_line(refusing_melond("--state-dir", str(short_tmp / "s"), "--inventory", str(inventory),
                                        "--backup", str(short_tmp / "copy.db")), "PostgreSQL", "pg_dump")
    assert not (short_tmp / "copy.db").exists()
