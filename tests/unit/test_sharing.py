"""Accounts, QOS and their limits (melond.sched.sharing, melond.spec.tres), and the planner
holding a job back by a limit with Slurm's reason (pure: no melond)."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.sched.plan import NodeView, PendingView, Snapshot, plan
from melond.sched.sharing import JOBS, AccountRules, PolicyError, QosRules, Sharing, _tres_reason, explain
from melond.spec.timespec import SpecError
from melond.spec.tres import format_tres, over, parse_tres
from melond.state.job import Job


def test_tres_strings_read_as_slurm_writes_them() -> None:
    assert parse_tres("cpu=8,mem=64G,node=2,gres/gpu=4") == {"cpu": 8, "mem": 65536, "node": 2, "gres/gpu": 4}
    assert parse_tres("GRES/gpu:a100=1") == {"gres/gpu:a100": 1}
    assert format_tres({"gres/gpu": 4, "mem": 65536, "cpu": 8}) == "cpu=8,mem=64G,gres/gpu=4"


@pytest.mark.parametrize("text", ["cpu", "cpu=x", "gpu=1", "cpu=1,cpu=2", "mem=lots", "cpu=-1"])
def test_a_bad_tres_string_says_its_form(text: str) -> None:
    with pytest.raises(SpecError, match="TRES|memory size|twice"):
        parse_tres(text)


@given(st.dictionaries(st.sampled_from(["cpu", "node", "gres/gpu", "billing"]), st.integers(0, 10**6)),
       st.integers(0, 1 << 20))
def test_tres_round_trip(counts: dict[str, int], mem: int) -> None:
    counts = {**counts, "mem": mem}
    assert parse_tres(format_tres(counts)) == counts


def test_over_names_the_first_limit_passed() -> None:
    assert over({"cpu": 6}, {"cpu": 2}, {"cpu": 8}) is None
    assert over({"cpu": 7}, {"cpu": 2, "gres/gpu": 1}, {"gres/gpu": 4, "cpu": 8}) == "cpu"


@pytest.mark.parametrize("prefix, suffix, name, reason", [
    ("QOSGrp", "Limit", "cpu", "QOSGrpCpuLimit"), ("QOSGrp", "Limit", "mem", "QOSGrpMemLimit"),
    ("QOSGrp", "Limit", "gres/gpu", "QOSGrpGRES"), ("QOSGrp", "Limit", "billing", "QOSGrpBilling"),
    ("QOSMax", "PerUserLimit", "cpu", "QOSMaxCpuPerUserLimit"), ("QOSMax", "PerUserLimit", "mem", "QOSMaxMemoryPerUser"),
    ("QOSMax", "PerUserLimit", "node", "QOSMaxNodePerUserLimit"), ("QOSMax", "PerUserLimit", "gres/gpu", "QOSMaxGRESPerUser"),
    ("QOSMax", "PerJobLimit", "cpu", "QOSMaxCpuPerJobLimit"), ("QOSMax", "PerJobLimit", "mem", "QOSMaxMemoryPerJob"),
    ("QOSMax", "PerJobLimit", "gres/gpu", "QOSMaxGRESPerJob"), ("AssocGrp", "Limit", "node", "AssocGrpNodeLimit"),
    ("AssocGrp", "Limit", "gres/gpu", "AssocGrpGRES"), ("AssocMax", "PerJobLimit", "mem", "AssocMaxMemPerJob"),
    ("AssocMax", "PerJobLimit", "cpu", "AssocMaxCpuPerJobLimit"), ("AssocMax", "PerJobLimit", "billing",
                                                                   "AssocMaxBillingPerJob"),
])
def test_limit_reasons_are_slurms_strings(prefix: str, suffix: str, name: str, reason: str) -> None:
    """job_state_reason.c's names, as SLURM-SHARING-GPUS.md B4 tabulates them."""
    assert _tres_reason(prefix, suffix, name) == reason


