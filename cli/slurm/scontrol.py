"""`scontrol`, the parts tools and users run: `update JobId=ID TimeLimit=...`, `hold`, `release`,
`requeue` (the same id runs again: submitit and PyTorch Lightning requeue themselves), `show job`,
`show config`, `show partition`, `show node`, `show hostnames`.

`update JobId=ID TimeLimit=+30` is the extension: Slurm lets only its administrators raise a
limit; here a job's owner may, within the partition's policy, as with `mextend`. `TimeLimit=TIME`
sets a new total. Silent on success and `scontrol: error: ...` with exit 1 otherwise, as Slurm.
"""
from __future__ import annotations

import os
import sys
import time

from melon_cli import jobchannel
from melon_cli.common import client, fmt_time, job_ids
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SLURM_VERSION, bad_option, version_text
from melond.errors import MelonError
from melond.spec.getopt import GetoptError, getopt_long, make_grammar
from melond.spec.gres import format_gres, parse_list, tres

PROG = "scontrol"
ACTIONS = {"hold": "hold", "uhold": "hold", "release": "release", "requeue": "requeue"}
USAGE = ("usage: scontrol [-o] update JobId=ID[,ID] TimeLimit=[+]TIME | update JobId=ID Priority=N | hold ID... | "
         "release ID... | requeue ID... | top ID... | show job [ID] | show config | show partition [NAME] | "
         "show node [NAME] | show hostnames LIST")
HELP = USAGE + """

Melon's scontrol: the parts of Slurm's that tools and users run, backed by melond. `update JobId=ID
TimeLimit=+TIME` adds time to a pending or running job, which its owner may do within the
partition's policy, as with mextend; `TimeLimit=TIME` sets a new total. hold and release act on
pending jobs, requeue runs a job again under the same id; top puts a pending job first among
your jobs of its partition, account and QOS; `Priority=N` is an operator's; show prints Slurm's
records (-o: one line each). Silent on success; an error reads `scontrol: error: ...` and exits 1.
"""


#: scontrol's option table (cli.slurm.tables), read by permuting getopt_long; -o is Melon's to act
#: on, REFUSED what it cannot do, and the rest change nothing here.
GRAMMAR = make_grammar(tables.SCONTROL, strict=True, same=tables.SAME)
REFUSED = frozenset({"uid", "autocomplete", "json", "yaml"})
#: The options it acts on (its manual page lists these; --help's usage line shows -o).
OWN_OPTIONS = {"oneliner": "Print each record of `show` on one line."}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        found, argv = getopt_long(argv, GRAMMAR, permute=True)
    except GetoptError as exc:
        bad_option(PROG, str(exc))
    one_line = False
    for name, _ in found:
        if name in ("help", "usage"):
            sys.stdout.write(HELP)
            return
        if name == "version":
            print(version_text(PROG))
            return
        if name in REFUSED:
            _fail(f"--{name} is not supported by Melon")
        one_line = one_line or name == "oneliner"
    if not argv:
        _fail(f"no command given; {USAGE}", code=2)
    command, args = argv[0].lower(), argv[1:]
    try:
        if command == "update":
            _update(args)
        elif command in ACTIONS:
            _act(command, args)
        elif command == "top":
            _top(args)
        elif command == "show" and args and args[0].lower() in ("config", "conf"):
            _show_config()
        elif command == "show" and args and args[0].lower() in ("partition", "partitions"):
            _show_partitions(args[1:], one_line)
        elif command == "show" and args and args[0].lower() in ("node", "nodes"):
            _show_nodes(args[1:], one_line)
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
    if set(pairs) == {"jobid", "priority"}:
        _set_priority(pairs["jobid"], pairs["priority"])
        return
    if "jobid" not in pairs or "timelimit" not in pairs or len(pairs) != 2:
        raise ValueError(f"this scontrol updates a job's time limit (JobId=ID TimeLimit=[+]TIME) or, for "
                         f"operators, its priority (JobId=ID Priority=N); {USAGE}")
    from melond.spec.timespec import parse_extension, parse_time_limit
    limit = pairs["timelimit"]
    if limit.startswith("-"):
        raise ValueError(f"TimeLimit={limit}: Melon extends limits; to shorten one give the new total, TimeLimit=TIME")
    body = {"add": parse_extension(limit)} if limit.startswith("+") else {"to": parse_time_limit(limit)}
    if jobchannel.usable(pairs["jobid"], None) and jobchannel.try_ask({"op": "extend", **body}) is not None:
        return  # inside the job, for itself: through its node
    c = _client()
    failed = False
    for ref in job_ids([pairs["jobid"]]):
        reply = c.call("POST", f"/jobs/{ref}/extend", body)
        for e in reply.get("errors", []):
            sys.stderr.write(f"{PROG}: error: {e['message']}\n")
            failed = True
    if failed:
        sys.exit(1)


