"""`scontrol`, the parts tools and users run: `update JobId=ID TimeLimit=...`, `hold`, `release`,
`show hostnames`, `show job`.

`update JobId=ID TimeLimit=+30` is the extension: Slurm lets only its administrators raise a
limit; here a job's owner may, within the partition's policy, as with `mextend`. `TimeLimit=TIME`
sets a new total. Silent on success and `scontrol: error: ...` with exit 1 otherwise, as Slurm.
"""
from __future__ import annotations

import sys
import time

from cli.common import client, job_ids
from melond.errors import MelonError

PROG = "scontrol"
USAGE = ("usage: scontrol [-o] update JobId=ID[,ID] TimeLimit=[+]TIME | hold ID... | release ID... | "
         "show job [ID] | show hostnames LIST")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    one_line = False
    while argv and argv[0].startswith("-"):
        flag = argv.pop(0)
        if flag in ("-o", "--oneliner"):
            one_line = True
        elif flag in ("-h", "--help", "--usage"):
            print(USAGE)
            return
        elif flag in ("-Q", "--quiet", "-d", "--details") or flag.startswith(("-M", "--clusters")):
            continue
        else:
            _fail(f"invalid option '{flag}'; {USAGE}", code=2)
    if not argv:
        _fail(f"no command given; {USAGE}", code=2)
    command, args = argv[0].lower(), argv[1:]
    try:
        if command == "update":
            _update(args)
        elif command in ("hold", "release", "uhold"):
            _hold(command, args)
        elif command == "show" and args and args[0].lower() in ("hostnames", "hostname"):
            _hostnames(args[1:])
        elif command == "show" and args and args[0].lower() in ("job", "jobs"):
            _show_jobs(args[1:], one_line)
        else:
            _fail(f"{' '.join(argv)!r} is not something this scontrol does; {USAGE}")
    except (MelonError, ValueError) as exc:
        _fail(str(exc))


def _client():
    import os
    return client(os.environ.get("MELON_API") or None)


def _fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(code)


def _update(args: list[str]) -> None:
    pairs = {}
    for word in args:
        key, eq, value = word.partition("=")
        if not eq:
            raise ValueError(f"{word!r} is not KEY=VALUE; {USAGE}")
        pairs[key.lower()] = value
    if "jobid" not in pairs or "timelimit" not in pairs or len(pairs) != 2:
        raise ValueError(f"this scontrol updates a job's time limit only: JobId=ID TimeLimit=[+]TIME; {USAGE}")
    from melond.spec.timespec import parse_extension, parse_time_limit
    limit = pairs["timelimit"]
    if limit.startswith("-"):
        raise ValueError(f"TimeLimit={limit}: Melon extends limits; to shorten one give the new total, TimeLimit=TIME")
    body = {"add": parse_extension(limit)} if limit.startswith("+") else {"to": parse_time_limit(limit)}
    c = _client()
    failed = False
    for ref in job_ids([pairs["jobid"]]):
        reply = c.call("POST", f"/jobs/{ref}/extend", body)
        for e in reply.get("errors", []):
            sys.stderr.write(f"{PROG}: error: {e['message']}\n")
            failed = True
    if failed:
        sys.exit(1)


def _hold(command: str, args: list[str]) -> None:
    if not args:
        raise ValueError(f"{command} needs job ids; {USAGE}")
    c = _client()
    action = "hold" if command in ("hold", "uhold") else "release"
    for ref in job_ids(args):
        c.call("POST", f"/jobs/{ref}/{action}")


def _hostnames(args: list[str]) -> None:
    import os
    from melond.spec.timespec import expand_hostlist
    text = args[0] if args else os.environ.get("SLURM_JOB_NODELIST", "")
    if not text:
        raise ValueError("show hostnames needs a host list, or SLURM_JOB_NODELIST set")
    sys.stdout.write("".join(f"{name}\n" for name in expand_hostlist(text)))


def _time(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch)) if epoch else "Unknown"


def _show_jobs(args: list[str], one_line: bool) -> None:
    from cli.acct_format import hms
    c = _client()
    if args:
        jobs = [c.call("GET", f"/jobs/{ref}") for ref in job_ids(args)]
    else:
        jobs = c.call("GET", "/jobs")["jobs"]
    if not jobs:
        print("No jobs in the system")
        return
    for job in jobs:
        code = f"{job.get('exit_code') or 0}:{job.get('exit_signal') or 0}"
        lines = [
            [f"JobId={job['id']}", *([f"ArrayJobId={job['array_job_id']}", f"ArrayTaskId={job['array_task_id']}"]
                                     if job.get("array_task_id") is not None else []), f"JobName={job['name']}"],
            [f"UserId={job['user']}({job['uid']})"],
            [f"JobState={job['state_name']}", f"Reason={job.get('reason') or 'None'}"],
            [f"ExitCode={code}"],
            [f"RunTime={hms(job['elapsed'])}",
             f"TimeLimit={hms(job['time_limit']) if job['time_limit'] else 'UNLIMITED'}"],
            [f"SubmitTime={_time(job['submit_time'])}"],
            [f"StartTime={_time(job.get('start_time'))}",
             f"EndTime={_time(job.get('end_time') or job.get('deadline'))}"],
            [f"Partition={job['partition']}"],
            [f"NodeList={job.get('node') or '(null)'}", f"BatchHost={job.get('node') or '(null)'}"],
            ["NumNodes=1", f"NumCPUs={job['cpus']}", "NumTasks=1", f"CPUs/Task={job['cpus']}"],
            [f"WorkDir={job['chdir']}"],
            [f"StdErr={job['error_path']}"],
            [f"StdOut={job['output_path']}"],
        ]
        if one_line:
            print(" ".join(field for line in lines for field in line))
        else:
            print("\n".join(("   " if i else "") + " ".join(line) for i, line in enumerate(lines)) + "\n")
