"""Accounts and QOS limits through a real melond, the real CLIs and two real Unix users (root and
nobody): who may charge what, what a submission is refused by, and the jobs a limit holds back
with Slurm's pending reason until the use drops."""
from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Melon, as_user, needs_root, slurm_names_env, wait_for

INVENTORY = """
[qos.normal]
max_jobs_per_user = 1
max_submit_jobs_per_user = 3

[qos.long]
max_wall = "2:00:00"

[accounts.lab]
users = ["root", "nobody"]
qos = ["normal", "long"]

[accounts.ops]
users = ["root"]
grp_tres = "cpu=1"

[users.root]
default_account = "lab"
"""


def _melond(short_tmp: Path, name: str, inventory: str) -> Iterator[Melon]:
    melon = Melon(short_tmp / name, inventory=inventory)
    melon.start()
    yield melon
    melon.cleanup()


@pytest.fixture
def shared(short_tmp: Path) -> Iterator[Melon]:
    yield from _melond(short_tmp, "m", INVENTORY)


def _slurm(melon: Melon, *argv: str, user: str | None = None) -> subprocess.CompletedProcess:
    """One of Slurm's commands, as `user` (default: root) types it."""
    return subprocess.run(list(argv), capture_output=True, text=True, cwd="/tmp", env=slurm_names_env(melon),
                          preexec_fn=as_user(user) if user else None, timeout=60)


