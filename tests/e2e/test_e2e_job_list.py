"""`GET /jobs` paged, as the web UI reads it: filters, sorts and cursors over a real melond, the
queue from memory and the history from the store giving the same shape."""
from __future__ import annotations

import os

import pytest

from melon_cli.client import Client
from conftest import Melon, wait_for
from melond.errors import MelonError

FIELDS = "id,name,state,user,node,expected_start,expected_node"


def walk(api: Client, **query) -> tuple[list[dict], int]:
    """Every entry, page after page; and the total the first page gave."""
    seen, after, total = [], None, None
    while True:
        page = api.call("GET", "/jobs", query={"fields": FIELDS, **query, "after": after})
        assert len(page["jobs"]) <= int(query.get("limit", 50))
        total = page["total"] if total is None else total
        seen += page["jobs"]
        if page["next"] is None:
            return seen, total
        after = page["next"]


def test_pages_filter_sort_and_continue_from_a_cursor(melon: Melon) -> None:
    api = Client(melon.endpoint)
    done = [melon.submit("-J", f"post-{i}", "--wrap", "true") for i in range(3)]
    wait_for(lambda: all(melon.job(j)["state"] == "CD" for j in done), what="three quick jobs to complete")
    held = [melon.submit("-H", "-J", name, "--wrap", "true") for name in ("align-b", "align-a", "bake", "align-c")]

    queue, total = walk(api, limit="3")  # the default: pending and running, newest first
    assert [j["id"] for j in queue] == held[::-1] and total == 4
    by_name, _ = walk(api, limit="2", sort="name", name="align")
    assert [j["name"] for j in by_name] == ["align-a", "align-b", "align-c"]
    everything, total = walk(api, limit="2", all="1", sort="-name")  # into the history: from the store
    assert [j["name"] for j in everything] == ["post-2", "post-1", "post-0", "bake", "align-c", "align-b", "align-a"]
    assert total == 7
    ended, _ = walk(api, limit="1", state="CD", sort="id")
    assert [j["id"] for j in ended] == done
    assert walk(api, limit="5", all="1", user="nobody-here") == ([], 0)

    melon.submit("-H", "-J", "sweep", "--array", "0-4", "--wrap", "true")
    folded = api.call("GET", "/jobs", query={"limit": "10", "fold": "1", "name": "sweep", "fields": "id,state"})
    assert [(j["label"].split("_")[1], j["folded"]) for j in folded["jobs"]] == [("[0-4]", 5)]
    assert folded["total"] == 1


@pytest.mark.parametrize("query, problem", [
    ({"sort": "script"}, "cannot sort by 'script'"),
    ({"limit": "0"}, "1 to 500"),
    ({"limit": "501"}, "1 to 500"),
    ({"after": "bogus"}, "not a cursor"),
    ({"limit": "5", "fields": "id,script"}, "unknown job field"),
])
def test_bad_page_parameters_are_refused_with_the_reason(melon: Melon, query: dict, problem: str) -> None:
    with pytest.raises(MelonError, match=problem) as refused:
        Client(melon.endpoint).call("GET", "/jobs", query=query)
    assert refused.value.status == 400


def test_a_waiting_job_shows_where_and_when_the_plan_expects_it_to_start(melon: Melon) -> None:
    cpus = os.cpu_count()
    running = melon.submit("-c", str(cpus), "-t", "5", "--wrap", "sleep 300")
    melon.wait_state(running, {"R"})
    waiting = melon.submit("-c", str(cpus), "-t", "5", "--wrap", "true")
    api = Client(melon.endpoint)

    def planned() -> dict | None:
        page = api.call("GET", "/jobs", query={"limit": "10", "fields": FIELDS + ",deadline"})
        by_id = {j["id"]: j for j in page["jobs"]}
        return by_id if by_id.get(waiting, {}).get("expected_start") else None
    jobs = wait_for(planned, what="the waiting job's reservation")
    assert jobs[waiting]["expected_node"] == jobs[running]["node"]
    assert jobs[waiting]["expected_start"] == pytest.approx(jobs[running]["deadline"], abs=2)


def test_a_listing_longer_than_a_slice_is_whole_and_in_order(melon: Melon) -> None:
    """Past 2,000 jobs (engine.slices.SLICE) a listing is built and encoded in slices, other requests
    answered between them: it must still list every job once, in id order, folded or not."""
    api = Client(melon.endpoint)
    first = melon.submit("-H", "-J", "many", "--array", "0-2099", "--wrap", "true")
    alone = melon.submit("-H", "-J", "alone", "--wrap", "true")
    listed = api.call("GET", "/jobs", query={"fields": "id,array_task_id,state,name"})["jobs"]
    assert len(listed) == 2101
    assert [j["array_task_id"] for j in listed[:2100]] == list(range(2100))
    assert [j["id"] for j in listed] == sorted(j["id"] for j in listed) and listed[0]["id"] == first
    assert listed[-1] == {"id": alone, "array_task_id": None, "state": "PD", "name": "alone"}
    whole = api.call("GET", "/jobs")["jobs"]
    assert [j["id"] for j in whole] == [j["id"] for j in listed] and whole[-1]["name"] == "alone"
    folded = api.call("GET", "/jobs", query={"fold": "1", "fields": "id"})["jobs"]
    assert [(j["label"], j["folded"]) for j in folded] == [(f"{first}_[0-2099]", 2100), (str(alone), 1)]
