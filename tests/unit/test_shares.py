"""sshare's rows and columns: the TRES-minutes running jobs have left (TRESRunMins) per user, summed
up each account's subtree, printed as Slurm prints a TRES array; GrpTRESMins empty (no such limit)."""
from __future__ import annotations

from melon_cli.slurm.sshare import render
from melond.sched.priority import Assoc, rows, run_seconds
from melond.spec.tres import format_accounted


def _tree() -> Assoc:
    """root -> physics (u1, u2) -> theory (u3); root -> bio (u4)."""
    theory = Assoc("theory", 1.0, children=[Assoc("theory/u3", 1.0, 30.0, user=True)])
    physics = Assoc("physics", 2.0, children=[Assoc("physics/u1", 1.0, 50.0, user=True),
                                               Assoc("physics/u2", 1.0, 20.0, user=True), theory])
    bio = Assoc("bio", 1.0, children=[Assoc("bio/u4", 1.0, 0.0, user=True)])
    return Assoc("root", children=[physics, bio])


def test_run_seconds_are_each_jobs_tres_times_the_time_it_has_left() -> None:
    held = [("physics/u1", {"cpu": 4, "mem": 1024, "node": 1}, 3600.0),
            ("physics/u1", {"cpu": 2, "mem": 512, "node": 1, "gres/gpu": 1}, 90.5),
            ("bio/u4", {"cpu": 8}, -10.0)]  # past its limit: nothing left
    assert run_seconds(held) == {"physics/u1": {"cpu": 4 * 3600 + 181, "mem": 1024 * 3600 + 46336, "node": 3690,
                                                "gres/gpu": 90},
                                 "bio/u4": {"cpu": 0}}


def test_accounts_sum_their_subtree_and_minutes_are_the_sums_whole_minutes() -> None:
    running = {"physics/u1": {"cpu": 90, "billing": 90}, "theory/u3": {"cpu": 150, "gres/gpu": 60},
               "bio/u4": {"cpu": 59}}
    out = {(r["account"], r["user"]): r["tres_run_mins"]
           for r in rows(_tree(), {}, running, ("cpu", "mem", "node", "billing", "gres/gpu"))}
    zero = {"cpu": 0, "mem": 0, "node": 0, "billing": 0, "gres/gpu": 0}
    assert out[("physics", "u1")] == {**zero, "cpu": 1, "billing": 1}  # 90 s: one whole minute
    assert out[("physics", "u2")] == zero
    assert out[("theory", None)] == out[("theory", "u3")] == {**zero, "cpu": 2, "gres/gpu": 1}
    assert out[("physics", None)] == {**zero, "cpu": 4, "billing": 1, "gres/gpu": 1}  # 240 s, not 1 + 2
    assert out[("bio", None)] == zero  # 59 s
    assert out[("root", None)] == {**zero, "cpu": 4, "billing": 1, "gres/gpu": 1}  # 299 s


def test_rows_without_running_jobs_show_zeros_for_the_clusters_tres() -> None:
    assert {tuple(r["tres_run_mins"].items()) for r in rows(_tree(), {}, None, ("cpu", "mem"))} == \
        {(("cpu", 0), ("mem", 0))}


def test_tres_arrays_print_as_sshare_prints_them() -> None:
    assert format_accounted({}) == "cpu=0,mem=0,energy=0,node=0,billing=0,fs/disk=0,vmem=0,pages=0"
    assert format_accounted({"gres/gpu": 3, "mem": 2048, "cpu": 4, "gres/fpga": 0}) == \
        "cpu=4,mem=2048,energy=0,node=0,billing=0,fs/disk=0,vmem=0,pages=0,gres/fpga=0,gres/gpu=3"


def test_long_adds_grptresmins_empty_and_tresrunmins_cut_to_30_with_a_plus() -> None:
    share = rows(_tree(), {"physics/u1": 0.75}, {"physics/u1": {"cpu": 7200, "mem": 60 * 4096}}, ("cpu", "mem"))
    long = render(share, {"long": "", "users": "u1"}, "u1").splitlines()
    assert long[0].split() == ["Account", "User", "RawShares", "NormShares", "RawUsage", "NormUsage", "EffectvUsage",
                               "FairShare", "LevelFS", "GrpTRESMins", "TRESRunMins"]
    row = next(line for line in long if " u1 " in line)
    assert row.endswith(" " * 30 + " cpu=120,mem=4096,energy=0,nod+")  # 30 columns, the last a +
    parsable = render(share, {"long": "", "users": "u1", "parsable2": ""}, "u1").splitlines()
    assert parsable[0].endswith("|LevelFS|GrpTRESMins|TRESRunMins")
    assert [line for line in parsable if "|u1|" in line][0].endswith(
        "||cpu=120,mem=4096,energy=0,node=0,billing=0,fs/disk=0,vmem=0,pages=0")
    assert render(share, {"format": "Account,TRESRunMins%12", "accounts": "theory", "noheader": ""}, "u1") == \
        "  theory" + " " * 13 + "cpu=0,mem=0+"
