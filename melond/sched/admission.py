"""Admission of a submission: partition, sizes, defaults and MaxTime, before anything is stored.

Pure: the partition's settings and the nodes' sizes come in as arguments; the result is the
job records to store (one per array task) and the warnings for the submitter.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from melond.errors import BadRequest
from melond.sched.launch import parse_signal
from melond.spec import jobrel
from melond.spec.gres import Gres, format_gres, need, parse_list, per_task_room, take_counts
from melond.spec.shape import Shape, make_shape, nodes_needed, slots
from melond.spec.timespec import SpecError, format_limit
from melond.state.job import MIB, Job

FALLBACK_MEM_PER_CPU = 1024  # MiB, only while no node of the partition has been sized


class PartitionRules(Protocol):
    max_time: int
    default_time: int | None
    default_mem_per_cpu: int | None
    min_nodes: int | None
    max_cpus_per_node: int | None


@dataclass(frozen=True)
class NodeSize:
    name: str
    partition: str
    cpus: int  # 0 until the node has been probed
    memory: int  # MiB
    only_users: frozenset[str] | None = None  # only these users' jobs can run there (reached as their accounts)
    gres: tuple[Gres, ...] = ()  # its generic resources, by name and type


@dataclass(frozen=True)
class Submitter:
    user: str
    uid: int
    gid: int


def _runs(node: NodeSize, user: str) -> bool:
    return node.only_users is None or user in node.only_users


def request_shape(req: Mapping[str, Any], min_nodes: int | None = None) -> Shape:
    """A submission's nodes and tasks (mbatch has already normalised them as sbatch does); without
    -N, at least the partition's MinNodes, as Slurm's controller sets it."""
    nodes = req.get("nodes")
    least = (min_nodes, None) if min_nodes and not nodes else None
    try:
        return make_shape(nodes=(nodes[0], nodes[1]) if nodes else least, ntasks=req.get("ntasks"),
                          ntasks_per_node=req.get("ntasks_per_node"), cpus_per_task=req.get("cpus") or 1,
                          exclusive=bool(req.get("exclusive")), distribution=req.get("distribution"))
    except SpecError as exc:
        raise BadRequest(str(exc)) from None


def _fits(shape: Shape, sized: list[NodeSize], partition: str, cap: int | None = None) -> None:
    """Refuse what the partition's nodes cannot hold all at once, naming the most they hold:
    a job never runs short of its tasks (nor starts some of them). `cap`: the CPUs of a node
    the partition's jobs may use (MaxCPUsPerNode), which then size its nodes."""
    c, n = shape.cpus_per_task, shape.ntasks
    largest = max((s.cpus for s in sized), default=c)
    biggest = min(largest, cap or largest)
    capped = f"partition {partition}'s jobs may use {biggest} of a node's CPUs (MaxCPUsPerNode)"
    unavailable = "Requested node configuration is not available: " if biggest < largest else ""
    if c > biggest:
        where = capped if unavailable else f"the largest node in partition {partition} has {biggest}"
        raise BadRequest(f"{unavailable}requested {c} CPUs but {where}; ask for at most -c {biggest}")
    rooms = sorted((slots(shape, min(s.cpus, biggest)) for s in sized), reverse=True)
    if shape.nodes_max is not None:
        rooms = rooms[:shape.nodes_max]
    if shape.exact:  # exactly --ntasks-per-node on each
        rooms = [r for r in rooms if r >= shape.ntasks_per_node]
        rooms = [shape.ntasks_per_node] * len(rooms)
    held = sum(rooms)
    if held >= n and len(rooms) >= shape.nodes_min:
        return
    count = len(rooms)
    need = max(shape.nodes_min, nodes_needed(shape, biggest) or -(-n // max(1, rooms[0] if rooms else 1)))
    most = f"-N {count} -n {held}" + (f" -c {c}" if c > 1 else "")
    holds = "it holds" if shape.nodes_max is None or shape.nodes_max >= len(sized) else \
        f"{count} of its nodes (as many as -N allows) hold"
    tail = f", as {capped}" if unavailable else ""
    raise BadRequest(f"{unavailable}{shape.options()} needs {need} nodes, and partition {partition} has "
                     f"{len(sized)}; the most {holds} is {most} ({held * c} CPUs){tail}")


def _resources_exist(shape: Shape, per_node: tuple[Gres, ...], per_task: tuple[Gres, ...], nodes: list[NodeSize],
                     partition: str) -> None:
    """Refuse generic resources no node of the partition has, or too few for the job's tasks,
    naming what the nodes have (Slurm's "Requested node configuration is not available")."""
    if not per_node and not per_task:
        return
    least = 1 if shape.wide else shape.ntasks  # tasks that must share one node
    if shape.ntasks_per_node:
        least = shape.ntasks_per_node
    one = need(per_node, per_task, least)
    rooms = []
    for n in nodes:
        keys = tuple((g.name, g.type) for g in n.gres)
        counts = tuple(g.count for g in n.gres)
        base = take_counts(keys, counts, per_node)
        if base is None or take_counts(keys, counts, one) is None:
            continue
        rooms.append(per_task_room(keys, counts, per_task) if per_task else shape.ntasks)
    if rooms and sum(sorted(rooms, reverse=True)[:shape.nodes_max or len(rooms)]) >= shape.ntasks:
        return
    have = "; ".join(f"{n.name} {format_gres(n.gres) or 'none'}" for n in sorted(nodes, key=lambda n: n.name)) or "none"
    asked = " and ".join(filter(None, (format_gres(per_node) and f"{format_gres(per_node)} on each node",
                                       format_gres(per_task) and f"{format_gres(per_task)} for each of "
                                                                  f"{shape.ntasks} tasks")))
    raise BadRequest(f"Requested node configuration is not available: {asked}, and partition {partition}'s "
                     f"nodes have: {have}; ask for what `sinfo -o '%N %G'` lists")


def admit(req: Mapping[str, Any], who: Submitter, partition: str, rules: PartitionRules,
          nodes: Iterable[NodeSize], now: float) -> tuple[list[Job], list[str]]:
    """The jobs a submission becomes, or BadRequest naming what is wrong and what to ask instead."""
    nodes = list(nodes)
    warnings: list[str] = []
    members = [n for n in nodes if n.partition == partition]
    if not members:
        raise BadRequest(f"partition {partition!r} has no nodes")
    wanted = set(req.get("nodelist") or []) or {n.name for n in members}
    usable = [n for n in members if n.name in wanted and n.name not in set(req.get("exclude") or [])]
    if usable and not any(_runs(n, who.user) for n in usable):
        accounts = ", ".join(sorted(f"{n.name} as {' or '.join(sorted(n.only_users))}" for n in usable))
        raise BadRequest(f"melond reaches the node(s) this job may use in partition {partition} as logins "
                         f"that are not root ({accounts}), and a node's helper can start only its own login's "
                         f"jobs, not {who.user}'s; submit as that login, give {who.user} a login of their "
                         f"own there (the inventory's [logins]), or have melond log in as root")
    members = [n for n in members if _runs(n, who.user)] or members
    sized = [n for n in members if n.cpus]  # local, or probed at least once
    shape = request_shape(req, rules.min_nodes)
    cpus = shape.cpus
    if not sized:
        warnings.append(f"no node of partition {partition} has been reached yet; sizes are checked when one is")
    if sized:
        names = {u.name for u in usable}
        _fits(shape, [n for n in sized if n.name in names] or sized, partition, rules.max_cpus_per_node)
    per_node, per_task = parse_list(req.get("gres")), parse_list(req.get("gpus_per_task"))
    _resources_exist(shape, per_node, per_task, [n for n in members if n in usable] or members, partition)
    memory = req.get("memory")
    mem_per_cpu = None  # MiB; sizes each node's part of a job that may span nodes
    if memory is not None and req.get("mem_per_cpu"):
        mem_per_cpu = memory // MIB // shape.cpus_per_task
        memory *= shape.ntasks  # the request's is per CPU times -c: one task's
    if memory is None and shape.exclusive:
        memory = 0  # whole nodes, and all of their memory
    if memory is None:
        per_cpu = rules.default_mem_per_cpu or min((n.memory // n.cpus for n in sized), default=FALLBACK_MEM_PER_CPU)
        memory = per_cpu * cpus * MIB
        mem_per_cpu = per_cpu
    biggest_mem = max((n.memory for n in sized), default=memory // MIB)
    node_memory = memory  # what one node must hold: --mem is per node; per CPU, one task's at least
    if shape.wide and mem_per_cpu:
        node_memory = mem_per_cpu * shape.cpus_per_task * MIB
    if node_memory > biggest_mem * MIB:
        raise BadRequest(f"requested {memory // MIB} MiB of memory but the largest node in partition "
                         f"{partition} has {biggest_mem} MiB; ask for at most --mem {biggest_mem}M")
    limit = req.get("time_limit")
    if limit is None:
        limit = rules.default_time if rules.default_time is not None else rules.max_time
    elif limit == 0 and rules.max_time:
        limit = rules.max_time
        warnings.append(f"partition {partition} has a MaxTime of {format_limit(rules.max_time)}: "
                        f"the job gets that instead of no limit")
    if rules.max_time and limit > rules.max_time:
        warnings.append(f"time limit {format_limit(limit)} is above partition {partition}'s MaxTime "
                        f"{format_limit(rules.max_time)}: the job stays pending (PartitionTimeLimit)")
    time_max = req.get("time_max")
    if time_max is not None and rules.max_time and (time_max == 0 or time_max > rules.max_time):
        time_max = rules.max_time  # it grows by policy: no further than an owner may extend it
        warnings.append(f"--time-max is above partition {partition}'s MaxTime {format_limit(rules.max_time)}: "
                        f"the job grows to that at most")
    if time_max is not None and time_max != 0 and time_max <= limit:
        raise BadRequest(f"--time-max {format_limit(time_max)} is not above the job's limit {format_limit(limit)}: "
                         f"give a larger --time-max, or no --time-max for a fixed limit")
    if req.get("dependency"):
        jobrel.parse_dependency(req["dependency"])
    names = {n.name for n in nodes}
    for name in (req.get("nodelist") or []) + (req.get("exclude") or []):
        if name not in names:
            raise BadRequest(f"unknown node {name!r}; nodes: {', '.join(sorted(names))}")
    if req.get("signal"):
        parse_signal(req["signal"])
    tasks: list[int | None] = [None]
    throttle = None
    if req.get("array") and req.get("interactive"):
        raise BadRequest("an interactive allocation (salloc, srun --pty) cannot be a job array")
    if req.get("array"):
        tasks, throttle = jobrel.parse_array(req["array"])
    jobs = [Job(
        user=who.user, uid=who.uid, gid=who.gid, name=req["name"], partition=partition, cpus=cpus, memory=memory,
        time_limit=limit, script=req["script"], script_path=req.get("script_path"),
        script_args=req.get("script_args") or [], environment=req.get("environment") or {}, chdir=req["chdir"],
        output=req.get("output") or "melon-%j.out", error=req.get("error"), nodelist=req.get("nodelist") or [],
        exclude=req.get("exclude") or [], begin_time=req.get("begin"), hold=bool(req.get("hold")),
        dependency=req.get("dependency"), array_task_id=task, array_throttle=throttle,
        array_spec=req.get("array") if task is not None else None,
        requeue=bool(req.get("requeue")), signal=req.get("signal"), submit_host=req.get("submit_host"),
        submit_dir=req.get("submit_dir") or req["chdir"], submit_time=now, comment=req.get("comment"),
        account=req.get("account"), slurm_options=req.get("slurm_options") or {}, time_max=time_max,
        extend_step=req.get("extend_step") if time_max is not None else None,
        mail_type=list(req.get("mail_type") or []), mail_user=req.get("mail_user"), umask=req.get("umask"),
        nodes_min=shape.nodes_min, nodes_max=shape.nodes_max, ntasks=shape.ntasks if shape.ntasks_given else None,
        ntasks_per_node=shape.ntasks_per_node, cpus_per_task=shape.cpus_per_task, exclusive=shape.exclusive,
        distribution=shape.distribution, mem_per_cpu=mem_per_cpu if shape.wide else None,
        interactive=bool(req.get("interactive")), gres=format_gres(per_node) or None,
        gpus_per_task=format_gres(per_task) or None,
    ) for task in tasks]
    for job in jobs:
        job.gres_total = job.gres_requested()
    return jobs, warnings
