"""`sshare`: the association tree's shares, decayed usage and fair-share, as Slurm's sshare prints
them under Fair Tree (src/sshare/process.c): the root, each account (indented one space a
level) and its users. Without -a, only your own user rows (and every account).
"""
from __future__ import annotations

import os
import sys

from melon_cli.acct_format import Column, table
from melon_cli.slurm.argv import read_argv
from melon_cli.slurm.tables import SSHARE
from melond.errors import MelonError
from melond.paths import current_user
from melond.spec.getopt import make_grammar
from melond.spec.tres import format_accounted

PROG = "sshare"
GRAMMAR = make_grammar(SSHARE, strict=False, same={"clusters": "cluster"})
HELP = """Usage: sshare [OPTIONS]
Melon's sshare: shares, decayed usage and Fair Tree fair-share per account and user. -a/--all (every
user), -A/--accounts=LIST, -u/--users=LIST, -U/--Users (user rows only), -l/--long (NormUsage, LevelFS,
GrpTRESMins, TRESRunMins), -n/--noheader, -p/--parsable, -P/--parsable2, -o/--format=Field[%WIDTH],...
TRESRunMins is what the association's running jobs (an account's: its subtree's) hold times the
minutes left to their time limits. GrpTRESMins is always empty: Melon has no such limit, and Slurm
leaves the column empty where none is set.
"""
#: field -> (width, left-justified, how the row shows it)
FIELDS = {
    "Account": (20, True, lambda r: " " * r["depth"] + r["account"]),
    "User": (10, False, lambda r: r["user"] or ""),
    "RawShares": (10, False, lambda r: "" if r["raw_shares"] is None else f"{r['raw_shares']:g}"),
    "NormShares": (11, False, lambda r: f"{r['norm_shares']:f}"),
    "RawUsage": (11, False, lambda r: str(int(r["raw_usage"]))),
    "NormUsage": (11, False, lambda r: f"{r['effective_usage']:f}"),
    "EffectvUsage": (13, False, lambda r: f"{r['effective_usage']:f}"),
    "FairShare": (10, False, lambda r: "" if r["fairshare"] is None else f"{r['fairshare']:f}"),
    "LevelFS": (10, False, lambda r: "" if r["level_fs"] is None else
                "inf" if r["level_fs"] == float("inf") else f"{r['level_fs']:f}"),
    "GrpTRESMins": (30, False, lambda r: ""),
    "TRESRunMins": (30, False, lambda r: format_accounted(r.get("tres_run_mins") or {})),
}
DEFAULT = ["Account", "User", "RawShares", "NormShares", "RawUsage", "EffectvUsage", "FairShare"]
LONG = ["Account", "User", "RawShares", "NormShares", "RawUsage", "NormUsage", "EffectvUsage", "FairShare", "LevelFS",
        "GrpTRESMins", "TRESRunMins"]


def main(argv: list[str] | None = None) -> None:
    found, _ = read_argv(PROG, GRAMMAR, argv, HELP)
    opts = {name: value or "" for name, value in found}
    try:
        from melon_cli.common import client
        rows = client(os.environ.get("MELON_API") or None).call("GET", "/shares")["shares"]
        out = render(rows, opts, current_user())
        if out:
            sys.stdout.write(out + "\n")
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def columns(text: str | None, long: bool) -> list[Column]:
    if not text:
        return [Column(n, FIELDS[n][0], FIELDS[n][1]) for n in (LONG if long else DEFAULT)]
    by_lower, out = {n.lower(): n for n in FIELDS}, []
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, _, width = item.partition("%")
        known = by_lower.get(name.lower())
        if known is None or (width and not width.isdigit()):
            raise MelonError(f"unknown field {item!r} in --format; fields: {', '.join(FIELDS)}, each with an "
                             f"optional %WIDTH")
        out.append(Column(known, int(width) if width else FIELDS[known][0], FIELDS[known][1]))
    return out


def render(rows: list[dict], opts: dict[str, str], me: str) -> str:
    users = {u for u in opts.get("users", "").split(",") if u} or (None if "all" in opts else {me})
    accounts = {a for a in opts.get("accounts", "").split(",") if a}
    cols = columns(opts.get("format"), "long" in opts)
    picked = [r for r in rows if (r["user"] is None and "Users" not in opts) or
              (r["user"] is not None and (users is None or r["user"] in users))]
    if accounts:
        picked = [r for r in picked if r["account"] in accounts]
    cells = [[FIELDS[c.name][2](r) for c in cols] for r in picked]
    parsable = "|" if "parsable" in opts else "" if "parsable2" in opts else None
    return table(cols, cells, header="noheader" not in opts, parsable=parsable)


if __name__ == "__main__":
    main()
