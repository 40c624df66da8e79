"""`sprio`: each pending job's priority and the weighted factors it is made of, as Slurm's sprio
prints them (src/sprio/print.c): one column per factor whose weight is not 0.

    $ sprio
              JOBID PARTITION   PRIORITY       SITE        AGE  FAIRSHARE        QOS
                 14 main            5012          0         12       5000          0
"""
from __future__ import annotations

import os
import sys

from melon_cli.slurm.argv import read_argv
from melon_cli.slurm.tables import SPRIO
from melond.errors import MelonError
from melond.spec.getopt import make_grammar

PROG = "sprio"
GRAMMAR = make_grammar(SPRIO, strict=False, same={"clusters": "cluster"})
HELP = """Usage: sprio [OPTIONS]
Melon's sprio: pending jobs' priorities and their weighted factors (age, fair-share, job size,
partition, QOS). -h/--noheader, -j/--jobs=LIST, -u/--user=LIST, -p/--partition=LIST, -l/--long
(user, account, QOS name, nice), -n/--norm (the factors unweighted), -w/--weights (the weights).
"""
#: (factor, header, sprio's letter): in print order; each shown where its weight is not 0.
FACTORS = (("age", "AGE"), ("fairshare", "FAIRSHARE"), ("jobsize", "JOBSIZE"), ("partition", "PARTITION"),
           ("qos", "QOS"))
MAX_PRIORITY = 4294967295


def main(argv: list[str] | None = None) -> None:
    found, words = read_argv(PROG, GRAMMAR, argv, HELP)
    opts = {name: value or "" for name, value in found}
    try:
        if "format" in opts or "sort" in opts:
            raise MelonError("-o/--format and -S/--sort are not supported by Melon; use -l for every column")
        from melon_cli.common import client
        data = client(os.environ.get("MELON_API") or None).call("GET", "/priorities")
        sys.stdout.write(render(data, opts, words))
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def _wanted(text: str | None) -> set[str] | None:
    return {w.strip() for w in text.split(",") if w.strip()} if text else None


def render(data: dict, opts: dict[str, str], words: list[str] | None = None) -> str:
    weights, norm, long = data["weights"], "norm" in opts, "long" in opts
    jobs_wanted = _wanted(opts.get("jobs") or ",".join(words or []))
    users, parts = _wanted(opts.get("user")), _wanted(opts.get("partition"))
    shown = list(FACTORS) if long else [(k, h) for k, h in FACTORS if weights.get(k)]
    cols = ["JOBID", "PARTITION", *(["USER"] if long or users else []), *(["ACCOUNT"] if long else []),
            "PRIORITY", "SITE", *(h for _, h in shown), *(["QOSNAME", "NICE"] if long else [])]
    widths = {"JOBID": 15, "PARTITION": 9, "USER": 8, "ACCOUNT": 8, "PRIORITY": 16 if norm else 10, "NICE": 11}
    rows = [{"JOBID": "Weights", **{h: str(weights[k]) for k, h in shown}}] if "weights" in opts else []
    for job in data["jobs"]:
        if (jobs_wanted and str(job["job_id"]) not in jobs_wanted) or (users and job["user"] not in users) \
                or (parts and job["partition"] not in parts):
            continue
        rows.append({"JOBID": str(job["job_id"]), "PARTITION": job["partition"], "USER": job["user"],
                     "ACCOUNT": job.get("account") or "", "QOSNAME": job["qos"], "NICE": str(job["nice"]),
                     "PRIORITY": f"{job['priority'] / MAX_PRIORITY:.14f}" if norm else str(job["priority"]),
                     "SITE": f"{0:.7f}" if norm else "0",
                     **{h: f"{job['factors'][k]:.7f}" if norm else str(job["weighted"][k]) for k, h in shown}})
    lines = [] if "noheader" in opts else [dict(zip(cols, cols))]
    return "".join(" ".join(_fit(r.get(c, ""), c, widths) for c in cols) + "\n" for r in lines + rows)


def _fit(text: str, col: str, widths: dict[str, int]) -> str:
    """sprio's columns are right-justified (a `.` in print.c's formats), PARTITION left."""
    width = widths.get(col, 10)
    return text[:width].ljust(width) if col == "PARTITION" else text[:width].rjust(width)


if __name__ == "__main__":
    main()