SITE = Sharing(
    [AccountRules("physics", users=("alice", "bob"), qos=("normal", "long"), grp_tres={"gres/gpu": 3}),
     AccountRules("theory", parent="physics", users=("alice",), max_jobs=1),
     AccountRules("chem", users=("carol",), max_submit_jobs=2, max_tres_per_job={"cpu": 4}, max_wall=3600)],
    {"alice": "theory"},
    [QosRules("normal", max_jobs_per_user=2, max_tres_per_user={"gres/gpu": 2}),
     QosRules("long", priority=10, max_wall=7 * 86400, max_submit_jobs_per_user=3, max_tres_per_job={"cpu": 16}),
     QosRules("scavenger")])


def test_a_job_is_charged_to_an_account_of_its_users() -> None:
    assert SITE.account_for("alice", None) == "theory"  # her default
    assert SITE.account_for("bob", None) == "physics"  # his only one
    assert SITE.account_for("alice", "physics") == "physics"
    with pytest.raises(PolicyError, match="Invalid account.*'chem' \\(alice's accounts are physics, theory"):
        SITE.account_for("alice", "chem")
    with pytest.raises(PolicyError, match="dave belongs to no account"):
        SITE.account_for("dave", None)
    assert Sharing().account_for("dave", "anything") == "anything"  # no accounts: recorded as asked


def test_a_job_runs_under_a_qos_its_account_allows() -> None:
    assert SITE.qos_for("physics", None) == "normal" and SITE.qos_for("physics", "long") == "long"
    assert SITE.qos_for("chem", "scavenger") == "scavenger"  # no list: every QOS
    with pytest.raises(PolicyError, match="account physics may use normal, long, not scavenger"):
        SITE.qos_for("physics", "scavenger")
    with pytest.raises(PolicyError, match="Invalid qos specification: 'gold'"):
        SITE.qos_for("physics", "gold")


def _job(user: str = "carol", cpus: int = 1, limit: int = 600, gres: str | None = None) -> Job:
    return Job(id=1, user=user, uid=1000, name="j", partition="p", cpus=cpus, time_limit=limit, gres=gres)


def test_submission_limits_refuse_with_slurms_reason_and_say_why() -> None:
    SITE.check_submit(_job(), "normal", "chem", 0, 1)
    with pytest.raises(PolicyError, match="AssocMaxSubmitJobLimit: carol has 2 jobs queued in account chem, which "
                                          "allows 2 per user"):
        SITE.check_submit(_job(), "normal", "chem", 0, 2)
    with pytest.raises(PolicyError, match="QOSMaxSubmitJobPerUserLimit"):
        SITE.check_submit(_job("bob"), "long", "physics", 1, 0, adding=3)  # an array of 3 beside 1
    with pytest.raises(PolicyError, match="AssocMaxCpuPerJobLimit: the job asks for cpu=8; account chem allows cpu=4"):
        SITE.check_submit(_job(cpus=8), "normal", "chem", 0, 0)
    with pytest.raises(PolicyError, match="AssocMaxWallDurationPerJobLimit: the job asks for 2:00:00"):
        SITE.check_submit(_job(limit=7200), "normal", "chem", 0, 0)
    with pytest.raises(PolicyError, match="QOSMaxCpuPerJobLimit"):
        SITE.check_submit(_job("bob", cpus=32), "long", "physics", 0, 0)


def _snapshot(views: list[PendingView], sharing: Sharing, accounts: dict[str, str]) -> Snapshot:
    limits = {}
    pooled = []
    for v in views:
        pools = sharing.pools(v.user, accounts[v.user], "normal")
        limits.update({p.key: (p.caps, p.reasons) for p in pools})
        tres = {"cpu": v.cpus, "mem": v.memory, "node": 1, JOBS: 1, **{f"gres/{g.name}": g.count for g in v.gres}}
        pooled.append(replace(v, pools=tuple(p.key for p in pools), tres=tuple(tres.items())))
    return Snapshot((NodeView("n1", "p", 64, 1 << 20, devices=(("gpu", None),) * 8),), (), tuple(pooled), limits)


