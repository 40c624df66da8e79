"""`mbatch`: submit a batch script, as sbatch does."""
from __future__ import annotations

import os
import sys
import time

from melon_cli.args import Arg, Command, Opt
from melon_cli.common import client, current_user, echo, print_json, warn
from melond.errors import MelonError, ParseError

PROG = "mbatch"
FINISHED_SHORT = {"CD", "F", "TO", "CA", "OOM", "NF", "PR"}  # states.FINISHED's codes, without importing enum

# (flags, canonical option name as melond.directives knows it, is_flag, help)
OPTIONS = [
    (("-c", "--cpus-per-task"), "cpus-per-task", False, "CPUs for each task (the job's CPUs: this times its tasks)."),
    (("-n", "--ntasks"), "ntasks", False, "Tasks (srun in the job runs this many); the job gets CPUs for each."),
    (("-N", "--nodes"), "nodes", False, "Nodes: N or MIN-MAX (a job runs on one node)."),
    (("--ntasks-per-node",), "ntasks-per-node", False, "Tasks on each node (with -n: at most this many)."),
    (("--exclusive",), "exclusive", True, "A whole node: every CPU and, without --mem, all memory."),
    (("--distribution",), "distribution", False, "How srun lays tasks out: block, cyclic, plane=N, arbitrary."),
    (("--gres",), "gres", False, "Generic resources on each node: gpu:2, gpu:a100:1, license_x:1 (comma-separated)."),
    (("-G", "--gpus"), "gpus", False, "GPUs for the whole job: N or type:N (one node: all there; else per task or node)."),
    (("--gpus-per-node",), "gpus-per-node", False, "GPUs on each node: N or type:N."),
    (("--gpus-per-task",), "gpus-per-task", False, "GPUs for each task: N or type:N (srun binds each task to its own)."),
    (("--cpus-per-gpu",), "cpus-per-gpu", False, "CPUs for each GPU (sets the tasks' CPUs)."),
    (("--mem-per-gpu",), "mem-per-gpu", False, "Memory for each GPU: 500 (MiB), 16G."),
    (("-m", "--mem"), "mem", False, "Memory for the job: 500 (MiB), 4G, 1T. 0 = a whole node."),
    (("--mem-per-cpu",), "mem-per-cpu", False, "Memory per CPU; the job gets this times its CPUs."),
    (("-t", "--time"), "time", False, "Time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; 0/UNLIMITED = none."),
    (("--time-max",), "time-max", False, "Elastic: melond extends the job up to this while that delays no waiting job."),
    (("--extend-auto",), "extend-auto", False, "Elastic: each automatic step (default: the --time limit)."),
    (("-J", "--job-name"), "job-name", False, "Job name (default: the script's file name)."),
    (("-o", "--output"), "output", False, "Output file pattern (default melon-%j.out; %j %x %u %N %A %a %%)."),
    (("-e", "--error"), "error", False, "Error file pattern (default: joined with output)."),
    (("-D", "--chdir"), "chdir", False, "Working directory (default: here)."),
    (("--export",), "export", False, "ALL (default), NONE, or [ALL,]VAR=val,..."),
    (("-w", "--nodelist"), "nodelist", False, "Run on one of these nodes."),
    (("-x", "--exclude"), "exclude", False, "Never run on these nodes."),
    (("-p", "--partition"), "partition", False, "Partition (queue)."),
    (("--wrap",), "wrap", False, "Run this command line (as #!/bin/sh) instead of a script."),
    (("-b", "--begin"), "begin", False, "Start no earlier than: now+1hour, 16:00, 2026-12-01T08:00, tomorrow."),
    (("-H", "--hold"), "hold", True, "Submit held (JobHeldUser)."),
    (("-d", "--dependency"), "dependency", False, "afterok:ID[:ID], afterany:ID, after:ID, afternotok:ID, singleton."),
    (("--array",), "array", False, "Array task ids: 0-15, 1,3,5, 0-15:4, 1-100%10."),
    (("--requeue",), "requeue", True, "Requeue the job if its node fails."),
    (("--no-requeue",), "no-requeue", True, "Never requeue."),
    (("--signal",), "signal", False, "[R:|B:]SIG[@SECONDS]: send SIG this long before the time limit."),
    (("--mail-type",), "mail-type", False, "Notices: BEGIN,END,FAIL,REQUEUE,TIME_LIMIT,TIME_LIMIT_50/80/90, ALL, NONE."),
    (("--mail-user",), "mail-user", False, "Whom the notices name (the site's notifier delivers them)."),
    (("-A", "--account"), "account", False, "The account (project) to charge: one of yours (sacctmgr show user)."),
    (("-q", "--qos"), "qos", False, "The quality of service: its priority, limits and preemption (sacctmgr show qos)."),
    (("--nice",), "nice", False, "Lower the job's priority by N (sprio shows it)."),
]
#: Options melond reads from the job's Slurm options, as sbatch's: mbatch records them so too.
AS_SLURM = ("account", "qos", "nice")


