"""`sprio`: each pending job's priority and the factors it is made of, as Slurm's sprio prints
them (src/sprio/sprio.c, opts.c, print.c, sort.c): one column per factor whose weight is not 0,
`-l` every column, `-o` sprio's `%[.][size]letter` fields (or SPRIO_FORMAT), `-S` its sort keys.

    $ sprio
              JOBID PARTITION   PRIORITY       SITE        AGE  FAIRSHARE        QOS
                 14 main            5012          0         12       5000          0
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from melon_cli import queue_format
from melon_cli.slurm.argv import read_argv
from melon_cli.slurm.tables import SPRIO
from melond.errors import MelonError
from melond.spec.getopt import make_grammar

PROG = "sprio"
GRAMMAR = make_grammar(SPRIO, strict=False, same={"clusters": "cluster"})
HELP = """Usage: sprio [OPTIONS]
Melon's sprio: pending jobs' priorities and their weighted factors (age, fair-share, job size,
partition, QOS). -h/--noheader, -j/--jobs=LIST, -u/--user=LIST, -p/--partition=LIST, -l/--long
(user, account, QOS name, nice), -n/--norm (the factors unweighted), -w/--weights (the weights),
-o/--format=FORMAT (sprio's %[.][size]letter fields, e.g. "%.15i %.8u %.10Y %.10F"; the environment's
SPRIO_FORMAT where neither -o nor -l is given), -S/--sort=LIST (letters, each after - for descending:
-S -Y,i). Melon has no association, site or TRES factors: %b/%B and %S print 0 and %t/%T nothing,
as Slurm's sprio does where their weights are 0.
"""
MAX_PRIORITY = 4294967295
CLUSTER = "melon"
WEIGHTS = "weights"  # the key that marks -w's row: each factor's weight, nothing of a job
#: sprio's factor letters (lower case normalized, upper case weighted): header, Melon's factor
#: (None: a factor Melon does not have, whose weight is 0)
FACTORS = {"a": ("AGE", "age"), "b": ("ASSOC", None), "f": ("FAIRSHARE", "fairshare"), "j": ("JOBSIZE", "jobsize"),
           "p": ("PARTITION", "partition"), "q": ("QOS", "qos")}
#: The layouts sprio.c builds: -l's, and the start of the default's, which adds the factors weighed.
LONG = "%.15i %9r %.8u %.8o %.10Y %.10S %.10A %.10B %.10F %.10J %.10P %.10n %.10Q %.11N %.20T"
LONG_NORM = "%.15i %9r %.8u %.8o %10y %10a %10b %10f %10j %10p %10n %10q %20t"


def _factor(name: str | None, normalized: bool) -> Callable[[dict, float], str]:
    """A factor's cell: in [0, 1] to 7 places, or times its weight (whole); its weight on -w's row."""
    def show(r: dict, now: float) -> str:
        if WEIGHTS in r:
            return str(r[WEIGHTS].get(name, 0))
        if normalized:
            return f"{r['factors'].get(name, 0.0):.7f}"
        return str(r["weighted"].get(name, 0))
    return show


def _job(show: Callable[[dict], str]) -> Callable[[dict, float], str]:
    """A cell of the job's own, blank on -w's row."""
    return lambda r, now: "" if WEIGHTS in r else show(r)


# letter -> (header, API fields (none: /priorities sends every one), how a row shows it)
CODES: dict[str, tuple[str, tuple[str, ...], Callable[[dict, float], str]]] = {
    "i": ("JOBID", (), lambda r, now: "Weights" if WEIGHTS in r else str(r["job_id"])),
    "r": ("PARTITION", (), _job(lambda r: r["partition"])),
    "u": ("USER", (), _job(lambda r: r["user"])),
    "o": ("ACCOUNT", (), _job(lambda r: r.get("account") or "")),
    "n": ("QOSNAME", (), _job(lambda r: r["qos"])),
    "c": ("CLUSTER", (), _job(lambda r: CLUSTER)),
    "N": ("NICE", (), _job(lambda r: str(r["nice"]))),
    "Y": ("PRIORITY", (), _job(lambda r: str(r["priority"]))),
    "y": ("PRIORITY", (), _job(lambda r: f"{r['priority'] / MAX_PRIORITY:16.14f}")),
    "S": ("SITE", (), lambda r, now: "1" if WEIGHTS in r else "0"),  # print.c shows 1 as its weight
    "t": ("TRES", (), lambda r, now: ""),
    "T": ("TRES", (), lambda r, now: ""),
    **{c: (header, (), _factor(name, True)) for c, (header, name) in FACTORS.items()},
    **{c.upper(): (header, (), _factor(name, False)) for c, (header, name) in FACTORS.items()},
}
NORMALIZED = {*FACTORS, "y", "t"}
FORMS = ("write fields as %[.][size]LETTER, e.g. \"%.15i %.8u %.10Y %.10F\" (the '.' right-justifies); letters: "
         + " ".join(f"%{c} ({h}{', normalized' if c in NORMALIZED else ''})" for c, (h, _, _) in CODES.items())
         + "; %% is a literal %")


def _by_factor(name: str | None) -> Callable[[dict], float]:
    return lambda r: r["factors"].get(name, 0.0)


#: sort.c's keys: a factor sorts the same by either letter; association and site do not sort.
SORTS: dict[str, Callable[[dict], object]] = {
    "c": lambda r: CLUSTER, "i": lambda r: r["job_id"], "N": lambda r: r["nice"], "n": lambda r: r["qos"],
    "o": lambda r: r.get("account") or "", "r": lambda r: r["partition"], "u": lambda r: r["user"],
    "t": lambda r: 0, "T": lambda r: 0, "y": lambda r: r["priority"], "Y": lambda r: r["priority"],
    **{c: _by_factor(name) for c, (_, name) in FACTORS.items() if name},
    **{c.upper(): _by_factor(name) for c, (_, name) in FACTORS.items() if name},
}
SORT_FORMS = "a comma list of sprio's format letters, each optionally after + or - (descending), e.g. -S u,r,-y; " \
             "letters: " + " ".join(SORTS)


def main(argv: list[str] | None = None) -> None:
    found, words = read_argv(PROG, GRAMMAR, argv, HELP)
    opts = {name: value or "" for name, value in found}
    try:
        from melon_cli.common import client
        data = client(os.environ.get("MELON_API") or None).call("GET", "/priorities")
        sys.stdout.write(render(data, opts, words, os.environ.get("SPRIO_FORMAT")))
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def layout(weights: dict[str, int], opts: dict[str, str], env_format: str | None = None) -> str:
    """The format sprio prints with: -o's, else -l's, else SPRIO_FORMAT, else sprio.c's default:
    the job, its partition (and user with -u), the priority and each factor whose weight is not 0."""
    if "format" in opts and "long" in opts:
        raise MelonError("Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.")
    norm = "norm" in opts
    if opts.get("format"):
        return opts["format"]
    if "long" in opts:
        return LONG_NORM if norm else LONG
    if env_format:
        return env_format
    weighed = [c for c, (_, name) in FACTORS.items() if name and weights.get(name)]
    return "%.15i %9r" + (" %.8u" if opts.get("user") else "") + (" %10y" if norm else " %.10Y %.10S") \
        + "".join(f" %10{c}" if norm else f" %.10{c.upper()}" for c in weighed)


def _wanted(text: str | None) -> set[str] | None:
    return {w.strip() for w in text.split(",") if w.strip()} if text else None


def render(data: dict, opts: dict[str, str], words: list[str] | None = None, env_format: str | None = None) -> str:
    """sprio's lines for GET /priorities' answer: the header, then -w's weights or the pending
    jobs picked by -j/-u/-p, in -S's order (default: by job id)."""
    spec = queue_format.parse_format(layout(data["weights"], opts, env_format), CODES, FORMS)
    order = queue_format.parse_sort(opts.get("sort") or "i", SORTS, SORT_FORMS)
    jobs_wanted = _wanted(opts.get("jobs") or ",".join(words or []))
    users, parts = _wanted(opts.get("user")), _wanted(opts.get("partition"))
    if "weights" in opts:
        rows = [{WEIGHTS: data["weights"]}]
    else:
        rows = [job for job in data["jobs"] if not (jobs_wanted and str(job["job_id"]) not in jobs_wanted)
                and not (users and job["user"] not in users) and not (parts and job["partition"] not in parts)]
        for code, descending in reversed(order):
            rows.sort(key=SORTS[code], reverse=descending)
    lines = [] if "noheader" in opts else [queue_format.header(spec, CODES)]
    lines += [queue_format.render(spec, row, 0.0, CODES) for row in rows]
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    main()