def _pending(jid: int, user: str, gpus: int = 0) -> PendingView:
    from melond.spec.gres import Gres
    return PendingView(jid, 0, float(jid), 1, 100, 600, "p", user=user,
                       gres=(Gres("gpu", None, gpus),) if gpus else ())


def test_the_planner_holds_a_users_jobs_at_their_limit_and_starts_others() -> None:
    """QOS normal: 2 running jobs per user. alice's first two start, her third waits with
    QOSMaxJobsPerUserLimit, and bob's start though behind hers; theory lets alice run 1 of its."""
    views = [_pending(1, "alice"), _pending(2, "alice"), _pending(3, "alice"), _pending(4, "bob"), _pending(5, "bob")]
    result = plan(_snapshot(views, SITE, {"alice": "physics", "bob": "physics"}), 0.0)
    assert [s.job_id for s in result.starts] == [1, 2, 4, 5]
    assert result.reasons == {3: "QOSMaxJobsPerUserLimit"}
    result = plan(_snapshot(views[:2], SITE, {"alice": "theory"}), 0.0)
    assert [s.job_id for s in result.starts] == [1] and result.reasons == {2: "AssocMaxJobsLimit"}


def test_gpus_are_capped_per_user_and_per_account_tree() -> None:
    """2 GPUs per user in QOS normal, 3 for account physics and its sub-accounts together."""
    views = [_pending(1, "alice", 2), _pending(2, "alice", 1), _pending(3, "bob", 1), _pending(4, "bob", 1)]
    result = plan(_snapshot(views, SITE, {"alice": "physics", "bob": "physics"}), 0.0)
    assert [s.job_id for s in result.starts] == [1, 3]
    assert result.reasons == {2: "QOSMaxGRESPerUser", 4: "AssocGrpGRES"}


def test_running_jobs_count_against_the_limit_until_they_end() -> None:
    views = [_pending(2, "alice")]
    snap = _snapshot(views, SITE, {"alice": "theory"})
    [key] = [k for k in snap.pending[0].pools if k.startswith("acct-user")]  # theory's MaxJobs
    held = Snapshot(snap.nodes, (), snap.pending, snap.limits, {key: {JOBS: 1}})
    assert plan(held, 0.0).reasons == {2: "AssocMaxJobsLimit"}
    assert [s.job_id for s in plan(snap, 0.0).starts] == [2]  # the running one ended


def test_a_held_job_is_explained_in_words() -> None:
    [pool] = [p for p in SITE.pools("alice", "physics", "normal") if p.key.startswith("qos-user")]
    assert explain(pool, "gres/gpu", 2) == ("alice runs gres/gpu=2 of the gres/gpu=2 QOS normal allows a user "
                                            "(MaxTRESPerUser gres/gpu); the job starts when that use drops")
    assert explain(pool, JOBS, 2).startswith("alice runs 2 jobs of the 2 jobs QOS normal allows a user (MaxJobsPerUser)")


@pytest.mark.parametrize("text, words", [
    ('[accounts.a]\nparent = "b"\n', "accounts.a.parent: no account 'b'"),
    ('[accounts.a]\nqos = ["gold"]\n', "accounts.a: no QOS 'gold'"),
    ('[accounts.a]\nparent = "b"\n[accounts.b]\nparent = "a"\n', "go round in a circle"),
    ('[users.x]\ndefault_account = "a"\n[accounts.a]\n', "is no account of x's"),
    ('[qos.normal]\nmax_tres_per_user = "gpus=2"\n', "not a TRES limit"),
    ('[accounts.root]\n', "root is the tree's top"),
    ('[partitions.p]\nmin_nodes = 3\nmax_nodes = 2\n', "partitions.p: Value error, min_nodes 3 is above max_nodes 2"),
])
def test_an_inventory_whose_accounts_name_what_is_not_there_is_refused(tmp_path, text: str, words: str) -> None:
    from melond.config import load
    from melond.errors import MelonError
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    with pytest.raises(MelonError, match=words.replace("(", r"\(")):
        load(str(path))


