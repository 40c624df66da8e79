"""`sacctmgr show|list account|user|qos|association`: the inventory's accounts, users and QOS, read
only, as Slurm's sacctmgr lists them (snakemake asks `sacctmgr -n -s list user U format=account`).
Changing them is changing the inventory ([accounts], [users], [qos]); sacctmgr says so.
"""
from __future__ import annotations

import os
import sys

from melon_cli.acct_format import Column, hms, table
from melon_cli.slurm.argv import read_argv
from melon_cli.slurm.tables import SACCTMGR
from melond.errors import MelonError
from melond.spec.getopt import make_grammar
from melond.spec.timespec import format_limit

PROG = "sacctmgr"
GRAMMAR = make_grammar(SACCTMGR, strict=True)
HELP = """Usage: sacctmgr [OPTIONS] show|list ENTITY [NAME...] [KEY=VALUE...] [format=FIELD[%WIDTH],...]
Melon's sacctmgr shows the accounts, users, QOS and associations of melond's inventory (read-only: they are
changed there, in [accounts], [users] and [qos]). ENTITY: account, user, qos, association. -n/--noheader,
-p/--parsable, -P/--parsable2, -s/--associations (a user's accounts). Filters: name=, user=, account=.
"""
ENTITIES = {"account": "account", "accounts": "account", "user": "user", "users": "user", "qos": "qos",
            "association": "assoc", "associations": "assoc", "assoc": "assoc", "assocs": "assoc"}
#: field (lower case) -> (title, width, how a row shows it)
FIELDS = {
    "cluster": ("Cluster", 10, lambda r: "melon"), "account": ("Account", 10, lambda r: r.get("account") or ""),
    "user": ("User", 10, lambda r: r.get("user") or ""), "name": ("Name", 10, lambda r: r.get("name") or ""),
    "descr": ("Descr", 10, lambda r: r.get("description") or r.get("account") or ""),
    "org": ("Org", 10, lambda r: r.get("parent") or "root"),
    "parentname": ("Par Name", 10, lambda r: r.get("parent") or ""),
    "share": ("Share", 9, lambda r: "" if r.get("shares") is None else str(r["shares"])),
    "grptres": ("GrpTRES", 13, lambda r: r.get("grp_tres") or ""),
    "maxjobs": ("MaxJobs", 7, lambda r: _num(r.get("max_jobs"))),
    "maxsubmit": ("MaxSubmit", 9, lambda r: _num(r.get("max_submit_jobs"))),
    "maxwall": ("MaxWall", 11, lambda r: format_limit(r["max_wall"]) if r.get("max_wall") else ""),
    "maxtres": ("MaxTRES", 13, lambda r: r.get("max_tres_per_job") or ""),
    "qos": ("QOS", 20, lambda r: ",".join(r["qos"]) if isinstance(r.get("qos"), list) else r.get("qos") or "normal"),
    "defaultqos": ("Def QOS", 9, lambda r: r.get("default_qos") or ""),
    "defaultaccount": ("Def Acct", 10, lambda r: r.get("default_account") or ""),
    "admin": ("Admin", 9, lambda r: "None"), "priority": ("Priority", 10, lambda r: str(r.get("priority") or 0)),
    "maxjobspu": ("MaxJobsPU", 9, lambda r: _num(r.get("max_jobs_per_user"))),
    "maxsubmitpu": ("MaxSubmitPU", 11, lambda r: _num(r.get("max_submit_jobs_per_user"))),
    "maxtrespu": ("MaxTRESPU", 13, lambda r: r.get("max_tres_per_user") or ""),
    "gracetime": ("GraceTime", 10, lambda r: hms(r.get("grace_time") or 0)),
    "preempt": ("Preempt", 10, lambda r: ",".join(r.get("preempt") or ())),
    "preemptmode": ("PreemptMode", 11, lambda r: (r.get("preempt_mode") or "cancel").upper()),
    "usagefactor": ("UsageFactor", 11, lambda r: f"{r.get('usage_factor', 1.0):f}"),
}
ALIASES = {"def acct": "defaultaccount", "defaultacct": "defaultaccount", "def qos": "defaultqos",
           "description": "descr", "organization": "org", "fairshare": "share", "shares": "share",
           "maxsubmitjobs": "maxsubmit", "maxtresperjob": "maxtres", "maxjobsperuser": "maxjobspu",
           "maxsubmitjobsperuser": "maxsubmitpu", "maxtresperuser": "maxtrespu", "parent": "parentname"}
