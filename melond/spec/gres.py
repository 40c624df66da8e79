"""Generic resources (GPUs, licenses) in Slurm's terms: what a job asks for (`--gres`, `--gpus*`),
what a node has (the inventory's gres.conf-like entries), and how both are written
(`gpu:a100:4`, `gres/gpu:2`). shared/SLURM-SHARING-GPUS.md §A1-A3 has the sources.

Pure and standard library only: the CLIs, the scheduler and the node side ask it the same
questions. Counts are per node unless said otherwise.
"""
from __future__ import annotations

from collections import namedtuple

from melond.spec.cpulist import cpuset_text
from melond.spec.timespec import SpecError, expand_bracketed

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MAX_FILES = 1024  # gres.conf's bound on one node's devices
MAX_COUNT = 1 << 40  # the most of one resource a request may ask for


class Gres(namedtuple("Gres", ("name", "type", "count"))):
    """`count` of resource `name` (of model `type`; None: any type)."""

    __slots__ = ()

    def __str__(self) -> str:
        return ":".join(p for p in (self.name, self.type, str(self.count)) if p)


class Device(namedtuple("Device", ("name", "type", "index", "file"))):
    """One device of a node: `index` is its place in the node's list (Slurm's IDX, and the
    global number in SLURM_JOB_GPUS), `file` its /dev path, if it has one."""

    __slots__ = ()


def _count(text: str, spec: str) -> int:
    text = text.strip().lower()
    scale = _SUFFIX.get(text[-1:], 1) if text else 1
    digits = text[:-1] if scale > 1 else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 12 or not 0 <= int(digits) * scale <= MAX_COUNT:
        raise SpecError(f"invalid generic resource count in {spec[:40]!r}: give a whole number from 0 to {MAX_COUNT} "
                        f"(K, M, G, T or P multiply by 1024s)")
    return int(digits) * scale


def parse_gres(text: str) -> tuple[Gres, ...]:
    """`--gres`: `name[[:type]:count][,...]` (a `gres/` prefix allowed, count default 1); `none`
    (a step's: no resources) is empty. Slurm's refusals: the same resource twice, or one name
    both with and without a type."""
    text = text.strip()
    if text.lower() == "none":
        return ()
    out: list[Gres] = []
    for entry in text.split(","):
        entry = entry.strip().removeprefix("gres/")
        parts = entry.split(":")
        if not entry or not parts[0] or len(parts) > 3 or not all(parts):
            raise SpecError(f"Invalid generic resource (gres) specification: {entry!r}; give name[[:type]:count], "
                            f"e.g. gpu:2 or gpu:a100:1")
        name = parts[0]
        if len(parts) == 1:
            kind, count = None, 1
        elif len(parts) == 2:
            kind, count = (None, _count(parts[1], entry)) if parts[1][:1].isdigit() else (parts[1], 1)
        else:
            kind, count = parts[1], _count(parts[2], entry)
        out.append(Gres(name, kind, count))
    _check_mix(out)
    return tuple(g for g in out if g.count)  # gpu:0 asks for none, as in Slurm


def parse_gpus(text: str) -> tuple[Gres, ...]:
    """`--gpus`, `--gpus-per-node`, `--gpus-per-task`: `[type:]N[,type:N]`, GPUs."""
    out: list[Gres] = []
    for entry in text.split(","):
        parts = entry.strip().split(":")
        if len(parts) > 2 or not all(parts):
            raise SpecError(f"invalid GPU count {text!r}: give [type:]N, e.g. 2 or a100:1")
        kind, count = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
        out.append(Gres("gpu", kind, _count(count, text)))
    _check_mix(out)
    return tuple(g for g in out if g.count)


def _check_mix(specs: list[Gres]) -> None:
    seen: dict[str, set] = {}
    for g in specs:
        kinds = seen.setdefault(g.name, set())
        if g.type in kinds:
            raise SpecError(f"Duplicate generic resource (gres) specification: {g.name}"
                            f"{':' + g.type if g.type else ''} is asked for twice")
        kinds.add(g.type)
        if None in kinds and len(kinds) > 1:
            raise SpecError(f"Invalid GRES specification (with and without type identification): {g.name}")


