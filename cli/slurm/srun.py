"""`srun`: inside a job, the job's tasks; outside one, a job of its own whose output it streams.

Inside a job (submitit, snakemake's jobstep, Parsl's launchers and plain scripts run it there):
the command runs once per task (`-n`, one by default) with the step's variables set
(SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS, SLURM_STEP_ID, ...), its output where
`--output`/`--error` say, with `%j %J %t %s %N %n %u %x %A %a` expanded per task, labelled with
`-l`. srun exits with the highest task exit code and says which task failed, as Slurm's does.
melond numbers each srun's step (J.0, J.1, ...) through the job channel and hears how it ended,
so sacct lists it; `scancel J.S` signals that step alone.

Outside a job it submits the command (the job options `-c --mem -t -J -p -w -x -D ...` apply),
streams the job's output back while it runs, cancels it on Ctrl-C, and exits with its exit code.
The output passes through a file beside the working directory, so on a cluster it needs the
shared filesystem Slurm sites have.
"""
from __future__ import annotations

import _signal as signal  # the numbers and handlers without `signal`'s enums, which cost every step ~4 ms
import os
import sys

from melon_cli.slurm.argv import read_argv
from melond.errors import MelonError
from melond.spec.filenames import NO_VAL_TASK, fill
from melond.spec.slurm_options import GRES_OPTIONS, SLURM_PREFIX, SRUN_GRAMMAR
from melon_remote.marks import STEP_MARK

PROG = "srun"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGCONT, signal.SIGALRM)
#: srun options that shape the job srun submits outside an allocation (the same names sbatch's use).
JOB_OPTIONS = frozenset({"cpus-per-task", "mem", "mem-per-cpu", "time", "job-name", "chdir", "export", "nodelist",
                         "exclude", "partition", "begin", "dependency", "hold", "signal", "ntasks", "nodes",
                         "ntasks-per-node", "distribution"}) | GRES_OPTIONS
#: Task options an srun outside a job hands to the srun it runs inside it (which runs the job's
#: task count, SLURM_NTASKS, itself).
TASK_OPTIONS = frozenset({"label", "input", "open-mode"})
HELP = """Usage: srun [OPTIONS(0)... [executable(0) [args(0)...]]]

Melon's srun. Inside a job, a numbered step: -n/--ntasks, -N/--nodes, --ntasks-per-node, -c/--cpus-per-task,
--exact, --exclusive, --overlap, --cpu-bind, -w, -x, -r/--relative, -m/--distribution, -o/--output,
-e/--error, -i/--input, -l/--label, -u/--unbuffered, -D/--chdir, --open-mode, -K/--kill-on-bad-exit; a step
of several tasks is served PMI-1 for MPICH's ranks (--mpi=none: not).
Outside a job it submits the command with -c, --mem, --mem-per-cpu, --gres, -G/--gpus, --gpus-per-node,
--gpus-per-task, --cpus-per-gpu, --mem-per-gpu, -t, -J, -p, -w, -x, -D, --export, -b, -d, -H, --signal,
and streams its output. Every other srun option is accepted.
"""


def main(argv: list[str] | None = None) -> None:
    found, command = read_argv(PROG, SRUN_GRAMMAR, argv, HELP)
    # the last one wins, as in srun; a second spelling (--cpu_bind) under its option's name
    opts = {SRUN_GRAMMAR.longs.get(name, (0, name))[1]: value or "" for name, value in found}
    try:
        if not command:
            raise MelonError("No command given to execute.")
        if "multi-prog" in opts:
            raise MelonError("--multi-prog is not supported by Melon; run one srun per program")
        inside = "MELON_JOB_ID" in os.environ and "SLURM_JOB_ID" in os.environ
        if not inside:
            _check_shape(opts)
        if "pty" in opts:
            if not inside:
                sys.exit(run_pty(opts, command))
            code = pty_step(opts, command)
            if code is not None:
                sys.exit(code)
        sys.exit(run_tasks(opts, command) if inside else run_outside(opts, command))
    except MelonError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(1)


def _count(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise MelonError(f"Invalid --{what} argument: {text!r}; give a whole number, 1 or more")
    return int(text)


def _ntasks(opts: dict[str, str]) -> str:
    """-n, else the job's (or the step's) task count: srun reads SLURM_NTASKS, and before it
    SLURM_NPROCS, as its -n (env_vars[] in src/srun/opt.c); one task outside any."""
    if opts.get("ntasks"):
        return opts["ntasks"]
    return os.environ.get("SLURM_NTASKS") or os.environ.get("SLURM_NPROCS") or "1"


def _check_shape(opts: dict[str, str]) -> None:
    """The task count of the job srun submits outside an allocation (its nodes melond checks)."""
    _count(_ntasks(opts), "ntasks")


def _here() -> str:
    """This node, as the job names it; none in salloc's command on the login node (no task of
    the job runs there: srun starts them all through melond)."""
    from melon_cli import jobchannel
    if jobchannel.on_login_node():
        return ""
    return os.environ.get("SLURMD_NODENAME") or os.uname().nodename


def _allocation() -> tuple[list[str], list[int]]:
    """The job's nodes, as it names them, and its CPUs on each, from its environment."""
    env = os.environ
    here = _here()
    spans = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1) > 1
    if (spans or not here) and env.get("SLURM_JOB_NODELIST"):
        from melond.spec.shape import uncompressed
        from melond.spec.timespec import expand_hostlist
        hosts = expand_hostlist(env["SLURM_JOB_NODELIST"])
        cpus = uncompressed(env.get("SLURM_JOB_CPUS_PER_NODE") or "")
        if len(cpus) == len(hosts):
            return hosts, cpus
    return [here], [int(env.get("SLURM_CPUS_ON_NODE") or 1)]