def _set_priority(ref: str, value: str) -> None:
    if not value.isdigit():
        raise ValueError(f"Priority={value!r}: give a whole number, 0 or more")
    c = _client()
    for jid in job_ids([ref]):
        c.call("POST", f"/jobs/{jid}/priority", {"priority": int(value)})


def _top(args: list[str]) -> None:
    """scontrol top ID[,ID...]: each first among its owner's pending jobs of its partition, account and QOS."""
    if not args:
        raise ValueError(f"top needs job ids; {USAGE}")
    c = _client()
    for jid in job_ids(args):
        c.call("POST", f"/jobs/{jid}/top")


def _act(command: str, args: list[str]) -> None:
    """hold, release, requeue: each id (`13`, `13_4`, `13,14`), every one tried, exit 1 if one failed."""
    if not args:
        raise ValueError(f"{command} needs job ids; {USAGE}")
    if command == "requeue" and len(args) == 1 and jobchannel.is_own(args[0]):
        _requeue_self()
        return
    c = _client()
    failed = False
    for ref in job_ids(args):
        try:
            reply = c.call("POST", f"/jobs/{ref}/{ACTIONS[command]}")
        except MelonError as exc:
            sys.stderr.write(f"{PROG}: error: {exc}\n")
            failed = True
            continue
        for e in reply.get("errors", []):
            sys.stderr.write(f"{PROG}: error: {e['message']}\n")
            failed = True
    if failed:
        sys.exit(1)


def _requeue_self() -> None:
    """`scontrol requeue $SLURM_JOB_ID` inside that job (PyTorch Lightning, submitit): the
    requeue ends this very process, so the signals that end a job are held back until the
    answer is in, and the caller learns that its requeue worked. Through the node's job channel
    where there is one (a job on a cluster node has no token), else melond's API."""
    import signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                              signal.SIGUSR2, signal.SIGALRM})
    if jobchannel.usable(None, None) and jobchannel.try_ask({"op": "requeue"}) is not None:
        return
    _client().call("POST", f"/jobs/{jobchannel.own_job()}/requeue")


def _records(records: list[list[list[str]]], one_line: bool) -> None:
    """Slurm's Key=Value records: indented lines and a blank line after each, or one line each with -o."""
    for lines in records:
        if one_line:
            print(" ".join(field for line in lines for field in line))
        else:
            print("\n".join(("   " if i else "") + " ".join(line) for i, line in enumerate(lines)) + "\n")


def _show_config() -> None:
    """The settings tools read (snakemake: MinJobAge, MaxArraySize), each as `Key = value`."""
    from melon_cli.slurm.squeue import MIN_JOB_AGE
    c = _client()
    conf = c.call("GET", "/config")
    settings = [
        ("AccountingStorageType", "accounting_storage/melond"), ("ClusterName", conf["cluster_name"]),
        ("DefMemPerNode", "UNLIMITED"), ("InactiveLimit", "0 sec"), ("JobRequeue", "1"),
        ("KillWait", f"{conf['kill_wait']:g} sec"), ("LaunchParameters", conf.get("launch_parameters") or "(null)"),
        ("MaxArraySize", str(conf["max_array_tasks"] + 1)),
        ("MaxBatchRequeue", str(conf["max_batch_requeue"])), ("MaxTasksPerNode", str(conf["tasks_max"] or 512)),
        ("MinJobAge", f"{MIN_JOB_AGE} sec"), ("OverTimeLimit", "0 min"),
        ("ReturnToService", str(conf["return_to_service"])), ("SchedulerType", "sched/melon"),
        ("SelectType", "select/cons_tres"), ("SelectTypeParameters", "CR_CPU_MEMORY"),
        ("SlurmctldHost[0]", os.uname().nodename), ("SlurmdTimeout", f"{conf['node_timeout']:g} sec"),
        ("SLURM_VERSION", SLURM_VERSION), ("SlurmUser", "root(0)"),
    ]
    print(f"Configuration data as of {_time(time.time())}")
    for key, value in settings:
        print(f"{key:<23} = {value}")