def test_fair_tree_ranks_the_users_of_slurms_worked_example() -> None:
    """fair_tree.html's example (SLURM-SHARING-GPUS.md B3): A (40 shares: u1, u2), B (60: u3, u4
    with 3 shares); usage u1=100, u2=0, u3=300, u4=100. A's LevelFS 2.0 beats B's 0.75, so all of
    A's users rank above B's: u2 1.0, u1 0.75, u4 0.5, u3 0.25."""
    from melond.sched.priority import Assoc, fair_tree
    root = Assoc("root", children=[
        Assoc("A", 40, children=[Assoc("u1", 1, 100, user=True), Assoc("u2", 1, 0, user=True)]),
        Assoc("B", 60, children=[Assoc("u3", 1, 300, user=True), Assoc("u4", 3, 100, user=True)])])
    assert fair_tree(root) == {"u2": 1.0, "u1": 0.75, "u4": 0.5, "u3": 0.25}


def test_tied_users_share_a_rank_and_no_usage_ranks_first() -> None:
    from melond.sched.priority import tree, fair_tree
    ranks = fair_tree(tree(["a", "b", "c"], {(None, "a"): 10.0, (None, "b"): 10.0}))
    assert ranks == {"c": 1.0, "a": 2 / 3, "b": 2 / 3}


def test_the_priority_formula_gives_slurms_worked_example() -> None:
    """priority_multifactor.html's example: waited 3.5 of 7 days, fair-share 0.75, 1 of 10 nodes and
    4 of 80 CPUs, QOS priority 10 of 20, one partition: 500 + 7500 + 75 + 1000 + 1000 = 10075."""
    from melond.sched.priority import Weights, factors, priority
    w = Weights(age=1000, fairshare=10000, jobsize=1000, partition=1000, qos=2000)
    f = factors(submitted=0, eligible=None, now=3.5 * 86400, fairshare=0.75, cpus=4, nodes=1, cluster_cpus=80,
                cluster_nodes=10, qos_priority=10, max_qos_priority=20, weights=w)
    assert priority(f, w) == 10075
    assert priority(f, w, nice=100) == 9975 and priority({"age": 0.0}, w) == 1  # at least 1


def test_usage_decays_by_half_each_half_life() -> None:
    from melond.sched.priority import decayed
    day = 86400.0
    assert decayed(2.0, 0, day, day, half_life=0) == 2 * day  # no decay
    recent = decayed(1.0, 0, day, day, half_life=7 * day)
    assert decayed(1.0, 0, day, 8 * day, half_life=7 * day) == pytest.approx(recent / 2)
    assert decayed(1.0, 5, 5, 10) == 0.0


def test_billing_weights_read_as_slurms() -> None:
    from melond.spec.tres import billing, parse_billing
    weights = parse_billing("CPU=1.0,Mem=0.25G,GRES/gpu=2.0")
    assert billing({"cpu": 4, "mem": 8192, "gres/gpu": 1}, weights) == 4 + 2 + 2  # 8 GiB at 0.25 per GiB
    assert parse_billing(None) == {"cpu": 1.0}
    with pytest.raises(SpecError):
        parse_billing("CPU=lots")


