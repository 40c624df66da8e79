"""`scancel`, as Slurm's: silent on success, exit 0 for jobs that already ended or are gone.

Ids (`12`, `12_3`, `12_[1-3]`), `-s/--signal` (names with or without SIG, before or after the
ids), `--me`, `-u`, `-n`, `-t`, `-p`; `--clusters` is accepted and means this melond. Only a
real refusal (another user's job, a bad id or signal) exits non-zero, with Slurm's wording.
"""
from __future__ import annotations

import sys

from cli.args import Arg, Opt
from cli.common import client, current_user, job_ids, pick_jobs
from cli.slurm import tables
from cli.slurm.argv import SlurmCommand
from melond.errors import Conflict, MelonError, NotFound

PROG = "scancel"


def cancel(ids: tuple[str, ...], signal: str | None, me: bool, user: str | None, names: str | None,
           states: str | None, partitions: str | None, clusters: str | None, endpoint: str | None) -> None:
    """Signal or cancel jobs."""
    sig = None
    if signal is not None:
        from melond.spec.timespec import signal_name
        sig = signal_name(signal)
    user = current_user() if me else user
    filtered = any(v is not None for v in (user, names, states, partitions))
    if not ids and not filtered:
        sys.stderr.write("scancel: error: No job identification provided\n")
        sys.exit(1)
    c = client(endpoint)
    targets = job_ids(ids) if ids else []
    if filtered:
        targets = pick_jobs(c, targets, user, states, names, partitions)
    failed = False
    for ref in targets:
        try:
            if sig is None:
                c.call("POST", f"/jobs/{ref}/cancel")
            else:
                c.call("POST", f"/jobs/{ref}/signal", {"signal": sig})
        except (Conflict, NotFound) as exc:
            if sig is not None:  # Slurm ignores a finished or unknown job only for a plain cancel
                sys.stderr.write(f"scancel: error: Kill job error on job id {ref}: {exc}\n")
                failed = True
        except MelonError as exc:
            sys.stderr.write(f"scancel: error: Kill job error on job id {ref}: {exc}\n")
            failed = True
    sys.exit(1 if failed else 0)


COMMAND = SlurmCommand(PROG, cancel, [
    Opt("-s", "--signal", dest="signal", value=True, metavar="SIGNAL", help="Send this signal instead of cancelling."),
    Opt("--me", dest="me", help="My jobs."),
    Opt("-u", "--user", dest="user", value=True, help="This user's jobs."),
    Opt("-n", "--name", "--jobname", dest="names", value=True, help="Jobs with these names."),
    Opt("-t", "--state", dest="states", value=True, help="Jobs in these states (PD, R)."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Jobs in these partitions."),
    Opt("-M", "--clusters", "--cluster", dest="clusters", value=True, help="Accepted; there is one cluster, this melond's."),
], args=[Arg("ids", "*", complete="jobs")], table=tables.SCANCEL,
    ignored=frozenset({"ctld", "cron", "hurry", "sibling"}))
main = COMMAND.main
