"""`mshare`: your fair-share standing in words, then the association tree, as sshare shows it."""
from __future__ import annotations

from melon_cli.args import Command, Opt
from melon_cli.common import client, current_user, echo, print_json, table

PROG = "mshare"
HEADERS = ["ACCOUNT", "USER", "SHARES", "NORM_SHARES", "USAGE", "OF_PARENT", "LEVEL_FS", "FAIRSHARE"]


def show(all_users: bool, accounts: str | None, as_json: bool, endpoint: str | None) -> None:
    """Show your fair-share standing in words, then the tree of accounts and users.

    One sentence for each account of yours: your fair-share and rank among the users, your
    decayed usage and its part of the account's, the account's share and yours. Usage is
    billable TRES (CPUs unless the inventory weighs more) times seconds run, halved every decay
    half-life. LEVEL_FS is a share over its part of its parent's usage: above 1, less used than
    its share. The table shows every account and your own rows (--all: every user's); -A keeps
    the named accounts and what is under them.

        mshare      mshare --all      mshare -A physics --json
    """
    rows = client(endpoint).call("GET", "/shares")["shares"]
    me = current_user()
    picked = pick(rows, me, all_users, {a for a in (accounts or "").split(",") if a})
    if as_json:
        print_json(picked)
        return
    for line in standing(rows, me):
        echo(line)
    echo()
    echo(table(HEADERS, [_cells(r) for r in picked], right={2, 3, 4, 5, 6, 7}))


def pick(rows: list[dict], me: str, all_users: bool, accounts: set[str]) -> list[dict]:
    """The root and every account, and the users' rows: yours, or every one's; with `accounts`,
    only those accounts' rows and everything under them (sub-accounts included)."""
    out, under = [], None  # under: the depth of the named account whose subtree is being read
    for r in rows:
        if under is not None and r["depth"] <= under:
            under = None
        if accounts and under is None and r["user"] is None and r["account"] in accounts:
            under = r["depth"]
        elif accounts and under is None:
            continue
        if r["user"] is None or all_users or r["user"] == me:
            out.append(r)
    return out


def standing(rows: list[dict], me: str) -> list[str]:
    """One sentence per association of yours: fair-share and rank, decayed usage and what part of
    its account's it is, and the account's own share."""
    users = [r for r in rows if r["user"] is not None]
    ranked = [r["fairshare"] for r in users if r["fairshare"] is not None]
    noun = "users" if len({r["user"] for r in users}) == len(users) else "user associations"
    out = []
    for i, r in enumerate(rows):
        if r["user"] != me:
            continue
        if r["fairshare"] is None:
            fair = "fair-share not computed yet"
        else:
            rank = 1 + sum(f > r["fairshare"] for f in ranked)
            fair = f"fair-share {r['fairshare']:.2f} (rank {rank} of {len(ranked)} {noun})"
        usage = f"usage {int(r['raw_usage']):,} billing-seconds decayed"
        if r["account"] == "root":
            where = f"{_pct(r['effective_usage'])} of the cluster's, whose shares give you {_pct(r['norm_shares'])}"
        else:
            account = _account(rows, i)
            where = (f"{_pct(r['effective_usage'])} of account {r['account']}'s, whose share is "
                     f"{_pct(account['norm_shares'])}; your share of it is {_pct(r['norm_shares'])}")
        out.append(f"{me}: {fair}; {usage}, {where}{_verdict(r['level_fs'])}.")
    return out or [f"{me}: not in the fair-share tree (no account lists {me}, or {me} has run no job yet); "
                   f"a first job starts at fair-share 1.00."]


def _account(rows: list[dict], i: int) -> dict:
    """The account row a user row (at `i`) sits under: the nearest one above it, one level up."""
    depth = rows[i]["depth"]
    return next(r for r in reversed(rows[:i]) if r["user"] is None and r["depth"] < depth)


def _verdict(level_fs: float | None) -> str:
    """How the usage compares with the share (LevelFS: the share over the part of the usage)."""
    if level_fs is None:
        return ""
    if level_fs == float("inf"):
        return ", and you have used nothing yet"
    compared = "less than" if level_fs > 1 else "more than" if level_fs < 1 else "just"
    return f", and you used {compared} that (LevelFS {level_fs:.2f})"


def _pct(part: float) -> str:
    value = part * 100
    return "<1%" if 0 < value < 1 else f"{value:.0f}%"


def _cells(r: dict) -> list[str]:
    fs = r["level_fs"]
    return [" " * r["depth"] + r["account"], r["user"] or "", "" if r["raw_shares"] is None else f"{r['raw_shares']:g}",
            _pct(r["norm_shares"]), f"{int(r['raw_usage']):,}", _pct(r["effective_usage"]),
            "" if fs is None else "inf" if fs == float("inf") else f"{fs:.3f}",
            "" if r["fairshare"] is None else f"{r['fairshare']:.3f}"]


COMMAND = Command(PROG, show, [
    Opt("--all", dest="all_users", help="Every user's rows (by default: every account and your own rows)."),
    Opt("-A", "--account", dest="accounts", value=True, metavar="ACCOUNTS",
        help="Only these accounts (comma-separated) and what is under them."),
    Opt("--json", dest="as_json", help="JSON for scripts: the rows the table shows, as melond gives them."),
])
main = COMMAND.main
