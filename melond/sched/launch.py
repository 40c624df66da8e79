"""From a stored job to the node's start request: environment, file names, signals.

Pure functions: the node helper receives everything ready to exec.
"""
from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Mapping

import melon_remote

from melond.errors import BadRequest
from melond.spec.cpulist import parse_cpuset
from melond.spec.filenames import NO_VAL_TASK, fill
from melond.spec.gres import GPU_LISTS, Device, visible
from melond.spec.jobrel import parse_array
from melond.spec.shape import compressed
from melond.spec.timespec import SpecError, ranged_hostlist, signal_spec
from melond.state.job import MIB, Job
from melon_remote.protocol import DEFAULT_UMASK, STEP_MARK

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def job_file(job: Job, stream: str, node: str) -> str:
    """The path of a job's output (`stream` "output") or error file as its node opens it: the
    pattern filled in, under the job's directory; without --error, errors go to the output file."""
    pattern = job.error if stream == "error" and job.error else job.output
    return os.path.join(job.chdir, expand_pattern(pattern, job, node))


def expand_pattern(text: str, job: Job, node: str) -> str:
    """A batch script's file names: Slurm's patterns for the job's batch step (%t 0, %s batch)."""
    return fill(text, {
        "j": str(job.id), "J": str(job.id), "x": job.name, "u": job.user, "N": node,
        "A": str(job.array_job_id or job.id),
        "a": str(job.array_task_id) if job.array_task_id is not None else NO_VAL_TASK,
        "n": "0", "t": "0", "s": "batch", "%": "%",
    })


def parse_signal(text: str) -> tuple[int, int, str]:
    """sbatch --signal=[{R|B}:]SIG[@TIME]: (signal number, seconds before the deadline, SignalTo)."""
    try:
        return signal_spec(text)
    except SpecError as exc:
        raise BadRequest(f"--signal={text}: {exc}") from None


def job_environment(job: Job, node: str, home: str | None = None, hosts: Mapping[str, str] | None = None,
                    index: int = 0) -> dict[str, str]:
    """The job's environment on its `index`th node: what was exported, plus MELON_* and the
    SLURM_* twins Slurm scripts read. `node`: that node's name as the job sees it; `hosts`: every
    node's (Inventory.job_host_names), for a job spanning nodes."""
    env = {str(k): str(v) for k, v in job.environment.items()}
    env.pop(STEP_MARK, None)  # submitted from another job's step: this job's batch shell is no step
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("USER", job.user)
    env.setdefault("LOGNAME", job.user)
    if home:
        env.setdefault("HOME", home)
    mem_mib = str(job.memory_mib)
    shape = job.shape
    pairs = {
        "JOB_ID": str(job.id), "JOB_NAME": job.name, "CPUS_PER_TASK": str(shape.cpus_per_task),
        "MEM_PER_NODE": mem_mib, "SUBMIT_DIR": job.submit_dir or job.chdir,
        "SUBMIT_HOST": job.submit_host or "", "NODENAME": node, "JOB_PARTITION": job.partition,
        "RESTART_COUNT": str(job.restarts), "JOB_USER": job.user, "JOB_UID": str(job.uid),
    }
    if job.array_task_id is not None:
        pairs["ARRAY_TASK_ID"] = str(job.array_task_id)
        pairs["ARRAY_JOB_ID"] = str(job.array_job_id)
        if job.array_spec:
            low, high, count, step = array_range(job.array_spec)
            pairs |= {"ARRAY_TASK_MIN": str(low), "ARRAY_TASK_MAX": str(high), "ARRAY_TASK_COUNT": str(count),
                      "ARRAY_TASK_STEP": str(step)}
    for key, value in pairs.items():
        env[f"MELON_{key}"] = value
        env[f"SLURM_{key}"] = value
    tasks = str(shape.ntasks)
    nodelist, count, per_node_tasks, per_node_cpus, here = node, "1", tasks, str(job.cpus), job.cpus
    if job.spans:
        parts = job.placed
        names = [(hosts or {}).get(p.node, p.node) for p in parts]
        nodelist, count = ranged_hostlist(names), str(len(parts))
        per_node_tasks = compressed([p.tasks for p in parts])
        per_node_cpus = compressed([p.cpus for p in parts])
        here = parts[index].cpus
        env["SLURM_MEM_PER_NODE"] = env["MELON_MEM_PER_NODE"] = str(parts[index].memory)
    env.update({
        "SLURM_JOBID": str(job.id), "SLURMD_NODENAME": node, "SLURM_JOB_NODELIST": nodelist,
        "SLURM_NNODES": count, "SLURM_JOB_NUM_NODES": count, "SLURM_NTASKS": tasks, "SLURM_NPROCS": tasks,
        "SLURM_CPUS_ON_NODE": str(here), "SLURM_JOB_CPUS_PER_NODE": per_node_cpus,
        "SLURM_CLUSTER_NAME": "melon", "SLURM_NODELIST": nodelist, "SLURM_TASKS_PER_NODE": per_node_tasks,
        "SLURM_NTASKS_PER_NODE": str(shape.ntasks_per_node) if job.spans and shape.ntasks_per_node else per_node_tasks,
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": str(index),
        "SLURM_JOB_QOS": job.qos,
    })
    env["SLURM_UMASK"] = env["MELON_UMASK"] = f"{job_umask(job):04o}"
    if shape.distribution:
        env["SLURM_DISTRIBUTION"] = shape.distribution
    if job.account:
        env["SLURM_JOB_ACCOUNT"] = job.account
    if _append(job):
        env["SLURM_OPEN_MODE"] = "a"
    return env