def test_an_extension_budget_counts_the_window_and_says_when_it_frees_up() -> None:
    from melond.sched.sharing import Budget, check_budget, extension_hours, spent
    budget = Budget(count=3, tres_hours={"cpu": 10}, window=7200.0)
    past = [{"time": 10.0, "qos": "normal", "tres_hours": {"cpu": 4.0}},  # out of the window at t=7250
            {"time": 60.0, "qos": "normal", "tres_hours": {"cpu": 4.0}},
            {"time": 70.0, "qos": "long", "tres_hours": {"cpu": 9.0}}]  # another QOS' budget
    now = 7250.0
    assert spent("qos", "normal", budget, past, now) == (1, {"cpu": 4.0}, 7260.0)
    assert extension_hours({"cpu": 4, "node": 1, "mem": 0}, 1800) == {"cpu": 2.0, "node": 0.5}
    check_budget("qos", "normal", budget, past, {"cpu": 6.0}, "ann", now, str)  # 4 + 6: at the cap
    with pytest.raises(PolicyError, match=r"this extension costs cpu=6.5 TRES-hours; ann took cpu=4 of the cpu=10 "
                                          r"QOS normal allows a user per 2 hours; the oldest leaves the window at "
                                          r"7260.0"):
        check_budget("qos", "normal", budget, past, {"cpu": 6.5}, "ann", now, str)
    with pytest.raises(PolicyError, match=r"ann took 2 of the 2 extensions account lab allows a user per 1 day; "
                                          r"the oldest leaves the window at 86460.0"):
        check_budget("account", "lab", Budget(count=2, window=86400.0),
                     [{"time": 60.0, "account": "lab"}, {"time": 70.0, "account": "lab"}], {}, "ann", 100.0, str)


def test_preemption_takes_the_fewest_lowest_priority_latest_jobs_on_one_node() -> None:
    from melond.sched.preempt import Victim, choose
    victims = [Victim(1, "n1", 2, 100, 0, 5, 10.0), Victim(2, "n1", 2, 100, 0, 1, 20.0),
               Victim(3, "n1", 2, 100, 0, 1, 30.0), Victim(4, "n2", 4, 100, 0, 9, 10.0)]
    free = {"n1": (0, 1000, 0), "n2": (0, 1000, 0)}
    assert choose((4, 100, 0), free, victims) == ("n2", [4])  # one job there, two on n1
    assert choose((2, 100, 0), free, victims) == ("n1", [3])  # the lowest priority, started last
    assert choose((2, 100, 0), {"n1": (2, 1000, 0)}, victims) is None  # room already: nothing to preempt
    assert choose((8, 100, 0), free, victims) is None  # no node has that much even emptied
    assert choose((1, 100, 1), free, [*victims, Victim(5, "n2", 1, 10, 1, 0, 0.0)]) == ("n2", [5])  # a GPU


def test_the_fewest_victims_are_a_leading_run_less_those_not_needed() -> None:
    from melond.sched.preempt import fewest
    calls: list[frozenset[int]] = []

    def fits(gone: frozenset[int]) -> bool:  # room needs 3 and 5 gone, with 1 or 2 as well
        calls.append(gone)
        return {3, 5} <= gone and bool(gone & {1, 2})
    assert fewest([1, 2, 3, 4, 5, 6], fits) == [1, 3, 5]  # 2 and 4 came in the run, and are dropped
    assert len(calls) <= 3 + 3 + 4  # empty and all, the halving, then one try per earlier victim
    assert fewest([1, 2, 4], fits) is None  # all of them do not make room
    assert fewest([1, 2], lambda gone: True) is None  # room already: no one need go


def test_a_spanning_job_preempts_the_one_spanning_victim_the_planner_needs_gone() -> None:
    """Two 2-CPU nodes, each with a 1-CPU job of its own and one CPU of a job spanning both: a
    job wanting one CPU on each node needs only the spanning one gone, found by plans of it."""
    from melond.sched.plan import NodeView, PendingView, RunningView, Snapshot, plan
    from melond.sched.preempt import fewest
    from melond.spec.shape import Shape
    nodes = (NodeView("n1", "p", 2, 1000), NodeView("n2", "p", 2, 1000))
    running = (RunningView(1, "n1", 1, 100, None), RunningView(2, "n2", 1, 100, None),
               RunningView(3, "n1", 1, 100, None), RunningView(3, "n2", 1, 100, None))
    wide = PendingView(9, 100, 0.0, 2, 100, 60, "p", shape=Shape(nodes_min=2, nodes_max=2, ntasks=2,
                                                                   ntasks_given=True, ntasks_per_node=1))

    def fits(gone: frozenset[int]) -> bool:
        left = tuple(r for r in running if r.job_id not in gone)
        return bool(plan(Snapshot(nodes, left, (wide,)), 0.0, max_reservations=0).starts)
    assert fewest([1, 2, 3], fits) == [1, 2]  # Slurm's order: the lowest first, then the unneeded put back
    assert fewest([3, 1, 2], fits) == [3]
    assert fewest([1], fits) is None


