"""`sacct`, as Slurm prints it, through macct's engine (the store's accounting window).

What tools run (SLURM-CLIENTS.md): `-j` repeated or comma lists (`J`, `J_I`; `J.batch` and `J.0`
name a step's row alone), `-X` (jobs only; without it each job's `batch` step and srun's steps
follow it), `-n`, `-p`/`-P`, `-b`, `-o`
with widths (`%-256` left-justified), `--name`, `-S`/`-E`, `-u`, `-a`, `--clusters`; and a bare
`sacct -X` exits 0. A bad option or a stray word is refused as sacct refuses it (snakemake runs
`sacct -nu U -o Account%256 | tail -1` without a shell: `-1` is an invalid option there, as in
Slurm, and snakemake takes the failure for "no account"). States are spelled whole (`CANCELLED`,
never `CANCELLED by 0`).
"""
from __future__ import annotations

import os
import sys

from melon_cli.acct_format import LONG
from melon_cli.args import Opt
from melon_cli.macct import account
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SlurmCommand
from melon_cli.units import unit_index

PROG = "sacct"
BRIEF = "JobID,State,ExitCode"  # sacct.h BRIEF_FIELDS
DEFAULT = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"  # sacct.h DEFAULT_FIELDS


def show(ids: tuple[str, ...], fmt: str | None, brief: bool, long_view: bool, units: str | None, noconvert: bool,
         parsable: bool, parsable2: bool, noheader: bool, allocations: bool, names: str | None, start: str | None,
         end: str | None, users: str | None, all_users: bool, states: str | None, partitions: str | None,
         clusters: str | None, endpoint: str | None) -> None:
    """Accounting data for jobs, from melond's store."""
    unit = None
    if units is not None:  # options.c: get_unit_type(*optarg), then fatal
        unit = unit_index(units[:1])
        if unit is None:
            sys.stderr.write(f"{PROG}: error: Invalid unit type '{units[:1]}'. Possible options are 'KMGTP'\n"
                             f"{PROG}: fatal: Invalid unit type\n")
            sys.exit(1)
    # options.c: the -o fields, then -b's, then -l's; none of them: SACCT_FORMAT, else the default
    fields = ",".join(f for f, given in ((fmt, fmt), (BRIEF, brief), (LONG, long_view)) if given)
    typed = [i for value in ids for i in value.split(",") if i]
    steps = frozenset(i for i in typed if "." in i)  # `J.batch`, `J.0`: those steps' rows alone
    jobs = tuple(dict.fromkeys(i.split(".")[0] for i in typed))
    account(start=start, end=end, users=users, me=False, all_users=all_users, ids=jobs, states=states,
            partitions=partitions, fmt=fields or os.environ.get("SACCT_FORMAT") or DEFAULT, parsable=parsable,
            parsable2=parsable2, noheader=noheader, allocations=allocations and not steps, as_json=False,
            endpoint=endpoint, names=names, units=unit, noconvert=noconvert, steps_named=steps,
            whole=frozenset(i for i in typed if "." not in i))


COMMAND = SlurmCommand(PROG, show, [
    Opt("-j", "--jobs", dest="ids", multiple=True, complete="jobs", help="Job ids (comma-separated, repeatable)."),
    Opt("-o", "--format", "--fields", dest="fmt", value=True, help="Fields, e.g. JobID,State,NodeList%20."),
    Opt("-b", "--brief", dest="brief", help="JobID, State and ExitCode only."),
    Opt("-l", "--long", dest="long_view", help="sacct's long field list (a job's step statistics stay empty)."),
    Opt("--units", dest="units", value=True, metavar="[KMGTP]", help="Sizes (ReqMem, MaxRSS, TRES) in this unit."),
    Opt("--noconvert", dest="noconvert", help="Sizes in their own unit (2048M, not 2G)."),
    Opt("-p", "--parsable", dest="parsable", help="Fields separated by |, each line ending in |."),
    Opt("-P", "--parsable2", dest="parsable2", help="Fields separated by |, no | at the end."),
    Opt("-n", "--noheader", dest="noheader", help="No header."),
    Opt("-X", "-t", "--allocations", dest="allocations", help="Jobs only: no step rows (J.batch, J.0, ...)."),
    Opt("--name", dest="names", value=True, help="Jobs with these names."),
    Opt("-S", "--starttime", dest="start", value=True, help="From (default: midnight; with -j, all time)."),
    Opt("-E", "--endtime", dest="end", value=True, help="Until (default: now)."),
    Opt("-u", "--user", "--uid", dest="users", value=True, help="These users' jobs."),
    Opt("-a", "--allusers", dest="all_users", help="Every user's jobs."),
    Opt("-s", "--state", dest="states", value=True, help="Jobs now in these states."),
    Opt("-r", "--partition", dest="partitions", value=True, help="Jobs in these partitions."),
    Opt("-M", "--clusters", "--cluster", dest="clusters", value=True, help="Accepted; one cluster: this melond's."),
], table=tables.SACCT,
    ignored=frozenset({"duplicates", "federation", "local", "allclusters", "truncate", "use-local-uid", "verbose",
                       "whole-hetjob"}),
    strays=lambda words: ["Unknown arguments:", *(f" {word}" for word in words)])  # src/sacct/options.c
main = COMMAND.main