@functools.cache
def holder_script() -> str:
    """The script of a spanning job's run on its further nodes, and of an interactive job's on
    every node (remote/holder.py, as shipped)."""
    path = pathlib.Path(melon_remote.__file__).parent / "holder.py"
    return "#!/usr/bin/env python3\n" + path.read_text()


def job_umask(job: Job) -> int:
    return DEFAULT_UMASK if job.umask is None else job.umask


def _append(job: Job) -> bool:
    """Output appended to, not truncated: sbatch --open-mode=append (a requeued job's next run
    truncates its files otherwise, as in Slurm with its default JobFileAppend=0)."""
    return (job.slurm_options.get("open-mode") or "").lower().startswith("a")


@functools.lru_cache(maxsize=64)
def array_range(spec: str) -> tuple[int, int, int, int]:
    """An array's lowest and highest task id, its size and its step (1 unless evenly spaced),
    as SLURM_ARRAY_TASK_MIN/MAX/COUNT/STEP give them; cached, as every task of an array asks."""
    tasks, _ = parse_array(spec, max_tasks=1 << 31)
    gaps = {b - a for a, b in zip(tasks, tasks[1:])}
    return tasks[0], tasks[-1], len(tasks), gaps.pop() if len(gaps) == 1 else 1


def gres_environment(job: Job, mine: list[Device], local: bool) -> dict[str, str | None]:
    """The GPU variables of a job's part on a node with GPUs, as Slurm sets them: the device
    lists CUDA, ROCm and OpenCL read, numbered from 0 where the job's cgroup shows it only its
    own (Slurm's ConstrainDevices) and by the node's indexes where it does not; SLURM_JOB_GPUS
    always by the node's. None: a variable the job must not inherit from its submitter (a job
    without GPUs sees none)."""
    gpus = [d for d in mine if d.name == "gpu"]
    listed = visible(gpus, gpus, local)
    env: dict[str, str | None] = {name: listed or None for name in GPU_LISTS}
    if gpus:
        env |= {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "SLURM_JOB_GPUS": ",".join(str(d.index) for d in gpus),
                "SLURM_GPUS_ON_NODE": str(len(gpus))}
        if job.gpus_per_task:
            env["SLURM_GPUS_PER_TASK"] = job.gpus_per_task.removeprefix("gpu:")
    return env


def start_request(job: Job, node: str, *, kill_wait: float, tasks_max: int, home: str | None = None,
                  hosts: Mapping[str, str] | None = None, devices: tuple[Device, ...] = (),
                  local_devices: bool = True) -> dict:
    """Everything `node` needs to start its part of the job (on a further node of a job spanning
    several, the holder that srun's tasks start from there); the limit travels as a total, the
    node adds its own start time. `hosts`: nodes' names in the job's environment, where not
    their own (file names keep the node's %N). `devices`: the node's, of which the job's part
    holds some; `local_devices`: the node shows a job only its own (its cgroup enforces them)."""
    host = (hosts or {}).get(node, node)
    index = job.nodes.index(node) if job.spans else 0
    part = job.placed[index] if job.spans else None
    held = index > 0 or job.interactive  # a holder: srun's tasks (and a terminal's) start from it
    env = job_environment(job, host, home, hosts, index)
    extra = {}
    if devices:
        positions = set(parse_cpuset(part.gres_ids if part else job.gres_ids))
        mine = [d for i, d in enumerate(devices) if i in positions]
        for name, value in gres_environment(job, mine, local_devices).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if any(d.file for d in devices):  # its cgroup lets it open its own device files, not the others
            extra["devices"] = {"own": [d.file for d in mine if d.file],
                                "others": [d.file for i, d in enumerate(devices) if d.file and i not in positions]}
    return extra | {
        "id": job.id, "run": job.restarts, "user": job.user,
        "script": holder_script() if held else job.script, "args": [] if held else job.script_args,
        "env": env, "cwd": job.chdir,
        "output": os.devnull if held else expand_pattern(job.output, job, node),
        "error": None if held or not job.error else expand_pattern(job.error, job, node),
        "cpus": part.cpus if part else job.cpus,
        "cpu_ids": parse_cpuset(part.cpu_ids if part else job.cpu_ids) or None,
        "memory": part.memory * MIB if part else job.memory,
        "limit": job.time_limit, "kill_wait": kill_wait,
        "tasks_max": tasks_max, "signal": list(parse_signal(job.signal)) if job.signal else None,
        "open_mode": "append" if _append(job) else None, "umask": job_umask(job),
    }