def _step_layout(opts: dict[str, str], per_task: int):
    """The step's nodes and tasks within the job (melond.spec.steplayout), srun's -N and -n from
    the job's environment where not given, as Slurm's srun reads them (opt.c env_vars[])."""
    from melond.spec.shape import parse_nodes
    from melond.spec.steplayout import LayoutError, layout
    from melond.spec.timespec import SpecError, expand_hostlist
    env = os.environ
    try:
        hosts, cpus = _allocation()
        nodes = parse_nodes(opts.get("nodes") or env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or "1")
        relative = int(opts["relative"]) if opts.get("relative") else None
        return layout(hosts, cpus, nodes=nodes, ntasks=_count(_ntasks(opts), "ntasks"),
                      ntasks_per_node=_count(opts["ntasks-per-node"], "ntasks-per-node")
                      if opts.get("ntasks-per-node") else None, cpus_per_task=per_task,
                      nodelist=expand_hostlist(opts["nodelist"]) if opts.get("nodelist") else (),
                      exclude=expand_hostlist(opts["exclude"]) if opts.get("exclude") else (), relative=relative,
                      cyclic=(opts.get("distribution") or env.get("SLURM_DISTRIBUTION") or "").startswith("cyclic"))
    except (LayoutError, SpecError, ValueError) as exc:
        raise MelonError(str(exc)) from None


# ---------------------------------------------------------------- inside a job


def expand(pattern: str, env: dict[str, str], task: int, step: str = "0") -> str:
    """srun's file name patterns for one task; `%3t` pads with zeros, as Slurm does."""
    job = env.get("SLURM_JOB_ID", "0")
    values = {
        "j": job, "J": f"{job}.{step}", "s": step, "t": str(task), "n": "0", "N": env.get("SLURMD_NODENAME", ""),
        "u": env.get("SLURM_JOB_USER") or env.get("USER", ""), "x": env.get("SLURM_JOB_NAME", ""),
        "A": env.get("SLURM_ARRAY_JOB_ID", job), "a": env.get("SLURM_ARRAY_TASK_ID", NO_VAL_TASK), "%": "%",
    }
    return fill(pattern, values)


def _ask_step(request: dict) -> dict | None:
    """melond's answer through the job channel (`ok` false included), or None where there is none
    to ask (an older node helper, a job channel gone with its node): the step then runs
    unrecorded as step 0."""
    from melon_cli import jobchannel
    if not jobchannel.available():
        return None
    try:
        return jobchannel.exchange(request)
    except (OSError, ValueError, MelonError):
        return None


def _mode(opts: dict[str, str]) -> str:
    """How the step takes the job's CPUs (Slurm >= 21.08): --overlap shares them all; --exact, its
    in-job synonym --exclusive, or an explicit -c takes just ntasks x c; else all of them, so a
    second step waits for the first to end."""
    env = os.environ
    if "overlap" in opts or env.get("SLURM_OVERLAP"):
        if "exclusive" in opts or "exact" in opts:
            raise MelonError("--exclusive and --overlap are mutually exclusive")
        return "overlap"
    if "exact" in opts or "exclusive" in opts or opts.get("cpus-per-task") or env.get("SLURM_EXACT"):
        return "exact"
    return "whole"


def _create_step(request: dict, job: str) -> dict | None:
    """The step's number and CPUs; while running steps hold the CPUs it needs, wait as Slurm's
    srun waits, saying so once. None: no job channel (an unrecorded step 0)."""
    import time
    said = False
    while True:
        reply = _ask_step(request)
        if reply is None:
            return None
        if reply.get("ok"):
            if said:
                sys.stderr.write(f"{PROG}: Step created for StepId={job}.{reply['step_id']}\n")
            return reply
        code = reply.get("error", {}).get("code")
        if code == "too_many":
            raise MelonError(f"Unable to create step for job {job}: More processors requested than permitted")
        if code == "bad_request":
            raise MelonError(f"Unable to create step for job {job}: {reply['error'].get('message')}")
        if code != "busy":
            return None  # melond cannot number it now (lost the node, restarting): run it unrecorded
        if not said:
            sys.stderr.write(f"{PROG}: Job {job} step creation temporarily disabled, retrying (Requested nodes are "
                             f"busy)\n")
            said = True
        time.sleep(0.2)