def submit(script: str | None, args: tuple[str, ...], parsable: bool, wait: bool, dry_run: bool, as_json: bool,
           endpoint: str | None, **opts) -> None:
    """Submit SCRIPT [ARGS...] as a batch job.

    Options come from the command line, then SBATCH_*/MBATCH_* environment variables, then
    `#MBATCH` and `#SBATCH` lines at the top of the script, in that order of precedence.

        mbatch -t 10:00 -c 2 --mem 4G job.sh input.dat
    """
    from melond.spec.request import build_request, client_options, current_umask, dry_run_view
    from melond.spec.slurm_options import SLURM_PREFIX

    cli = {k[4:].replace("_", "-"): v for k, v in opts.items() if v not in (None, False)}
    cli |= {SLURM_PREFIX + name: cli.pop(name) for name in AS_SLURM if name in cli}
    script_text = None
    if script is not None:
        if "wrap" in cli:
            raise ParseError("give either a script or --wrap, not both")
        script_text = _read_script(script)
    elif "wrap" not in cli:
        raise ParseError("no script given: `mbatch [options] script [args...]` or `mbatch --wrap CMD`")
    user = current_user()
    request, warnings = build_request(
        script_text=script_text, script_path=os.path.abspath(script) if script else None, script_args=list(args),
        cli=cli, environ=os.environ, cwd=os.getcwd(), submit_host=os.uname().nodename, user=user, now=time.time(),
        umask=current_umask())
    script_flags = client_options(script_text)  # `#SBATCH --parsable`, `--wait`: honoured as sbatch does
    parsable, wait = parsable or "parsable" in script_flags, wait or "wait" in script_flags
    if dry_run:
        view = dry_run_view(request, warnings)
        if as_json:
            print_json(view)
        else:
            for key, value in view.items():
                echo(f"{key}: {value}")
        return
    for w in warnings:
        warn(PROG, w)
    c = client(endpoint)
    reply = c.call("POST", "/jobs", request)
    for w in reply.get("warnings", []):
        warn(PROG, w)
    first = reply["job_ids"][0]
    echo(str(first) if parsable else f"Submitted batch job {first}")
    if wait:
        sys.exit(_wait(c, reply["job_ids"]))


def _read_script(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MelonError(f"script {path!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise MelonError(f"script {path!r} is a directory, not a script file") from None
    except OSError as exc:
        raise MelonError(f"cannot read script {path!r}: {exc.strerror}; check its permissions") from None
    return data.decode("utf-8", "surrogateescape")


def _wait(c, ids: list[int]) -> int:
    """Like sbatch --wait: block until every job ended; the highest exit code wins."""
    worst = 0
    for jid in ids:
        while True:
            job = c.call("GET", f"/jobs/{jid}", query={"wait": 60}, timeout=90)
            if job["state"] in FINISHED_SHORT:
                break
        code = job.get("exit_code")
        if code is None:
            code = 128 + job["exit_signal"] if job.get("exit_signal") else (0 if job["state"] == "CD" else 1)
        worst = max(worst, code)
    return worst


COMMAND = Command(PROG, submit, [
    *(Opt(*flags, dest="opt_" + key.replace("-", "_"), value=not is_flag, help=help_text)
      for flags, key, is_flag, help_text in OPTIONS),
    Opt("--parsable", dest="parsable", help="Print only the job id."),
    Opt("-W", "--wait", dest="wait", help="Wait for the job to end; exit with its exit code."),
    Opt("--dry-run", dest="dry_run", help="Parse and check, submit nothing."),
    Opt("--json", dest="as_json", help="With --dry-run: print the parsed request as JSON."),
], args=[Arg("script", "?", complete="file"), Arg("args", "*", complete="file")], interspersed=False)
main = COMMAND.main
