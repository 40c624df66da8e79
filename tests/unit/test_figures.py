"""melond's running figures (melond/figures.py), the Prometheus families made of them
(melond/api/metrics.py, read back by prometheus_client's own parser), and the summaries
`minfo --stats` and `sdiag` print (pure: a reply in, lines out)."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from melon_cli.slurm.sdiag import render as sdiag
from melon_cli.stats_format import render as summary
from melond import config
from melond.api.metrics import job_families, node_families, request_families
from melond.errors import MelonError
from melond.figures import JobCounts, RequestFigures, Timings
from melond.nodes.state import NodeState
from melond.spec.states import State
from melond.state.job import MIB, Job


def samples(families) -> dict[tuple, float]:
    """{(name, (label, value), ...): value} of families, through the exposition and the parser."""
    class Once:
        def collect(self):
            return families

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Once())
    parsed = text_string_to_metric_families(generate_latest(reg).decode())
    return {(s.name, *sorted(s.labels.items())): s.value for f in parsed for s in f.samples}


def job(state: State, partition: str = "a", node: str | None = None, reason: str | None = None, cpus: int = 1,
        user: str = "alice") -> Job:
    return Job(user=user, uid=1000, name="j", partition=partition, state=state, node=node, reason=reason, cpus=cpus,
               memory=512 * MIB)


def test_timings_fill_prometheus_buckets_cumulatively() -> None:
    t = Timings(bounds=(0.001, 0.01, 1.0))
    for seconds in (0.0005, 0.001, 0.005, 20.0):
        t.observe(seconds)
    buckets, total = t.cumulative()
    assert buckets == [(0.001, 2), (0.01, 3), (1.0, 3), (float("inf"), 4)]  # `le`: a bound counts as inside
    assert total == pytest.approx(20.0065)
    assert (t.count, t.last, t.longest) == (4, 20.0, 20.0)


def test_job_counts_total_by_event_and_end_state() -> None:
    counts = JobCounts()
    counts.add("submitted", "a", "alice", n=3)
    counts.add("ended", "a", "alice", "COMPLETED")
    counts.add("ended", "b", "bob", "TIMEOUT")
    counts.add("ended", "b", "bob", "FAILED")
    assert counts.total("submitted") == 3
    assert counts.total("ended") == 3
    assert counts.total("ended", frozenset({"FAILED", "TIMEOUT"})) == 2
    assert counts.by_user[("submitted", "alice")] == 3


def test_queue_series_count_states_and_reasons_with_zeros_for_known_partitions() -> None:
    jobs = [job(State.PENDING, reason="Resources"), job(State.PENDING, reason="Resources"), job(State.PENDING),
            job(State.RUNNING, node="n1")]
    got = samples(list(job_families(jobs, ["a", "b"])))
    assert got[("melon_jobs", ("partition", "a"), ("state", "PENDING"))] == 3
    assert got[("melon_jobs", ("partition", "a"), ("state", "RUNNING"))] == 1
    assert got[("melon_jobs", ("partition", "b"), ("state", "PENDING"))] == 0
    assert got[("melon_jobs_pending", ("partition", "a"), ("reason", "Resources"))] == 2
    assert got[("melon_jobs_pending", ("partition", "a"), ("reason", "None"))] == 1  # not planned yet


def test_node_series_allocate_per_node_and_partition_and_a_down_node_has_nothing_idle() -> None:
    up = NodeState(name="n1", partition="a", cpus=4, memory=4096, up=True)
    down = NodeState(name="n2", partition="a", cpus=2, memory=2048, up=False)
    drained = NodeState(name="n3", partition="b", cpus=8, memory=1024, up=True, drain="maintenance")
    jobs = [job(State.RUNNING, node="n1", cpus=3), job(State.PENDING)]
    got = samples(list(node_families([up, down, drained], jobs, ["a", "b", "c"])))

    def v(name, **labels):
        return got[(name, *sorted(labels.items()))]

    assert v("melon_node_cpus_allocated", node="n1", partition="a") == 3
    assert v("melon_node_cpus_idle", node="n1", partition="a") == 1
    assert v("melon_node_memory_allocated_bytes", node="n1", partition="a") == 512 * MIB
    assert v("melon_node_memory_idle_bytes", node="n1", partition="a") == (4096 - 512) * MIB
    assert v("melon_node_cpus_idle", node="n2", partition="a") == 0  # down: nothing to offer
    assert v("melon_node_cpus_idle", node="n3", partition="b") == 0  # drained: nothing to offer either
    assert v("melon_partition_cpus", partition="a") == 6
    assert v("melon_partition_cpus_allocated", partition="a") == 3
    assert v("melon_partition_cpus_idle", partition="a") == 1
    assert v("melon_partition_cpus", partition="c") == 0  # a partition with no node still has its series
    assert v("melon_node_state", node="n1", partition="a", state="mixed") == 1
    assert v("melon_node_state", node="n2", partition="a", state="down") == 1
    assert v("melon_node_state", node="n3", partition="b", state="drained") == 1
    assert v("melon_nodes", partition="a", state="down") == 1
    assert v("melon_nodes", partition="a", state="idle") == 0


def test_request_series_are_by_route_template_and_status() -> None:
    figures = RequestFigures()
    figures.observe("GET", "/api/v1/jobs/{job_id}", 200, 0.002)
    figures.observe("GET", "/api/v1/jobs/{job_id}", 404, 0.001)
    got = samples(list(request_families(figures)))
    route = ("route", "/api/v1/jobs/{job_id}")
    assert got[("melon_api_request_duration_seconds_count", ("method", "GET"), route)] == 2
    assert got[("melon_api_requests_total", ("code", "404"), ("method", "GET"), route)] == 1
    assert got[("melon_api_requests_in_flight",)] == 0


def test_the_inventory_reads_metrics_settings_and_refuses_a_typo(tmp_path) -> None:
    path = tmp_path / "inv.toml"
    assert config.load(None).metrics.public is False and config.load(None).metrics.per_user is False
    path.write_text("[metrics]\npublic = true\nper_user = true\n")
    inv = config.load(str(path))
    assert inv.metrics.public and inv.metrics.per_user
    path.write_text("[metrics]\npublik = true\n")
    with pytest.raises(MelonError, match="metrics.publik"):
        config.load(str(path))


STATS = {
    "time": 1_000_000_120.0, "since": 1_000_000_000.0, "threads": 5, "requests_in_flight": 1, "store_waiting": 0,
    "jobs_submitted": 12, "jobs_started": 10, "jobs_completed": 7, "jobs_cancelled": 1, "jobs_failed": 2,
    "jobs_requeued": 0, "jobs_extended": 3, "jobs_pending": 2, "jobs_running": 1,
    "scheduler": {"count": 40, "total": 0.02, "last": 0.0004, "max": 0.003}, "last_queue_length": 2,
    "store_commits": {"count": 30, "total": 0.06, "last": 0.001, "max": 0.01},
    "requests": [{"method": "GET", "route": "/api/v1/jobs", "count": 5, "total": 0.01},
                 {"method": "POST", "route": "/api/v1/jobs", "count": 12, "total": 0.036}],
}


def test_minfo_stats_gives_the_rates_since_the_start() -> None:
    text = "\n".join(summary(STATS))
    assert "(00:02:00)" in text and "threads 5" in text
    assert "Jobs: submitted 12, started 10, completed 7, cancelled 1, failed 2, requeued 0, extended 3" in text
    assert "submissions per minute 6.0" in text  # 12 in two minutes
    assert "Scheduler: passes 40 (20.0 per minute); last 0.40 ms, mean 0.50 ms, max 3.00 ms" in text
    assert "Requests: 17 (8.5 per minute), 1 in flight" in text
    rows = [line.split() for line in text.splitlines() if line.startswith(("GET", "POST"))]
    assert rows == [["POST", "/api/v1/jobs", "12", "3.00", "36.00"], ["GET", "/api/v1/jobs", "5", "2.00", "10.00"]]


def test_sdiag_prints_slurms_layout_for_what_melon_has() -> None:
    lines = sdiag(STATS)
    assert lines[0] == lines[3] == "*" * 55
    assert lines[1].startswith("sdiag output at ") and lines[1].endswith("(1000000120)")
    assert lines[2].startswith("Data since      ") and lines[2].endswith("(1000000000)")
    for expected in ("Server thread count:  5", "Jobs submitted: 12", "Jobs started:   10", "Jobs completed: 7",
                     "Jobs canceled:  1", "Jobs failed:    2", "Jobs pending:   2", "Jobs running:   1",
                     "\tLast cycle:   400", "\tMax cycle:    3000", "\tTotal cycles: 40", "\tMean cycle:   500",
                     "\tCycles per minute: 20", "\tLast queue length: 2"):
        assert expected in lines, expected
    rpcs = lines[lines.index("Remote Procedure Call statistics by message type") + 1:]
    assert rpcs == ["\tPOST /api/v1/jobs                       (    1) count:12     ave_time:3000   total_time:36000",
                    "\tGET /api/v1/jobs                        (    0) count:5      ave_time:2000   total_time:10000"]
    assert [r.split()[0:2] for r in sdiag(STATS, "time2")[-2:]] == [["POST", "/api/v1/jobs"], ["GET", "/api/v1/jobs"]]
    assert [r.split()[0] for r in sdiag(STATS, "id")[-2:]] == ["GET", "POST"]
    young = sdiag({**STATS, "time": STATS["since"] + 30})
    assert not [x for x in young if "Cycles per minute" in x]  # sdiag: only past the first minute
