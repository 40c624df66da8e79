"""mshare: the caller's standing in words (fair-share, rank, usage and its part of the account's),
and which of the tree's rows the table shows (--all, -A)."""
from __future__ import annotations

from melon_cli.mshare import pick, standing
from melond.sched.priority import Assoc, fair_tree, rows, tree


def _rows() -> list[dict]:
    """fair_tree.html's example: A (40 shares: u1, u2), B (60: u3, u4 with 3 shares)."""
    a = Assoc("A", 40.0, children=[Assoc("A/u1", 1.0, 100.0, user=True), Assoc("A/u2", 1.0, 0.0, user=True)])
    b = Assoc("B", 60.0, children=[Assoc("B/u3", 1.0, 300.0, user=True), Assoc("B/u4", 3.0, 100.0, user=True)])
    root = Assoc("root", children=[a, b])
    return rows(root, fair_tree(root))


def test_standing_says_fair_share_rank_usage_and_the_accounts_share() -> None:
    assert standing(_rows(), "u1") == [
        "u1: fair-share 0.75 (rank 2 of 4 users); usage 100 billing-seconds decayed, 100% of account A's, whose "
        "share is 40%; your share of it is 50%, and you used more than that (LevelFS 0.50)."]
    assert standing(_rows(), "u2")[0].endswith(
        "rank 1 of 4 users); usage 0 billing-seconds decayed, 0% of account A's, whose share is 40%; your share of it "
        "is 50%, and you have used nothing yet.")


def test_without_accounts_the_cluster_is_the_parent() -> None:
    root = tree(["ana", "bob"], {(None, "ana"): 3000.0, (None, "bob"): 1000.0})
    assert standing(rows(root, fair_tree(root)), "bob") == [
        "bob: fair-share 1.00 (rank 1 of 2 users); usage 1,000 billing-seconds decayed, 25% of the cluster's, whose "
        "shares give you 50%, and you used less than that (LevelFS 2.00)."]


def test_a_user_outside_the_tree_is_told_why() -> None:
    assert standing(_rows(), "zoe") == ["zoe: not in the fair-share tree (no account lists zoe, or zoe has run no "
                                        "job yet); a first job starts at fair-share 1.00."]


def test_a_user_in_two_accounts_gets_a_sentence_for_each() -> None:
    a = Assoc("A", 1.0, children=[Assoc("A/u1", 1.0, 10.0, user=True)])
    b = Assoc("B", 1.0, children=[Assoc("B/u1", 1.0, 0.0, user=True), Assoc("B/u2", 1.0, 5.0, user=True)])
    root = Assoc("root", children=[a, b])
    said = standing(rows(root, fair_tree(root)), "u1")
    assert len(said) == 2 and all("of 3 user associations" in line for line in said)


def _picked(*args) -> list[tuple[str, str | None]]:
    return [(r["account"], r["user"]) for r in pick(_rows(), *args)]


def test_the_table_shows_every_account_and_your_rows_unless_all() -> None:
    assert _picked("u3", False, set()) == [("root", None), ("A", None), ("B", None), ("B", "u3")]
    assert len(_picked("u3", True, set())) == 7


def test_an_account_keeps_what_is_under_it() -> None:
    assert _picked("u3", True, {"B"}) == [("B", None), ("B", "u3"), ("B", "u4")]
    assert _picked("u1", False, {"A", "B"}) == [("A", None), ("A", "u1"), ("B", None)]
    deep = Assoc("root", children=[Assoc("top", children=[Assoc("sub", children=[Assoc("sub/x", user=True)]),
                                                           Assoc("top/y", user=True)]),
                                   Assoc("other", children=[Assoc("other/z", user=True)])])
    assert [(r["account"], r["user"]) for r in pick(rows(deep, {}), "x", True, {"top"})] == \
        [("top", None), ("top", "y"), ("sub", None), ("sub", "x")]