def _show_partitions(args: list[str], one_line: bool) -> None:
    from melon_cli.acct_format import hms
    c = _client()
    parts = c.call("GET", "/partitions")["partitions"]
    nodes = {n["name"]: n for n in c.call("GET", "/nodes")["nodes"]}
    if args:
        parts = [p for p in parts if p["name"] == args[0]]
        if not parts:
            raise ValueError(f"Partition {args[0]} not found")

    def limit(seconds: int | None) -> str:
        return hms(seconds) if seconds else "UNLIMITED"

    def most(count: int | None) -> str:
        return str(count) if count is not None else "UNLIMITED"
    records = []
    for p in parts:
        members = [nodes[n] for n in p["nodes"] if n in nodes]
        up = any(m["state"] != "down" for m in members)
        records.append([
            [f"PartitionName={p['name']}"],
            ["AllowGroups=ALL", "AllowAccounts=ALL", "AllowQos=ALL"],
            ["AllocNodes=ALL", f"Default={'YES' if p['default'] else 'NO'}", "QoS=N/A"],
            [f"DefaultTime={hms(p['default_time']) if p.get('default_time') else 'NONE'}", "DisableRootJobs=NO",
             "ExclusiveUser=NO", "GraceTime=0", "Hidden=NO"],
            [f"MaxNodes={most(p.get('max_nodes'))}", f"MaxTime={limit(p.get('max_time'))}",
             f"MinNodes={p.get('min_nodes') or 0}", "LLN=NO", f"MaxCPUsPerNode={most(p.get('max_cpus_per_node'))}"],
            [f"MaxExtension={limit(p.get('max_extension'))}",
             f"MaxExtensions={most(p.get('max_extensions'))}"],
            [f"Nodes={_hostlist(p['nodes'])}"],
            ["PriorityJobFactor=1", "PriorityTier=1", "RootOnly=NO", "ReqResv=NO", "OverSubscribe=NO"],
            ["OverTimeLimit=NONE", "PreemptMode=OFF"],
            [f"State={'UP' if up else 'DOWN'}", f"TotalCPUs={sum(m['cpus'] for m in members)}",
             f"TotalNodes={len(members)}", "SelectTypeParameters=NONE"],
            ["JobDefaults=(null)"],
            ["DefMemPerNode=UNLIMITED", "MaxMemPerNode=UNLIMITED"],
        ])
    _records(records, one_line)


NODE_STATES = {"idle": "IDLE", "mixed": "MIXED", "allocated": "ALLOCATED", "draining": "MIXED+DRAIN",
               "drained": "IDLE+DRAIN", "down": "DOWN"}


def _show_nodes(args: list[str], one_line: bool) -> None:
    c = _client()
    nodes = c.call("GET", "/nodes")["nodes"]
    if args:
        from melond.spec.timespec import expand_hostlist
        wanted = set(expand_hostlist(args[0]))
        nodes = [n for n in nodes if n["name"] in wanted]
        if not nodes:
            raise ValueError(f"Node {args[0]} not found")
    records = []
    for n in nodes:
        lines = [
            [f"NodeName={n['name']}", "CoresPerSocket=1"],
            [f"CPUAlloc={n['cpus_used']}", f"CPUEfctv={n['cpus']}", f"CPUTot={n['cpus']}"],
            ["AvailableFeatures=(null)"], ["ActiveFeatures=(null)"], [f"Gres={n.get('gres') or '(null)'}"],
            [f"NodeAddr={n['name']}", f"NodeHostName={n['name']}"],
            [f"RealMemory={n['memory']}", f"AllocMem={n['memory_used']}", f"Sockets={n['cpus']}", "Boards=1"],
            [f"State={NODE_STATES.get(n['state'], n['state'].upper())}", "ThreadsPerCore=1", "TmpDisk=0",
             "Weight=1"],
            [f"Partitions={n['partition']}"],
            [f"CfgTRES=cpu={n['cpus']},mem={n['memory']}M,billing={n['cpus']}", *tres(n.get('gres'))],
            ["AllocTRES=" + (",".join([f"cpu={n['cpus_used']}", f"mem={n['memory_used']}M",
                                       *tres(n.get('gres_alloc'))]) if n['cpus_used'] else "")],
            [f"CgroupBackend={n['backend']}"],
        ]
        if n.get("gres"):
            lines.insert(5, [f"GresUsed={n.get('gres_used')}"])
        if n.get("reason"):
            lines.append([f"Reason={n['reason']}"])
        records.append(lines)
    _records(records, one_line)