def run_tasks(opts: dict[str, str], command: list[str]) -> int:
    """The step: numbered by melond (J.0, J.1, ...), one process per task, each told who it is and
    bound to its own CPUs; tasks on the job's other nodes started through melond, their output
    relayed here; the highest exit code wins, and melond hears how the step ended."""
    import resource
    per_task = _count(opts.get("cpus-per-task") or os.environ.get("SLURM_CPUS_PER_TASK") or "1", "cpus-per-task")
    placed = _step_layout(opts, per_task)
    for warning in placed.warnings:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")
    ntasks = placed.ntasks
    name = opts.get("job-name") or os.path.basename(command[0])
    job = os.environ.get("SLURM_JOB_ID", "0")
    here = _here()
    request = {"op": "step_start", "name": name[:200] or "srun", "ntasks": ntasks, "cpus": ntasks * per_task,
               "mode": _mode(opts)}
    if len(placed.nodes) > 1:
        from melond.spec.timespec import ranged_hostlist
        request["nodelist"] = ranged_hostlist(placed.nodes)
    if len(_allocation()[0]) > 1:  # a job spanning nodes: its steps hold CPUs on each of theirs
        request.update(layout={node: len(tasks) for node, tasks in zip(placed.nodes, placed.tasks)},
                       cpus_per_task=per_task)
    gpus = _step_gpus(opts, placed)
    if gpus:  # GPUs of the job's that the step holds, so that concurrent steps get different ones
        request["gpus"] = gpus
    numbered = _create_step(request, job)
    step = str(numbered["step_id"]) if numbered else "0"
    if numbered is None and placed.nodes != [here]:
        raise MelonError(f"Unable to create step for job {job}: melond did not answer through the job channel, "
                         f"and tasks on other nodes ({', '.join(n for n in placed.nodes if n != here)}) start "
                         f"only through it; try again")
    local = placed.tasks[placed.nodes.index(here)] if here in placed.nodes else []
    granted = {} if _unbound(opts) else (numbered or {}).get("node_cpu_ids") or \
        {here or placed.nodes[0]: (numbered or {}).get("cpu_ids")}
    bindings = {node: _binding(granted.get(node) or [], len(tasks), per_task)
                for node, tasks in zip(placed.nodes, placed.tasks)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, worst_signal = _run_step(opts, command, placed, here, step, bindings, (numbered or {}).get("gpus"))
    if numbered:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (used.ru_utime + used.ru_stime) - (before.ru_utime + before.ru_stime)
        _end_step({"op": "step_end", "step_id": numbered["step_id"], "exit_code": code if not worst_signal else 0,
                   "signal": worst_signal or None, "cpu_time": round(cpu, 3), "max_rss": used.ru_maxrss * 1024})
    return code


def _end_step(request: dict, wait: float = 15.0) -> None:
    """How the step ended, told to melond; while the job channel does not answer (melond
    restarting, its node's helper coming back), asked again for a while, as a step's record
    otherwise ends with its job as CANCELLED."""
    import time
    deadline = time.monotonic() + wait
    while _ask_step(request) is None and time.monotonic() < deadline:
        time.sleep(0.5)


def _unbound(opts: dict[str, str]) -> bool:
    """--cpu-bind=none (or SLURM_CPU_BIND): every task keeps all of the step's CPUs."""
    return "none" in (opts.get("cpu-bind") or os.environ.get("SLURM_CPU_BIND") or "").lower().split(",")


def _binding(ids: list[int], ntasks: int, per_task: int) -> list[list[int]]:
    """Each task's CPUs: its own `per_task` of the step's (Slurm's task/affinity binds tasks to
    cores), unless the step's CPUs are too few to give each its own (then all of them); none
    where the step has no CPU ids (the job is not pinned)."""
    if not ids:
        return []
    if len(ids) < ntasks * per_task:
        return [ids] * ntasks
    return [ids[i * per_task:(i + 1) * per_task] for i in range(ntasks)]


def _signal_name(number: int) -> str:
    """`Killed`, `Terminated`, `Segmentation fault`: strsignal's words, as srun's task lines give them."""
    return signal.strsignal(number) or f"Signal {number}"


def _set_affinity(ids) -> None:
    try:
        os.sched_setaffinity(0, ids)
    except OSError:  # CPUs this process may no longer use: the task keeps srun's
        pass


def _step_env(placed, step: str) -> dict[str, str]:
    """The variables every task of the step shares, wherever it runs."""
    from melond.spec.shape import compressed
    ntasks = placed.ntasks
    base = dict(os.environ)
    per_node = compressed([len(t) for t in placed.tasks])
    nodelist = placed.nodes[0]
    if len(placed.nodes) > 1:
        from melond.spec.timespec import ranged_hostlist
        nodelist = ranged_hostlist(placed.nodes)
    base.update({
        "SLURM_STEP_ID": step, "SLURM_STEPID": step, "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks),
        "SLURM_STEP_NUM_TASKS": str(ntasks), "SLURM_STEP_NUM_NODES": str(len(placed.nodes)),
        "SLURM_STEP_NODELIST": nodelist, "SLURM_STEP_TASKS_PER_NODE": per_node, "SLURM_TASKS_PER_NODE": per_node,
        STEP_MARK: f"{base.get('MELON_JOB_ID') or base.get('SLURM_JOB_ID', '0')}.{step}",  # its signals find it by this
    })
    return base


def _step_gpus(opts: dict[str, str], placed) -> dict[str, int] | None:
    """The GPUs a step asks for on each of its nodes (srun --gres=gpu:N, --gpus=N over its nodes,
    --gpus-per-task=N for each task there); None: it asks for none, and shares all the job's."""
    if not any(opts.get(k) for k in ("gres", "gpus", "gpus-per-task")):
        return None
    from melond.spec.gres import gpu_count, parse_gpus, parse_gres
    from melond.spec.timespec import SpecError
    try:
        if opts.get("gpus-per-task"):
            each = gpu_count(parse_gpus(opts["gpus-per-task"]))
            return {node: each * len(tasks) for node, tasks in zip(placed.nodes, placed.tasks)} if each else None
        if opts.get("gres"):
            count = gpu_count(parse_gres(opts["gres"]))
            return {node: count for node in placed.nodes} if count else None
        total = gpu_count(parse_gpus(opts["gpus"]))
    except SpecError as exc:
        raise MelonError(str(exc)) from None
    if total % len(placed.nodes):
        raise MelonError(f"--gpus={total} cannot be shared equally over the step's {len(placed.nodes)} nodes: give "
                         f"--gpus-per-task or --gres=gpu:N (on each node)")
    return {node: total // len(placed.nodes) for node in placed.nodes} if total else None


def _gpu_env(granted: dict[str, str] | None) -> dict[str, str]:
    """A step's own GPUs on a node (melond's grant) as its tasks' variables."""
    if not granted:
        return {}
    from melond.spec.gres import GPU_LISTS
    count = str(len(granted["indexes"].split(","))) if granted["indexes"] else "0"
    return {**dict.fromkeys(GPU_LISTS, granted["visible"]), "SLURM_STEP_GPUS": granted["indexes"],
            "SLURM_GPUS_ON_NODE": count}


def _run_step(opts: dict[str, str], command: list[str], placed, here: str, step: str,
              bindings: dict[str, list[list[int]]], gpus: dict[str, dict] | None = None) -> tuple[int, int]:
    """Run the tasks: (srun's exit code, the highest signal that ended a task, 0 for none);
    `bindings`: each node's tasks' CPUs, in local order (none: not bound); `gpus`: the step's
    own GPUs on each node, where it asked for some (none: the job's, shared)."""
    binding = bindings.get(here) or []
    base = _step_env(placed, step)
    base.pop("SLURM_STEP_GPUS", None)  # a step's own are set node by node
    gpus = gpus or {}
    ntasks = placed.ntasks
    index = placed.nodes.index(here) if here in placed.nodes else -1
    ranks = placed.tasks[index] if index >= 0 else []
    base.update({"SLURM_NODEID": str(max(index, 0)), "SLURM_GTIDS": ",".join(map(str, ranks))})
    if binding:  # the step's own CPUs here (--exact: its share of the job's)
        base["SLURM_CPUS_ON_NODE"] = str(len({c for ids in binding for c in ids}))
    if opts.get("cpus-per-task"):
        base["SLURM_CPUS_PER_TASK"] = str(_count(opts["cpus-per-task"], "cpus-per-task"))
    if opts.get("gpus-per-task"):  # each task its own share of the node's GPUs (melon_remote.holder.task_gpus)
        base["SLURM_GPUS_PER_TASK"] = opts["gpus-per-task"]
    append = (opts.get("open-mode") or base.get("SLURM_OPEN_MODE", "")).lower().startswith("a")
    label_width = len(str(ntasks - 1)) if "label" in opts else 0
    files: dict[str, int] = {}
    procs, pumps = [], []
    kill_on_bad_exit = "kill-on-bad-exit" in opts and opts["kill-on-bad-exit"] != "0"
    remote = pmi = None
    try:
        if _serves_pmi(opts, ntasks):
            pmi = _pmi(placed, here, step, base, lambda: _stop(procs, signal.SIGKILL, remote))
        if len(ranks) < ntasks:  # tasks on the job's other nodes: through melond, started first
            remote = _Remote(opts, command, placed, here, step, base, files, append, label_width, kill_on_bad_exit,
                             lambda: _stop(procs, signal.SIGKILL), pmi=pmi is not None, bindings=bindings, gpus=gpus)
        for local, task in enumerate(ranks):
            env = {**base, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(local), **_gpu_env(gpus.get(here))}
            if "SLURM_GPUS_PER_TASK" in env:  # imported only then: the holder costs srun ~10 ms to import
                from melon_remote.holder import task_gpus
                task_gpus(env, local)
            if pmi is not None:
                env["PMI_RANK"] = str(task)
            stdin = _input(opts.get("input"), env, task, files, step)
            out = _open(opts.get("output"), env, task, files, append, step)
            err = _open(opts.get("error"), env, task, files, append, step) if opts.get("error") else out
            out, err, task_pumps = _labelled(out, err, task, label_width)
            pumps += task_pumps
            own = os.sched_getaffinity(0)
            try:
                if binding:  # the child inherits this thread's affinity at fork: the task's own CPUs
                    _set_affinity(binding[local])
                procs.append(_Task(_spawn(command, env, stdin, out, err, opts.get("chdir") or None)))
            except OSError as exc:
                sys.stderr.write(f"slurmstepd: error: execve(): {command[0]}: {exc.strerror}\n"
                                 f"{PROG}: error: {here}: task {task}: Exited with exit code 2\n")
                _stop(procs, signal.SIGKILL)
                if remote is not None:
                    remote.signal(signal.SIGKILL)
                    remote.wait()
                return 2, 0
            finally:
                if binding:
                    _set_affinity(own)
                for fd in {out, err} - {None, *files.values()}:
                    if fd > 2:
                        os.close(fd)  # a pipe's write end: it belongs to the task alone now
        for sig in FORWARDED:
            signal.signal(sig, lambda signum, frame: _stop(procs, signum, remote))
        worst = worst_signal = 0
        by_rank = dict(enumerate(ranks))
        for local, code in _each_end(procs):
            task = by_rank[local]
            if code:
                how = f"Exited with exit code {code}" if code > 0 else _signal_name(-code)
                sys.stderr.write(f"{PROG}: error: {here}: task {task}: {how}\n")
                if kill_on_bad_exit:
                    _stop(procs, signal.SIGKILL, remote)
            worst = max(worst, code if code >= 0 else 128 - code)
            worst_signal = max(worst_signal, -code if code < 0 else 0)
        for pump in pumps:
            pump.join()
        if remote is not None:
            for code in remote.wait():
                worst = max(worst, code if code >= 0 else 128 - code)
                worst_signal = max(worst_signal, -code if code < 0 else 0)
        return worst, worst_signal
    finally:
        if pmi is not None:
            pmi.close()
        for fd in files.values():
            os.close(fd)


def _serves_pmi(opts: dict[str, str], ntasks: int) -> bool:
    """PMI-1 for every step of more than one task, unless --mpi=none (or SLURM_MPI_TYPE=none)
    says the tasks are not MPI ranks; a single task is an MPI singleton without it."""
    kind = (opts.get("mpi") or os.environ.get("SLURM_MPI_TYPE") or "").lower()
    serves = ntasks > 1 and kind != "none"
    if serves and (kind in ("pmi2", "pmix") or kind.startswith("pmix_")):
        sys.stderr.write(f"{PROG}: warning: --mpi={kind}: Melon's srun serves PMI-1 (\"simple\", as MPICH's "
                         f"library speaks it) and no {kind}; ranks that need {kind} start unconnected\n")
    return serves


def _pmi(placed, here: str, step: str, base: dict[str, str], kill_all):
    """The step's PMI-1 service, its variables set in `base` (PMI_RANK is each task's)."""
    from melon_cli.slurm.pmi_server import PmiServer

    def on_abort(code: int, message: str) -> None:
        sys.stderr.write(f"{PROG}: error: a task called MPI_Abort (exit code {code})"
                         f"{': ' + message if message else ''}; killing the step's tasks\n")
        kill_all()
    job = base.get("SLURM_JOB_ID", "0")
    server = PmiServer(placed.tasks, f"melon_{job}_{step}", on_abort)
    for inherited in ("PMI_FD", "PMI_ID", "PMI_SPAWNED", "PMI_RANK"):  # an outer launcher's, not this step's
        base.pop(inherited, None)
    base.update(server.env(here))
    return server


class _Remote:
    """The step's tasks on the job's other nodes: asked for through the job channel (melond starts
    them there), their output written here as if they ran here, their exits reported as srun
    reports its own tasks'."""

    def __init__(self, opts: dict[str, str], command: list[str], placed, here: str, step: str, base: dict,
                 files: dict[str, int], append: bool, label_width: int, kill_on_bad_exit: bool, kill_local,
                 pmi: bool = False, bindings: dict[str, list[list[int]]] | None = None,
                 gpus: dict[str, dict] | None = None) -> None:
        import threading
        self.opts, self.step, self.files, self.append, self.width = opts, step, files, append, label_width
        self.kill_on_bad_exit, self.kill_local = kill_on_bad_exit, kill_local
        self.base = base
        self.codes: dict[int, int] = {}
        self.waiting: dict[str, list[int]] = {}
        self.partial: dict[tuple[int, int], bytes] = {}
        self.targets: dict[tuple[int, int], int] = {}
        nodes = []
        for i, node in enumerate(placed.nodes):
            if node == here:
                continue
            ranks = placed.tasks[i]
            self.waiting[node] = list(ranks)
            for task in ranks:  # their files opened here, before any task writes, as the local tasks' are
                env = {**base, "SLURM_PROCID": str(task)}
                out = _open(opts.get("output"), env, task, files, append, step) or 1
                err = (_open(opts.get("error"), env, task, files, append, step) or 2) if opts.get("error") else \
                    (out if opts.get("output") else 2)
                self.targets[(task, 1)], self.targets[(task, 2)] = out, err
            nodes.append({"node": node, "env": {"SLURM_NODEID": str(i), "SLURM_GTIDS": ",".join(map(str, ranks)),
                                                **_gpu_env((gpus or {}).get(node))},
                          "tasks": [{"rank": t, "localid": local,
                                     **({"cpus": cpus[local]} if (cpus := (bindings or {}).get(node)) else {}),
                                     **({"env": {"PMI_RANK": str(t)}} if pmi else {})}
                                    for local, t in enumerate(ranks)]})
        env = {k: v for k, v in base.items() if k not in ("SLURM_NODEID", "SLURM_GTIDS")}
        self.request = {"op": "step_launch", "step_id": int(step), "argv": command,
                        "cwd": opts.get("chdir") or os.getcwd(), "env": env, "nodes": nodes}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from melon_cli import jobchannel
        answer = None
        try:
            for line in jobchannel.stream(self.request):
                if "ok" in line and "node" not in line:
                    answer = line
                    break
                self._line(line)
        except (OSError, ValueError, MelonError) as exc:
            answer = {"ok": False, "error": {"message": str(exc)}}
        if answer is None or not answer.get("ok"):
            why = (answer or {}).get("error", {}).get("message") or "the job channel closed (melond restarted, or " \
                                                                     "lost this node)"
            for node, ranks in self.waiting.items():
                if ranks:
                    sys.stderr.write(f"{PROG}: error: {node}: tasks {_ranks(ranks)}: lost contact with them: {why}; "
                                     f"they run on until the step or the job ends\n")
                    for task in ranks:
                        self.codes.setdefault(task, 1)
        self._flush()

    def _line(self, line: dict) -> None:
        import base64
        node = line.get("node", "?")
        if "data" in line:
            self._write(int(line["rank"]), int(line.get("fd", 1)), base64.b64decode(line["data"]))
        elif "exit" in line:
            task, code = int(line["rank"]), int(line["exit"])
            self.codes[task] = code
            if task in self.waiting.get(node, []):
                self.waiting[node].remove(task)
            if code:
                how = f"Exited with exit code {code}" if code > 0 else _signal_name(-code)
                sys.stderr.write(f"{PROG}: error: {node}: task {task}: {how}\n")
                if self.kill_on_bad_exit:
                    self.kill_local()
                    self.signal(signal.SIGKILL)
        elif "error" in line:
            sys.stderr.write(f"{PROG}: error: {line['error']}\n")
            for task in line.get("ranks") or []:
                self.codes[task] = 2
                if task in self.waiting.get(node, []):
                    self.waiting[node].remove(task)

    def _write(self, task: int, fd: int, data: bytes) -> None:
        target = self.targets.get((task, fd), fd)
        if self.width:
            prefix = f"{task:>{self.width}}: ".encode()
            lines = (self.partial.pop((task, fd), b"") + data).split(b"\n")
            rest = lines.pop()
            if rest:
                self.partial[(task, fd)] = rest
            data = b"".join(prefix + line + b"\n" for line in lines)
        if data:
            os.write(target, data)

    def _flush(self) -> None:
        for (task, fd), rest in list(self.partial.items()):
            os.write(self.targets.get((task, fd), fd), f"{task:>{self.width}}: ".encode() + rest + b"\n")
        self.partial.clear()

    def signal(self, signum: int) -> None:
        _ask_step({"op": "step_signal", "step_id": int(self.step), "signal": int(signum)})

    def wait(self) -> list[int]:
        self.thread.join()
        return list(self.codes.values())


def _ranks(ranks: list[int]) -> str:
    return f"{ranks[0]}-{ranks[-1]}" if len(ranks) > 1 and ranks == list(range(ranks[0], ranks[-1] + 1)) else \
        ",".join(map(str, ranks))


class _Task:
    """A task's process: its pid, and its exit code once reaped (negative: the signal that ended it)."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None


def _spawn(argv: list[str], env: dict[str, str], stdin: int | None, stdout: int | None, stderr: int | None,
           cwd: str | None) -> int:
    """fork and exec one task, its standard streams and directory set; an exec that fails is
    raised here, as subprocess would (whose import costs a step a tenth of its time: enum, re)."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the task
        try:
            os.close(report_r)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; an ignore survives exec
                signal.signal(sig, signal.SIG_DFL)
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                if fd is not None and fd != target:
                    os.dup2(fd, target)
            os.closerange(3, report_w)
            os.closerange(report_w + 1, 1 << 16)
            if cwd:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(report_w, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(report_w)
    try:
        failed = os.read(report_r, 32)
    finally:
        os.close(report_r)
    if failed:
        os.waitpid(pid, 0)
        errno = int(failed)
        raise OSError(errno, os.strerror(errno))
    return pid


def _each_end(procs: list):
    """(task, exit code) as each task ends, so that -K can end the others at the first failure."""
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    while by_pid:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in by_pid:
            task = by_pid.pop(pid)
            procs[task].returncode = os.waitstatus_to_exitcode(status)
            yield task, procs[task].returncode


def _stop(procs: list, signum: int, remote: _Remote | None = None) -> None:
    for proc in procs:
        if proc.returncode is None:
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass
    if remote is not None:
        remote.signal(signum)


def _open(pattern: str | None, env: dict[str, str], task: int, files: dict[str, int], append: bool,
          step: str = "0") -> int | None:
    """A task's output file (shared by the tasks whose pattern gives the same name), or None to
    inherit srun's own."""
    if not pattern:
        return None
    path = "/dev/null" if pattern.lower() == "none" else expand(pattern, env, task, step)
    if path not in files:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            files[path] = os.open(path, flags, 0o644)
        except OSError as exc:
            raise MelonError(f"cannot open {path} for task {task}'s output: {exc.strerror}") from None
    return files[path]


def _input(pattern: str | None, env: dict[str, str], task: int, files: dict[str, int], step: str = "0") -> int | None:
    """srun's standard input goes to task 0 (all of it, as `sh -s` needs); `-i FILE` to every task."""
    if pattern and pattern.lower() != "none":
        path = expand(pattern, env, task, step)
        try:
            files.setdefault("<" + path, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            raise MelonError(f"cannot open {path} for task {task}'s input: {exc.strerror}") from None
        return files["<" + path]
    if pattern or task > 0:
        if "<" + os.devnull not in files:
            files["<" + os.devnull] = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return files["<" + os.devnull]
    return None


def _labelled(out: int | None, err: int | None, task: int, width: int) -> tuple:
    """With -l, each line a task writes comes out as `0: line`; a thread per stream adds it."""
    if not width:
        return out, err, []
    pumps, ends = [], []
    for fd, inherited in ((out, 1), (err, 2)):
        read, write = os.pipe()
        prefix = f"{task:>{width}}: ".encode()
        import threading
        pump = threading.Thread(target=_pump, args=(read, inherited if fd is None else fd, prefix), daemon=True)
        pump.start()
        pumps.append(pump)
        ends.append(write)
    return ends[0], ends[1], pumps


def _pump(read: int, target: int, prefix: bytes) -> None:
    with os.fdopen(read, "rb", buffering=0) as src:
        pending = b""
        while chunk := src.read(65536):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if lines:
                os.write(target, b"".join(prefix + line + b"\n" for line in lines))
        if pending:
            os.write(target, prefix + pending + b"\n")


# ---------------------------------------------------------------- outside a job


def run_outside(opts: dict[str, str], command: list[str]) -> int:
    """Submit the command as a job and stay with it: its output here, its exit code ours."""
    import shlex
    import tempfile
    import time

    from melon_cli.mbatch import FINISHED_SHORT
    from melond.spec.request import build_request, current_umask

    cli = _job_cli(opts, command)
    cwd = os.getcwd()
    where = opts.get("chdir") or cwd
    try:
        spool = tempfile.mkdtemp(prefix=".srun-", dir=where)
    except OSError:
        spool = tempfile.mkdtemp(prefix="melon-srun-")
    out_path, err_path = os.path.join(spool, "out"), os.path.join(spool, "err")
    cli |= {"output": out_path, "error": err_path}
    inner = command
    shaped = any(opts.get(name) not in (None, "1") for name in ("ntasks", "nodes", "ntasks-per-node"))
    if shaped or any(name in opts for name in TASK_OPTIONS):  # srun itself runs the tasks in the job
        inner = ["srun", *(f"--{n}={opts[n]}" if opts[n] else f"--{n}" for n in TASK_OPTIONS if n in opts),
                 "--", *command]
    cli["wrap"] = "exec " + shlex.join(inner)
    request, _ = build_request(script_text=None, script_path=None, script_args=[], cli=cli, environ=os.environ,
                               cwd=cwd, submit_host=os.uname().nodename, user="", now=time.time(), sbatch=True,
                               umask=current_umask())
    from melon_cli.common import client
    c = client(os.environ.get("MELON_API") or None)
    try:
        try:
            jid = c.call("POST", "/jobs", request)["job_ids"][0]
        except MelonError as exc:
            raise MelonError(f"Unable to allocate resources: {exc}") from None
        return _follow(c, jid, out_path, err_path, "quiet" in opts, FINISHED_SHORT)
    finally:
        for path in (out_path, err_path):
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.rmdir(spool)
        except OSError:
            pass


def _job_cli(opts: dict[str, str], command: list[str]) -> dict[str, str | bool]:
    """The job srun asks for outside an allocation, by sbatch's option names."""
    cli: dict[str, str | bool] = {}
    for name, value in opts.items():
        if name in JOB_OPTIONS:
            cli[name] = True if name == "hold" else value
        elif name not in TASK_OPTIONS and name not in ("output", "error", "unbuffered", "quiet", "verbose", "pty"):
            cli[SLURM_PREFIX + name] = value
    cli.setdefault("job-name", os.path.basename(command[0]))
    return cli


def pty_step(opts: dict[str, str], command: list[str]) -> int | None:
    """`srun --pty CMD` inside an allocation: CMD on a terminal of its own on the step's first node
    (the job's first, or the one -w names), as a step of the job, in its cgroup; srun exits with
    its code. None where the job holds no terminal (a batch job): the step then runs as any other,
    on srun's own terminal."""
    from melon_cli import jobchannel
    from melon_cli.terminal import attach, attach_channel
    one = {"ntasks": "1", "nodes": "1"}  # a terminal is one task: on one node unless -n/-N say more
    placed = _step_layout({**one, **opts}, _count(opts.get("cpus-per-task") or "1", "cpus-per-task"))
    if placed.ntasks > 1:
        sys.stderr.write(f"{PROG}: warning: --pty runs one task, on {placed.nodes[0]}\n")
    node, cwd, job = placed.nodes[0], opts.get("chdir") or os.getcwd(), os.environ["SLURM_JOB_ID"]
    if jobchannel.on_login_node():
        code = attach(jobchannel.api(), int(job), command, cwd=cwd, final=False, prog=PROG, node=node)
    elif jobchannel.ENV in os.environ:
        env = {k: v for k, v in os.environ.items() if k != STEP_MARK}
        answer = attach_channel({"op": "step_pty", "argv": command, "cwd": cwd, "env": env, "node": node})
        if not answer.get("ok"):
            error = answer.get("error") or {}
            if error.get("code") == "not_interactive":
                sys.stderr.write(f"{PROG}: warning: --pty: {error.get('message')}\n")
                return None
            if error.get("code") == "unavailable":
                raise MelonError(f"lost the terminal on {node}: {error.get('message')}; what ran on it runs on until "
                                 f"job {job} ends (squeue -s -j {job} lists its steps, scancel J.S ends one)")
            raise MelonError(f"Unable to create step for job {job}: {error.get('message') or 'refused'}")
        code = answer.get("exit")
    else:
        return None
    if code is None:
        sys.stderr.write(f"{PROG}: error: {node}: the terminal's end was not heard; its step may run on\n")
        return 1
    if code < 0:
        sys.stderr.write(f"{PROG}: error: {node}: task 0: {_signal_name(-code)}\n")
        return 128 - code
    return code


def run_pty(opts: dict[str, str], command: list[str]) -> int:
    """`srun --pty CMD` outside a job: an interactive allocation, CMD on a terminal of its own on
    the allocation's first node, and the allocation's end with CMD's."""
    from melon_cli.slurm.interactive import allocate, session
    if int(_ntasks(opts)) > 1 or opts.get("nodes") not in (None, "1"):
        sys.stderr.write(f"{PROG}: warning: --pty runs one task, on the allocation's first node; the others are "
                         f"held for srun inside it\n")
    c, job = allocate(PROG, _job_cli(opts, command), announce=False)
    return session(PROG, c, job, command, opts.get("chdir") or os.getcwd())


def _follow(c, jid: int, out_path: str, err_path: str, quiet: bool, finished: set[str]) -> int:
    """Copy the job's output as it grows until the job ends; Ctrl-C (or TERM) cancels it."""
    import time
    import threading
    cancel = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        cancel.set()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    streams = [[out_path, 0, sys.stdout.buffer], [err_path, 0, sys.stderr.buffer]]
    said_queued = cancelled = False
    started = time.monotonic()
    while True:
        job = c.call("GET", f"/jobs/{jid}")
        _copy(streams)
        if job["state"] in finished:
            break
        if cancel.is_set() and not cancelled:
            cancelled = True
            sys.stderr.write(f"{PROG}: forcing job termination\n")
            try:
                c.call("POST", f"/jobs/{jid}/cancel")
            except MelonError:
                pass
        if job["state"] == "PD" and not said_queued and not quiet and time.monotonic() - started > 1:
            said_queued = True
            sys.stderr.write(f"{PROG}: job {jid} queued and waiting for resources\n")
        elif job["state"] == "R" and said_queued:
            said_queued = False
            sys.stderr.write(f"{PROG}: job {jid} has been allocated resources\n")
        time.sleep(0.1)
    _copy(streams)
    code, sig = job.get("exit_code"), job.get("exit_signal")
    if sig:
        sys.stderr.write(f"{PROG}: error: {job.get('node') or '?'}: task 0: "
                         f"{_signal_name(sig)}\n")
        return 128 + sig
    if code:
        sys.stderr.write(f"{PROG}: error: {job.get('node') or '?'}: task 0: Exited with exit code {code}\n")
        return code
    return 0 if job["state"] == "CD" else 1


def _copy(streams: list[list]) -> None:
    """Whatever each file gained since the last look."""
    for stream in streams:
        path, offset, target = stream
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            continue
        if data:
            target.write(data)
            target.flush()
            stream[1] = offset + len(data)