def format_gres(specs: tuple[Gres, ...] | list[Gres], prefix: str = "") -> str:
    """`gpu:a100:4,license_x:2` (sinfo's %G, scontrol's Gres=); with prefix `gres/`, as squeue's
    TRES_PER_NODE and scontrol's TresPerNode write a request."""
    return ",".join(prefix + str(g) for g in specs)


def node_devices(entries: list[dict]) -> tuple[Device, ...]:
    """A node's resources from its inventory entries, in gres.conf's terms:
    `{name = "gpu", type = "a100", files = "/dev/nvidia[0-3]"}` (a device per file, in order) or
    `{name = "license_x", count = 4}` (countable, no files). Indexes number each name's devices
    from 0 in the order given, as Slurm's IDX does."""
    out: list[Device] = []
    index: dict[str, int] = {}
    for entry in entries:
        name, kind = str(entry.get("name") or ""), entry.get("type")
        if not name or ":" in name or "," in name:
            raise SpecError(f"a node's gres entry needs a name (gpu, license_x, ...), not {name!r}")
        files = expand_bracketed(str(entry["files"])) if entry.get("files") else []
        count = int(entry.get("count") or len(files) or 1)
        if files and count != len(files):
            raise SpecError(f"gres {name}: count {count} but {len(files)} files; give one or the other")
        if count > MAX_FILES and files:
            raise SpecError(f"gres {name}: at most {MAX_FILES} device files on one node")
        for i in range(count):
            out.append(Device(name, str(kind) if kind else None, index.get(name, 0), files[i] if files else None))
            index[name] = index.get(name, 0) + 1
    return tuple(out)


def node_gres(devices: tuple[Device, ...]) -> tuple[Gres, ...]:
    """A node's devices counted as sinfo's %G writes them: by name and type, in order."""
    counts: dict[tuple[str, str | None], int] = {}
    for d in devices:
        counts[(d.name, d.type)] = counts.get((d.name, d.type), 0) + 1
    return tuple(Gres(name, kind, n) for (name, kind), n in counts.items())


def pick(devices: tuple[Device, ...], want: tuple[Gres, ...], taken: set[int] | frozenset[int]) -> list[int] | None:
    """Positions in `devices` (not in `taken`) that meet `want`, the lowest first; None if the
    free ones cannot. An untyped request takes any type of its name."""
    chosen: list[int] = []
    for g in want:
        free = [i for i, d in enumerate(devices) if i not in taken and i not in chosen and d.name == g.name
                and (g.type is None or d.type == g.type)]
        if len(free) < g.count:
            return None
        chosen += free[:g.count]
    return chosen


def merge(*groups: tuple[Gres, ...]) -> tuple[Gres, ...]:
    """Requests added up: the same name and type once, its counts summed, in first-seen order."""
    counts: dict[tuple[str, str | None], int] = {}
    for specs in groups:
        for g in specs:
            counts[(g.name, g.type)] = counts.get((g.name, g.type), 0) + g.count
    return tuple(Gres(name, kind, n) for (name, kind), n in counts.items())


def scaled(specs: tuple[Gres, ...], factor: int) -> tuple[Gres, ...]:
    """A per-task request for `factor` tasks."""
    return tuple(Gres(g.name, g.type, g.count * factor) for g in specs) if factor else ()


Key = tuple[str, "str | None"]  # a node's kind of resource: name and type


def take_counts(keys: tuple[Key, ...], free: tuple[int, ...] | list[int], want: tuple[Gres, ...]) -> tuple[int, ...] | None:
    """How many of each of a node's kinds (`keys`, with `free` of each) `want` takes, the first
    kinds first; None if the free ones cannot meet it. The scheduler's count of what `pick`
    then chooses device by device."""
    take = [0] * len(keys)
    for g in want:
        left = g.count
        for i, (name, kind) in enumerate(keys):
            if name == g.name and (g.type is None or kind == g.type):
                n = min(left, free[i] - take[i])
                if n > 0:
                    take[i] += n
                    left -= n
                    if not left:
                        break
        if left:
            return None
    return tuple(take)