def test_a_partitions_per_user_caps_hold_jobs_and_its_max_nodes_refuses() -> None:
    from melond.sched.sharing import PartitionRules
    site = Sharing(partitions=[PartitionRules("gpu", max_jobs_per_user=1, max_tres_per_user={"gres/gpu": 2},
                                              max_nodes=2)])
    [pool] = site.pools("ann", None, "normal", "gpu")
    assert pool.caps == {"gres/gpu": 2, JOBS: 1} and pool.reasons[JOBS] == "QOSMaxJobsPerUserLimit"
    assert explain(pool, "gres/gpu", 2).startswith("ann runs gres/gpu=2 of the gres/gpu=2 partition gpu allows a "
                                                   "user (MaxTRESPerUser gres/gpu)")
    assert site.pools("ann", None, "normal", "cpu") == ()  # another partition: no caps
    wide = Job(id=1, user="ann", uid=1000, name="j", partition="gpu", cpus=3, nodes_min=3, nodes_max=3, ntasks=3,
              cpus_per_task=1)
    with pytest.raises(PolicyError, match="PartitionNodeLimit: the job asks for 3 nodes; partition gpu allows 2"):
        site.check_submit(wide, "normal", None, 0, 0)


@pytest.mark.parametrize(("nodes", "ntasks", "words"), [
    ((1, 1), None, r"asks for 1 node; partition big runs jobs on 2 nodes or more \(MinNodes\): ask for -N 2$"),
    ((1, 4), 4, r"asks for 1 node; .* ask for -N 2$"),  # a range starting below: refused, as Slurm's EnforcePartLimits
    ((1, 1), 1, r"asks for 1 node; .* ask for -N 2 and at least 2 tasks \(-n 2\)$"),
])
def test_a_partitions_min_nodes_refuses_a_job_asking_for_fewer(nodes: tuple[int, int], ntasks: int | None,
                                                                words: str) -> None:
    from melond.sched.sharing import PartitionRules
    site = Sharing(partitions=[PartitionRules("big", min_nodes=2, max_nodes=4)])
    job = Job(id=1, user="ann", uid=1000, name="j", partition="big", cpus=1, nodes_min=nodes[0], nodes_max=nodes[1],
              ntasks=ntasks, cpus_per_task=1)
    with pytest.raises(PolicyError, match="^PartitionNodeLimit: the job " + words):
        site.check_submit(job, "normal", None, 0, 0)
    ok = Job(id=2, user="ann", uid=1000, name="j", partition="big", cpus=2, nodes_min=2, nodes_max=None, ntasks=None,
             cpus_per_task=1)
    site.check_submit(ok, "normal", None, 0, 0)


def test_a_job_waiting_its_turn_is_told_who_is_ahead_and_when_the_plan_starts_it() -> None:
    from melond.sched.waiting import Ahead, in_queue
    at = time.mktime((2026, 12, 7, 14, 5, 0, 0, 0, -1))
    said = in_queue("Priority", "main", "it asks for 2 CPUs", 3, Ahead(17, "alice", 12000), 9000, at, "n1")
    assert said == ("3 jobs of higher priority wait ahead of it in partition main (the first: job 17 of alice, "
                    "priority 12000; this one's 9000); by the scheduler's plan it starts at 2026-12-07T14:05:00 on n1")
    said = in_queue("Resources", "main", "it asks for 2 CPUs", 0, None, 9000, None, None)
    assert said == ("no node of partition main has room for it now (it asks for 2 CPUs); it starts as running jobs "
                    "end and those ahead of it start")
    assert in_queue("Priority", "p", "", 1, None, 1, None, None).startswith("1 job of higher priority waits ahead")