def _hostlist(names: list[str]) -> str:
    return ",".join(names) if names else "(null)"  # a comma list is a hostlist Slurm's tools read


def _hostnames(args: list[str]) -> None:
    import os
    from melond.spec.timespec import expand_hostlist
    text = args[0] if args else os.environ.get("SLURM_JOB_NODELIST", "")
    if not text:
        raise ValueError("show hostnames needs a host list, or SLURM_JOB_NODELIST set")
    sys.stdout.write("".join(f"{name}\n" for name in expand_hostlist(text)))


def _time(epoch: float | None) -> str:
    return fmt_time(epoch, "Unknown")


def _show_jobs(args: list[str], one_line: bool) -> None:
    from melon_cli.acct_format import hms
    c = _client()
    if args:
        jobs = [c.call("GET", f"/jobs/{ref}") for ref in job_ids(args)]
    else:
        jobs = c.call("GET", "/jobs")["jobs"]
    if not jobs:
        print("No jobs in the system")
        return
    records = []
    for job in jobs:
        code = f"{job.get('exit_code') or 0}:{job.get('exit_signal') or 0}"
        records.append([
            [f"JobId={job['id']}", *([f"ArrayJobId={job['array_job_id']}", f"ArrayTaskId={job['array_task_id']}"]
                                     if job.get("array_task_id") is not None else []), f"JobName={job['name']}"],
            [f"UserId={job['user']}({job['uid']})"],
            [f"Priority={job.get('priority') or 0}", f"Account={job.get('account') or '(null)'}",
             f"QOS={(job.get('slurm_options') or {}).get('qos') or 'normal'}"],
            [f"JobState={job['state_name']}", f"Reason={job.get('reason') or 'None'}",
             f"Dependency={job.get('dependency') or '(null)'}"],
            [f"Requeue={int(bool(job.get('requeue')))}", f"Restarts={job.get('restarts') or 0}", "BatchFlag=1",
             "Reboot=0", f"ExitCode={code}"],
            [f"RunTime={hms(job['elapsed'])}",
             f"TimeLimit={hms(job['time_limit']) if job['time_limit'] else 'UNLIMITED'}"],
            [f"SubmitTime={_time(job['submit_time'])}"],
            [f"StartTime={_time(job.get('start_time'))}",
             f"EndTime={_time(job.get('end_time') or job.get('deadline'))}"],
            [f"Partition={job['partition']}"],
            [f"NodeList={job.get('node_list') or job.get('node') or '(null)'}",
             f"BatchHost={job.get('node') or '(null)'}"],
            [f"NumNodes={job.get('num_nodes', 1)}", f"NumCPUs={job['cpus']}", f"NumTasks={job.get('num_tasks', 1)}",
             f"CPUs/Task={job.get('cpus_per_task', job['cpus'])}"],
            [f"ReqTRES={_tres(job)}"],
            [f"AllocTRES={_tres(job)}"] if job.get("start_time") else [],
            [f"TresPerNode={format_gres(parse_list(job['gres']), 'gres/')}"] if job.get("gres") else [],
            [f"TresPerTask={format_gres(parse_list(job['gpus_per_task']), 'gres/')}"] if job.get("gpus_per_task") else [],
            [f"CPU_IDs={job['cpu_ids']}"] if job.get("cpu_ids") else [],
            [f"Comment={job['comment']}"] if job.get("comment") else [],
            # another user's paths are withheld (absent): Slurm's word for a value it does not have
            [f"WorkDir={job.get('chdir', '(null)')}"],
            [f"StdErr={job.get('error_path', '(null)')}"],
            [f"StdOut={job.get('output_path', '(null)')}"],
        ])
    _records([[line for line in record if line] for record in records], one_line)


def _tres(job: dict) -> str:
    """A job's trackable resources as scontrol prints them (mem through convert_num_unit: 1.50G)."""
    from melon_cli.units import MEGA, convert
    cpus = job["cpus"]
    return ",".join([f"cpu={cpus}", f"mem={convert(job['memory'] // (1024 * 1024), MEGA)}",
                     f"node={job.get('num_nodes', 1)}", f"billing={cpus}", *tres(job.get("gres_total"))])