def _sbatch(melon: Melon, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    """sbatch from /tmp, output to /dev/null: another user's slurm-N.out there is not theirs to open."""
    return _slurm(melon, "sbatch", "--parsable", "-o", "/dev/null", *args, user=user)


def _reason(melon: Melon, jid: int) -> str:
    return melon.job(jid)["reason"]


@needs_root
def test_a_users_limit_holds_their_jobs_back_and_lets_the_other_users_run(shared: Melon) -> None:
    first = int(_sbatch(shared, "-t", "5", "--wrap", "sleep 300").stdout)
    second = int(_sbatch(shared, "-t", "5", "--wrap", "true").stdout)
    shared.wait_state(first, {"R"})
    wait_for(lambda: _reason(shared, second) == "QOSMaxJobsPerUserLimit", timeout=20,
             what="root's second job to wait for its QOS limit")
    words = shared.run("mshow", str(second)).stdout
    assert ("QOSMaxJobsPerUserLimit: root runs 1 job of the 1 job QOS normal allows a user (MaxJobsPerUser); "
            "the job starts when that use drops") in words, words
    squeue = _slurm(shared, "squeue", "-h", "-j", str(second), "-o", "%i %a %q %r").stdout.split()
    assert squeue == [str(second), "lab", "normal", "QOSMaxJobsPerUserLimit"], squeue
    theirs = _sbatch(shared, "-t", "5", "--wrap", "true", user="nobody")
    assert theirs.returncode == 0, theirs.stderr
    shared.wait_state(int(theirs.stdout), {"CD"}, timeout=30)  # nobody's own limit: not held by root's
    third = _sbatch(shared, "-t", "5", "--wrap", "true")
    assert third.returncode == 0
    refused = _sbatch(shared, "-t", "5", "--wrap", "true")  # a 4th queued: MaxSubmitJobsPerUser = 3
    assert refused.returncode == 1 and "QOSMaxSubmitJobPerUserLimit" in refused.stderr, refused.stderr
    assert "Job violates accounting/QOS policy" in refused.stderr
    _slurm(shared, "scancel", str(first))
    shared.wait_state(second, {"CD"}, timeout=30)  # the use dropped: it ran
    shared.wait_state(int(third.stdout), {"CD"}, timeout=30)


@needs_root
def test_accounts_and_qos_are_checked_at_submission(shared: Melon) -> None:
    bad = _sbatch(shared, "-A", "ops", "--wrap", "true", user="nobody")
    assert bad.returncode == 1 and "Invalid account or account/partition combination specified" in bad.stderr
    assert "nobody's accounts are lab" in bad.stderr
    bad = _sbatch(shared, "--qos", "gold", "--wrap", "true")
    assert bad.returncode == 1 and "Invalid qos specification: 'gold'" in bad.stderr, bad.stderr
    bad = _sbatch(shared, "--qos", "long", "-t", "3:00:00", "--wrap", "true")
    assert bad.returncode == 1 and "QOSMaxWallDurationPerJobLimit" in bad.stderr, bad.stderr
    ok = _sbatch(shared, "-A", "ops", "--qos", "normal", "-c", "2", "-t", "5", "--wrap", "true")
    assert ok.returncode == 0, ok.stderr
    jid = int(ok.stdout)
    wait_for(lambda: _reason(shared, jid) == "AssocGrpCpuLimit", timeout=20, what="ops' GrpTRES cpu=1 to hold it")
    shown = _slurm(shared, "scontrol", "show", "job", str(jid)).stdout
    assert "Account=ops" in shown and "QOS=normal" in shown and "Reason=AssocGrpCpuLimit" in shown, shown
    _slurm(shared, "scancel", str(jid))



@pytest.fixture
def fair(short_tmp: Path) -> Iterator[Melon]:
    """No accounts at all: every user an equal share of the root, priorities recomputed each second."""
    yield from _melond(short_tmp, "f", "[priority]\ncalc_period = 1\n\n[nodes.n1]\ncpus = 2\n")


@needs_root
def test_a_flood_by_one_user_does_not_starve_another(fair: Melon) -> None:
    """root floods a 2-CPU node with 10 jobs; nobody's one job, submitted after them, starts at the
    next free slot, ahead of root's 8 waiting ones: fair-share by default."""
    flood = [int(_sbatch(fair, "-c", "1", "-t", "5", "--wrap", "sleep 2").stdout) for _ in range(10)]
    fair.wait_state(flood[1], {"R"})
    theirs = _sbatch(fair, "-c", "1", "-t", "5", "--wrap", "sleep 1", user="nobody")
    assert theirs.returncode == 0, theirs.stderr
    jid = int(theirs.stdout)
    wait_for(lambda: fair.job(jid)["priority"] > max(fair.job(j)["priority"] for j in flood[2:]), timeout=20,
             what="nobody's job to rank above root's flood (fair-share)")
    done = fair.wait_state(jid, {"CD"}, timeout=60)
    started_before = [j for j in flood if (fair.job(j).get("start_time") or 1e12) < done["start_time"]]
    assert len(started_before) <= 4, started_before  # the first two, and at most the next two's slots


@pytest.fixture
def factored(short_tmp: Path) -> Iterator[Melon]:
    yield from _melond(short_tmp, "u", "[priority]\ncalc_period = 1\n\n[qos.free]\nusage_factor = 0\n\n"
                                       "[nodes.n1]\ncpus = 2\n")


@needs_root
def test_a_qos_usage_factor_scales_the_usage_fair_share_counts(factored: Melon) -> None:
    """root's job in QOS free (UsageFactor 0) costs root no fair-share; nobody's, in normal, does."""
    mine = int(_sbatch(factored, "--qos", "free", "-t", "5", "--wrap", "sleep 2").stdout)
    theirs = int(_sbatch(factored, "-t", "5", "--wrap", "sleep 2", user="nobody").stdout)
    for jid in (mine, theirs):
        factored.wait_state(jid, {"CD"}, timeout=30)

    def usage() -> dict[str, float]:
        rows = [line.split("|") for line in _slurm(factored, "sshare", "-a", "-P", "-n").stdout.splitlines()]
        return {r[1]: float(r[4]) for r in rows if r[1]}
    wait_for(lambda: usage().get("nobody", 0) >= 2, timeout=20, what="nobody's usage counted")
    assert usage()["root"] == 0, usage()


def test_mshow_says_who_is_ahead_of_a_waiting_job_and_when_the_plan_starts_it(fair: Melon) -> None:
    running = int(_sbatch(fair, "-c", "2", "-t", "5", "--wrap", "sleep 300").stdout)
    fair.wait_state(running, {"R"})
    next_one = int(_sbatch(fair, "-c", "2", "-t", "5", "--wrap", "true").stdout)
    behind = int(_sbatch(fair, "-c", "2", "-t", "5", "--wrap", "true").stdout)
    wait_for(lambda: _reason(fair, behind) == "Priority", timeout=20, what="the third job to wait its turn")
    # Its expected start is its reservation's, which the backfill pass makes (within a second)
    wait_for(lambda: "by the scheduler's plan it starts at " in fair.run("mshow", str(next_one)).stdout,
             timeout=10, what="the backfill pass's reservation")
    words = fair.run("mshow", str(next_one)).stdout
    assert "Resources: no node of partition " in words and "(it asks for 2 CPUs" in words, words
    assert "by the scheduler's plan it starts at " in words and " on n1" in words, words
    words = fair.run("mshow", str(behind)).stdout
    assert "Priority: 1 job of higher priority waits ahead of it in partition " in words, words
    assert f"(the first: job {next_one} of root, priority " in words, words
    _slurm(fair, "scancel", str(running), str(next_one), str(behind))


@needs_root
def test_sprio_sshare_and_sacctmgr_show_what_the_scheduler_uses(shared: Melon) -> None:
    """The priorities' factors (sprio), the tree's usage and fair-share (sshare) and the inventory's
    accounts and QOS (sacctmgr), as Slurm's commands print them."""
    first = int(_sbatch(shared, "-t", "5", "--wrap", "sleep 300").stdout)
    waiting = int(_sbatch(shared, "-t", "5", "--nice=50", "--wrap", "true").stdout)
    shared.wait_state(first, {"R"})
    sprio = _slurm(shared, "sprio", "-l").stdout.splitlines()
    assert sprio[0].split() == ["JOBID", "PARTITION", "USER", "ACCOUNT", "PRIORITY", "SITE", "AGE", "ASSOC",
                                "FAIRSHARE", "JOBSIZE", "PARTITION", "QOSNAME", "QOS", "NICE", "TRES"], sprio
    row = next(line.split() for line in sprio[1:] if line.split()[0] == str(waiting))
    assert row[2:4] == ["root", "lab"] and row[-3:] == ["normal", "0", "50"]
    assert int(row[4]) == max(1, sum(int(x) for x in row[6:11] + row[12:13]) - 50)  # the weighted factors less nice
    weights = _slurm(shared, "sprio", "-w", "-h").stdout.split()
    assert weights[:1] == ["Weights"] and "10000" in weights  # fair-share's weight, shown by default
    picked = _slurm(shared, "sprio", "-o", "%.6i|%8u|%.10Y|%F|%n", "-S", "-Y").stdout.splitlines()
    assert picked[0] == " JOBID|USER    |  PRIORITY|FAIRSHARE|QOSNAME", picked
    assert f"|root    |{int(row[4]):>10}|{row[8]}|normal" in picked[1] and picked[1].strip().startswith(str(waiting))
    share = _slurm(shared, "sshare", "-a", "-P").stdout.splitlines()
    assert share[0] == "Account|User|RawShares|NormShares|RawUsage|EffectvUsage|FairShare"
    assert any(line.startswith("  lab|root|1|") for line in share), share  # a user one level below its account
    assert any(line.startswith("root|||1.000000|") for line in share), share
    long = [line.split("|") for line in _slurm(shared, "sshare", "-a", "-l", "-P").stdout.splitlines()]
    assert long[0][-2:] == ["GrpTRESMins", "TRESRunMins"], long
    mine = next(row for row in long if row[:2] == ["  lab", "root"])  # the running job's 1 CPU, ~5 minutes left
    assert mine[-2] == "" and re.fullmatch(r"cpu=[45],mem=\d+,energy=0,node=[45],billing=[45],fs/disk=0,vmem=0,pages=0",
                                           mine[-1]), mine
    assert next(row for row in long if row[:2] == ["  ops", "root"])[-1].startswith("cpu=0,mem=0,energy=0,node=0,")
    accounts = _slurm(shared, "sacctmgr", "-n", "-s", "list", "user", "root", "format=account%30").stdout.split()
    assert accounts == ["lab", "ops"]  # snakemake's question: root's accounts
    qos = _slurm(shared, "sacctmgr", "-P", "show", "qos", "format=name,maxjobspu,maxwall").stdout.splitlines()
    assert qos == ["Name|MaxJobsPU|MaxWall", "long||2:00:00", "normal|1|"], qos
    whole = _slurm(shared, "sacctmgr", "-P", "-n", "show", "qos", "name=normal").stdout.strip()
    assert whole.startswith("normal|0|00:00:00||CANCEL|1.000000|"), whole
    refused = _slurm(shared, "sacctmgr", "add", "account", "x")
    assert refused.returncode == 1 and "set in melond's inventory" in refused.stderr
    _slurm(shared, "scancel", str(first), str(waiting))


@needs_root
def test_mshare_says_where_a_user_stands_and_shows_the_tree(shared: Melon) -> None:
    """mshare: the caller's fair-share, rank and usage in words, one sentence per account of theirs,
    then the tree (their own rows; --all everyone's); -A keeps an account, --json gives the rows."""
    said = _slurm(shared, "mshare").stdout.splitlines()
    mine = [line for line in said if line.startswith("root: fair-share ")]
    assert len(mine) == 2 and "of 3 user associations" in mine[0], said  # root in lab and in ops; nobody in lab
    assert any("of account lab's" in line for line in mine) and any("of account ops's" in line for line in mine)
    table = said[said.index("") + 1:]
    assert table[0].split() == ["ACCOUNT", "USER", "SHARES", "NORM_SHARES", "USAGE", "OF_PARENT", "LEVEL_FS",
                                "FAIRSHARE"], table
    users = table[0].index("USER")  # the rows: the root, each account, root's own rows; not nobody's
    assert [(line[:users].strip(), line[users:].split()[0]) for line in table[1:]] == [
        ("root", "100%"), ("lab", "1"), ("lab", "root"), ("ops", "1"), ("ops", "root")], "\n".join(said)
    theirs = _slurm(shared, "mshare", "--all", user="nobody").stdout
    assert theirs.startswith("nobody: fair-share ") and " root " in theirs and " nobody " in theirs, theirs
    rows = json.loads(_slurm(shared, "mshare", "--json", "-A", "ops").stdout)
    assert [(r["account"], r["user"]) for r in rows] == [("ops", None), ("ops", "root")], rows


BUDGET = """
operators = ["root"]

[qos.normal]
max_extensions_per_user = 2
max_extension_tres_hours_per_user = "cpu=1"
extension_window = "1-0"
"""


@pytest.fixture
def budgeted(short_tmp: Path) -> Iterator[Melon]:
    yield from _melond(short_tmp, "b", BUDGET)


@needs_root
def test_an_extension_budget_is_spent_refused_and_then_asked_of_an_operator(budgeted: Melon) -> None:
    """QOS normal allows a user 2 extensions and 1 CPU-hour of them a day: nobody's third is refused,
    saying what was spent and when it frees up; a request goes to an operator, who may grant it."""
    m = budgeted
    jid = int(_sbatch(m, "-c", "1", "-t", "10", "--wrap", "sleep 300", user="nobody").stdout)
    m.wait_state(jid, {"R"})
    for add in ("+10:00", "+20:00"):
        assert m.run("mextend", "-j", str(jid), "-t", add, user="nobody").returncode == 0
    left = m.run("mextend", "--budget", user="nobody").stdout
    assert "QOS normal: 2 of 2 extensions, cpu=0.5 of 1 TRES-hours used in the last 1-00:00:00; the oldest " \
           "leaves the window at" in left, left
    refused = m.run("mextend", "-j", str(jid), "-t", "+5:00", user="nobody", check=False)
    assert refused.returncode == 1, refused.stdout
    assert "nobody took 2 of the 2 extensions QOS normal allows a user per 1 day" in refused.stderr, refused.stderr
    assert "--request" in refused.stderr
    assert m.job(jid)["time_limit_seconds"] == 40 * 60  # unchanged by the refusal
    filed = m.run("mextend", "-j", str(jid), "-t", "+5:00", "--request", "--reason", "converging", user="nobody")
    number = filed.stdout.split()[2]
    m.run("mextend", "--approve", number)  # root, an operator: not bound, and not counted
    assert m.job(jid)["time_limit_seconds"] == 45 * 60
    _slurm(m, "scancel", str(jid))


PREEMPT = """
[qos.scavenger]
preempt_mode = "requeue"
grace_time = 2

[qos.spare]
preempt_mode = "cancel"
grace_time = 4

[qos.urgent]
priority = 100
preempt = ["scavenger", "spare"]

[nodes.n1]
cpus = 2
"""


@pytest.fixture
def preempting(short_tmp: Path) -> Iterator[Melon]:
    yield from _melond(short_tmp, "p", PREEMPT)


@needs_root
def test_an_urgent_job_preempts_scavenger_jobs_which_are_warned_and_run_again(preempting: Melon,
                                                                             short_tmp: Path) -> None:
    """nobody's two scavenger jobs fill the node; root's urgent job needs it whole: both are warned
    (SIGTERM, which they trap), requeued 2 s later, and each runs again, once, after it."""
    m = preempting
    marks = short_tmp / "marks"
    marks.mkdir()
    marks.chmod(0o777)  # nobody's jobs write their marks here
    script = (f"trap 'echo warned >> {marks}/$SLURM_JOB_ID' TERM; echo run $SLURM_RESTART_COUNT >> "
              f"{marks}/$SLURM_JOB_ID; for i in $(seq 60); do sleep 0.5; done")
    scavengers = [int(_sbatch(m, "--qos", "scavenger", "-c", "1", "-t", "5", "--wrap", script, user="nobody").stdout)
                  for _ in range(2)]
    for jid in scavengers:
        m.wait_state(jid, {"R"})
    urgent = int(_sbatch(m, "--qos", "urgent", "-c", "2", "-t", "5", "--wrap", "sleep 1").stdout)
    done = m.wait_state(urgent, {"CD"}, timeout=60)
    for jid in scavengers:
        job = m.wait_state(jid, {"R", "CD"}, timeout=60)
        assert job["restarts"] == 1, job
        text = (marks / str(jid)).read_text().split("\n")
        assert text[:2] == ["run 0", "warned"] and "run 1" in text, text  # warned before, run again after
        history = [e["kind"] for e in m.job(jid)["events"]]
        assert "requeue_requested" in history, history
        assert (job.get("start_time") or 0) >= done["start_time"]
        _slurm(m, "scancel", str(jid))


@needs_root
def test_a_cancelled_victim_ends_preempted_even_across_a_restart_of_melond(preempting: Melon) -> None:
    """PreemptMode=CANCEL: nobody's job of QOS spare is warned and, 4 s later, killed for root's
    urgent one; melond is killed (-9) and restarted within that grace, and the victim still ends
    PREEMPTED, its history naming the preemptor, its error stream saying so as slurmstepd does."""
    m = preempting
    err = Path("/tmp") / f"melon-preempted-{m.root.name}-{id(m)}.err"
    victim = int(_slurm(m, "sbatch", "--parsable", "-o", "/dev/null", "-e", str(err), "--qos", "spare", "-c", "2",
                        "-t", "5", "--wrap", "trap '' TERM; for i in $(seq 600); do sleep 0.5; done",
                        user="nobody").stdout)
    m.wait_state(victim, {"R"})
    urgent = int(_sbatch(m, "--qos", "urgent", "-c", "2", "-t", "5", "--wrap", "true").stdout)
    wait_for(lambda: "preempt_requested" in [e["kind"] for e in m.job(victim)["events"]], timeout=30,
             what="the victim's preemption")
    m.stop(signal.SIGKILL)
    m.start()
    ended = m.wait_state(victim, {"PR", "CA"}, timeout=40)
    assert ended["state"] == "PR", ended
    m.wait_state(urgent, {"CD"}, timeout=40)
    asked = [e for e in m.job(victim)["events"] if e["kind"] == "preempt_requested"]
    assert asked and asked[0]["data"]["preempted_by"] == urgent, asked
    sacct = _slurm(m, "sacct", "-n", "-P", "-X", "-j", str(victim), "-o", "State").stdout.split()
    assert sacct == ["PREEMPTED"], sacct
    assert "DUE TO PREEMPTION" in err.read_text()
    err.unlink()


@pytest.fixture
def capped(short_tmp: Path) -> Iterator[Melon]:
    yield from _melond(short_tmp, "c", '[partitions.p]\ndefault = true\nmax_jobs_per_user = 1\n')


def test_a_partitions_per_user_cap_holds_a_users_second_job(capped: Melon) -> None:
    first = int(_sbatch(capped, "-t", "5", "--wrap", "sleep 300").stdout)
    second = int(_sbatch(capped, "-t", "5", "--wrap", "true").stdout)
    capped.wait_state(first, {"R"})
    wait_for(lambda: _reason(capped, second) == "QOSMaxJobsPerUserLimit", timeout=20, what="the partition's cap")
    assert "of the 1 job partition p allows a user (MaxJobsPerUser)" in capped.run("mshow", str(second)).stdout
    _slurm(capped, "scancel", str(first))
    capped.wait_state(second, {"CD"}, timeout=30)


@pytest.fixture
def narrow(short_tmp: Path) -> Iterator[Melon]:
    """Partition p: one 2-CPU node whose jobs hold 1 CPU of it at most; partition wide: two nodes, jobs on both."""
    nodes = "".join(f'[nodes.{name}]\npartition = "{part}"\nspool = "{short_tmp}/spool-{name}"\ncpus = {cpus}\n\n'
                    for name, part, cpus in (("n1", "p", 2), ("w1", "wide", 1), ("w2", "wide", 1)))
    yield from _melond(short_tmp, "n", '[partitions.p]\ndefault = true\nmax_cpus_per_node = 1\n\n'
                                       '[partitions.wide]\nmin_nodes = 2\n\n' + nodes)


def test_a_partitions_max_cpus_per_node_and_min_nodes(narrow: Melon) -> None:
    """MaxCPUsPerNode 1 on a 2-CPU node: the second 1-CPU job waits (Resources) while the first
    runs and starts after; more CPUs than that on one node, or fewer nodes than MinNodes, are
    refused at submission and nothing is queued; a job without -N gets MinNodes."""
    first = int(_sbatch(narrow, "-t", "5", "--wrap", "sleep 300").stdout)
    second = int(_sbatch(narrow, "-t", "5", "--wrap", "true").stdout)
    narrow.wait_state(first, {"R"})
    wait_for(lambda: _reason(narrow, second) == "Resources", timeout=20, what="MaxCPUsPerNode to hold the second")
    assert _slurm(narrow, "squeue", "-h", "-j", str(second), "-o", "%T %r").stdout.split() == ["PENDING", "Resources"]
    refused = _sbatch(narrow, "-c", "2", "--wrap", "true")
    assert refused.returncode == 1, refused.stderr
    assert "Requested node configuration is not available" in refused.stderr and "(MaxCPUsPerNode)" in refused.stderr
    few = _sbatch(narrow, "-p", "wide", "-N", "1", "--wrap", "true")
    assert few.returncode == 1 and "PartitionNodeLimit" in few.stderr, few.stderr
    assert "partition wide runs jobs on 2 nodes or more (MinNodes): ask for -N 2" in few.stderr, few.stderr
    mine = narrow.run("mbatch", "-p", "wide", "-N", "1", "--wrap", "true", check=False)
    assert mine.returncode != 0 and "(MinNodes)" in mine.stderr, mine.stderr
    assert sorted(j["id"] for j in narrow.jobs()) == [first, second]  # the refused ones: nothing queued
    shown = _slurm(narrow, "scontrol", "-o", "show", "partition").stdout.splitlines()
    assert "MinNodes=0" in shown[0] and "MaxCPUsPerNode=1" in shown[0], shown
    assert "MinNodes=2" in shown[1] and "MaxCPUsPerNode=UNLIMITED" in shown[1], shown
    spread = int(_sbatch(narrow, "-p", "wide", "-t", "5", "--wrap", "true").stdout)
    assert narrow.wait_state(spread, {"CD"})["node_list"] == "w[1-2]"
    _slurm(narrow, "scancel", str(first))
    narrow.wait_state(second, {"CD"}, timeout=30)


@needs_root
def test_scontrol_top_reorders_a_users_own_jobs_and_priority_is_an_operators(shared: Melon) -> None:
    """nobody's three held jobs: `scontrol top` gives the last the highest of their priorities and
    moves the others down, never up (no one else is passed); only an operator sets a priority."""
    jobs = [int(_sbatch(shared, "-H", "-t", "5", "--wrap", "true", user="nobody").stdout) for _ in range(3)]
    before = {j: shared.job(j)["priority"] for j in jobs}
    assert _slurm(shared, "scontrol", "top", str(jobs[2]), user="nobody").returncode == 0
    after = {j: shared.job(j)["priority"] for j in jobs}
    assert after[jobs[2]] == max(before.values()) > after[jobs[0]] > after[jobs[1]], (before, after)
    assert all(after[j] <= max(before.values()) for j in jobs)
    refused = _slurm(shared, "scontrol", "update", f"JobId={jobs[0]}", "Priority=99999", user="nobody")
    assert refused.returncode == 1 and "only operators set a job's priority" in refused.stderr
    assert _slurm(shared, "scontrol", "update", f"JobId={jobs[0]}", "Priority=99999").returncode == 0
    assert shared.job(jobs[0])["priority"] == 99999
    assert "Priority=99999" in _slurm(shared, "scontrol", "show", "job", str(jobs[0])).stdout
    shared.stop(signal.SIGKILL)  # both are in the jobs' histories: a restart keeps them
    shared.start()
    wait_for(lambda: shared.job(jobs[0])["priority"] == 99999, timeout=20, what="the operator's priority back")
    again = {j: shared.job(j)["priority"] for j in jobs}
    assert again[jobs[2]] > again[jobs[1]], again
    assert [e["kind"] for e in shared.job(jobs[2])["events"]].count("topped") == 1
    _slurm(shared, "scancel", *map(str, jobs))