def per_task_room(keys: tuple[Key, ...], free: tuple[int, ...] | list[int], per_task: tuple[Gres, ...]) -> int:
    """How many tasks of `per_task` each the free resources hold."""
    room = None
    for g in per_task:
        have = sum(f for (name, kind), f in zip(keys, free) if name == g.name and (g.type is None or kind == g.type))
        room = have // g.count if room is None else min(room, have // g.count)
    return 0 if room is None else room


def gpu_count(specs: tuple[Gres, ...]) -> int:
    return sum(g.count for g in specs if g.name == "gpu")


def parse_list(text: str | None) -> tuple[Gres, ...]:
    """A stored request (format_gres's text) read back; none for None or ''."""
    return parse_gres(text) if text else ()


def need(per_node: tuple[Gres, ...], per_task: tuple[Gres, ...], tasks: int) -> tuple[Gres, ...]:
    """What `tasks` tasks of a job need on one node: of each kind, the larger of its per-node
    count and its per-task count times the tasks (Slurm's --gres with --gpus-per-task: both hold)."""
    if not per_task:
        return per_node
    counts = {(g.name, g.type): g.count for g in per_node}
    for g in per_task:
        counts[(g.name, g.type)] = max(counts.get((g.name, g.type), 0), g.count * tasks)
    return tuple(Gres(name, kind, n) for (name, kind), n in counts.items())


def wanted(per_node: str | None, per_task: str | None, tasks: int) -> tuple[Gres, ...]:
    """What a job's part of `tasks` tasks needs on one node, from its stored request."""
    return need(parse_list(per_node), parse_list(per_task), tasks)


# The variables CUDA, ROCm and OpenCL read a process's GPUs from (remote/holder.py has the same).
GPU_LISTS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")


def visible(job_gpus: list[Device], mine: list[Device], local: bool) -> str:
    """`mine` (some of `job_gpus`) as CUDA numbers them for the job: by their place among the
    job's GPUs where its cgroup shows it only those (Slurm's ConstrainDevices), else by the
    node's indexes, as the job sees every GPU."""
    return ",".join(str(job_gpus.index(d)) if local else str(d.index) for d in mine)


def format_used(devices: tuple[Device, ...], positions: set[int] | list[int]) -> str:
    """scontrol's GresUsed: each kind of the node's with how many are held and their indexes,
    `gpu:a100:1(IDX:0),gpu:a100:0(IDX:N/A)` style: `gpu:a100:2(IDX:0-1)`."""
    held = set(positions)
    out = []
    for g in node_gres(devices):
        idx = [d.index for i, d in enumerate(devices) if i in held and (d.name, d.type) == (g.name, g.type)]
        out.append(f"{Gres(g.name, g.type, len(idx))}(IDX:{cpuset_text(idx) if idx else 'N/A'})")
    return ",".join(out)


def held(devices: tuple[Device, ...], positions: list[int]) -> tuple[Gres, ...]:
    """What a job holds on a node, counted by kind: `gpu:a100:2` (sacct's and scontrol's TRES)."""
    return node_gres(tuple(devices[i] for i in positions if i < len(devices)))


def tres(text: str | None) -> list[str]:
    """Resources as Slurm's TRES strings name them: `gres/gpu=2` for each name, and
    `gres/gpu:a100=2` for each type of it (sacct's AllocTRES, scontrol's CfgTRES)."""
    specs = parse_list(text)
    totals: dict[str, int] = {}
    for g in specs:
        totals[g.name] = totals.get(g.name, 0) + g.count
    typed = [f"gres/{g.name}:{g.type}={g.count}" for g in specs if g.type]
    return [f"gres/{name}={n}" for name, n in totals.items()] + typed


BUSY = "\0busy"  # the name a device busy with others' processes is counted under: no request names it


def foreign(busy: dict[int, list[int]], held: set[int]) -> dict[int, list[int]]:
    """The devices (positions) running processes that no job holding them started: `busy` as the
    node last reported it, less those melond's jobs hold."""
    return {i: pids for i, pids in busy.items() if i not in held}