DEFAULTS = {"account": ["account", "descr", "org"], "user": ["user", "defaultaccount", "admin"],
            "qos": ["name", "priority", "gracetime", "preempt", "preemptmode", "usagefactor", "grptres", "maxtres",
                    "maxwall", "maxtrespu", "maxjobspu", "maxsubmitpu"],
            "assoc": ["cluster", "account", "user", "share", "grptres", "maxjobs", "maxsubmit", "maxwall", "maxtres",
                      "qos", "defaultqos"]}
FILTERS = {"name": "name", "names": "name", "user": "user", "users": "user", "account": "account",
           "accounts": "account", "cluster": None, "clusters": None}


def _num(value: object) -> str:
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> None:
    found, words = read_argv(PROG, GRAMMAR, argv, HELP)
    opts = {name: value or "" for name, value in found}
    try:
        out = run(opts, words)
        if out:
            sys.stdout.write(out + "\n")
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def run(opts: dict[str, str], words: list[str]) -> str:
    if not words or words[0].lower() not in ("show", "list"):
        raise MelonError(f"{(words or ['no command'])[0]!r}: Melon's accounts, users and QOS are set in melond's "
                         f"inventory ([accounts], [users], [qos]); sacctmgr only shows them (show|list ENTITY)")
    if len(words) < 2 or words[1].lower() not in ENTITIES:
        raise MelonError(f"show what? one of {', '.join(sorted(set(ENTITIES.values())))}")
    entity, names, wanted, fields = ENTITIES[words[1].lower()], set(), {}, None
    for word in words[2:]:
        key, eq, value = word.partition("=")
        if not eq:
            if key.lower() != "where":
                names.add(word)
            continue
        if key.lower() == "format":
            fields = value
        elif key.lower() in FILTERS:
            if FILTERS[key.lower()]:
                wanted[FILTERS[key.lower()]] = set(value.split(","))
        else:
            raise MelonError(f"unknown condition {word!r}; use name=, user=, account= or format=")
    from melon_cli.common import client
    data = client(os.environ.get("MELON_API") or None).call("GET", "/associations")
    if entity == "user" and "associations" in opts:
        entity = "assoc"
        wanted.setdefault("user", set()).update(names)
        names = set()
    rows = _rows(entity, data)
    key = {"account": "account", "user": "user", "qos": "name", "assoc": "account"}[entity]
    rows = [r for r in rows if (not names or r.get(key) in names) and
            all(r.get(k) in v for k, v in wanted.items() if k != "name") and
            ("name" not in wanted or r.get(key) in wanted["name"])]
    cols = _columns(fields, entity)
    cells = [[FIELDS[c.name][2](r) for c in cols] for r in rows]
    parsable = "|" if "parsable" in opts else "" if "parsable2" in opts else None
    shown = [Column(FIELDS[c.name][0], c.width, False) for c in cols]
    return table(shown, cells, header="noheader" not in opts, parsable=parsable)


def _columns(text: str | None, entity: str) -> list[Column]:
    if not text:
        return [Column(n, FIELDS[n][1], False) for n in DEFAULTS[entity]]
    out = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, _, width = item.partition("%")
        key = ALIASES.get(name.lower(), name.lower())
        if key not in FIELDS or (width and not width.isdigit()):
            raise MelonError(f"unknown field {item!r} in format=; fields: {', '.join(FIELDS)}, each with an "
                             f"optional %WIDTH")
        out.append(Column(key, int(width) if width else FIELDS[key][1], False))
    return out


def _rows(entity: str, data: dict) -> list[dict]:
    accounts, users = data["accounts"], data["users"]
    if entity == "qos":
        return [{"name": name, **q} for name, q in sorted(data["qos"].items())]
    if entity == "account":
        return [{"account": name, **a} for name, a in sorted(accounts.items())]
    every = sorted({u for a in accounts.values() for u in a["users"]} | set(users))
    if entity == "user":
        return [{"user": u, "default_account": (users.get(u) or {}).get("default_account") or
                 next((n for n, a in sorted(accounts.items()) if u in a["users"]), "")} for u in every]
    out = []
    for name, a in sorted(accounts.items()):
        out.append({"account": name, **a, "user": None})
        for user in sorted(a["users"]):
            out.append({"account": name, "user": user, "shares": 1, "qos": a.get("qos"),
                        "default_qos": a.get("default_qos"), "max_jobs": a.get("max_jobs"),
                        "max_submit_jobs": a.get("max_submit_jobs"), "max_wall": a.get("max_wall"),
                        "max_tres_per_job": a.get("max_tres_per_job")})
    return out


if __name__ == "__main__":
    main()
