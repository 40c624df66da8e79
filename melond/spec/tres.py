"""Trackable resources (Slurm's TRES) as limits name them: `cpu=8,mem=64G,node=2,gres/gpu=4`.

A limit's TRES string parses to counts by name: `cpu` (CPUs), `mem` (MiB; K/M/G/T suffixes as
Slurm's sizes), `node`, `gres/NAME` (any generic resource: `gres/gpu`), and `billing`. Pure.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

from melond.spec.timespec import SpecError, parse_size_mib

Tres = dict[str, int]
NAMES = ("cpu", "mem", "node", "billing")
_GRES = re.compile(r"^gres/[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$")


def parse_tres(text: str) -> Tres:
    """`cpu=8,mem=64G,gres/gpu=4` -> {"cpu": 8, "mem": 65536, "gres/gpu": 4}; names in lower case."""
    out: Tres = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or not (name in NAMES or _GRES.match(name)):
            raise SpecError(f"{item!r} is not a TRES limit: write NAME=COUNT with NAME one of cpu, mem, node, "
                            f"billing or gres/NAME (e.g. cpu=8,mem=64G,gres/gpu=4)")
        value = value.strip()
        if name == "mem":
            count = parse_size_mib(value)
        elif value.isdigit():
            count = int(value)
        else:
            raise SpecError(f"{item!r}: a TRES count is a whole number, 0 or more")
        if name in out:
            raise SpecError(f"{name} is given twice in {text!r}; give each TRES once")
        out[name] = count
    return out


def format_tres(tres: Mapping[str, int]) -> str:
    """Counts as Slurm prints them, cpu first: `cpu=8,mem=64G,node=2,gres/gpu=4`."""
    order = {name: i for i, name in enumerate(NAMES)}
    keys = sorted(tres, key=lambda k: (order.get(k, len(order)), k))
    return ",".join(f"{k}={_mem(tres[k]) if k == 'mem' else tres[k]}" for k in keys)


def _mem(mib: int) -> str:
    """Memory in the largest unit that holds it whole (64G, 1280M), as TRES strings read back."""
    for unit, scale in (("T", 1024 * 1024), ("G", 1024)):
        if mib and mib % scale == 0:
            return f"{mib // scale}{unit}"
    return f"{mib}M"


#: The TRES Slurm accounts for whatever AccountingStorageTRES says, in the order of their ids
#: (tres.html): what sshare's TRES columns list before any GRES. Melon measures no energy, disk,
#: virtual memory or pages; they read 0, as in a Slurm that gathers none.
ACCOUNTED = ("cpu", "mem", "energy", "node", "billing", "fs/disk", "vmem", "pages")


def format_accounted(counts: Mapping[str, int]) -> str:
    """Counts as sshare prints a TRES array (slurmdb_make_tres_string_from_arrays): every
    accounted TRES, 0 where none, then the others by name; memory in MiB, without a unit:
    `cpu=120,mem=0,energy=0,node=60,billing=120,fs/disk=0,vmem=0,pages=0,gres/gpu=0`."""
    others = sorted(name for name in counts if name not in ACCOUNTED)
    return ",".join(f"{name}={counts.get(name, 0)}" for name in (*ACCOUNTED, *others))


def job_tres(cpus: int, memory_mib: int, nodes: int, gres: Mapping[str, int]) -> Tres:
    """What a job holds, counted as limits count it: its CPUs, memory, nodes and each resource."""
    out: Tres = {"cpu": cpus, "mem": memory_mib, "node": nodes}
    out.update({f"gres/{name}": count for name, count in gres.items() if count})
    return out


def over(use: Mapping[str, int], adding: Mapping[str, int], limit: Mapping[str, int]) -> str | None:
    """The first TRES whose limit `use` plus `adding` would pass (in limit order), or None."""
    for name, cap in limit.items():
        if use.get(name, 0) + adding.get(name, 0) > cap:
            return name
    return None


def parse_billing(text: str | None) -> dict[str, float]:
    """TRESBillingWeights (`CPU=1.0,Mem=0.25G,GRES/gpu=2.0`): weight per unit; a memory weight
    with a unit suffix counts per that many of memory (`0.25G`: 0.25 per GiB), without per MiB."""
    if not text:
        return {"cpu": 1.0}
    out: dict[str, float] = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, value = item.partition("=")
        name, value = name.strip().lower(), value.strip()
        scale = 1.0
        if name == "mem" and value[-1:].upper() in "KMGT" and value[-1:].isalpha():
            scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}[value[-1].upper()]
            value = value[:-1]
        try:
            weight = float(value)
        except ValueError:
            raise SpecError(f"{item!r} is not a billing weight: write NAME=NUMBER, e.g. CPU=1.0,Mem=0.25G,"
                            f"GRES/gpu=2.0") from None
        if not eq or not math.isfinite(weight) or weight < 0:
            raise SpecError(f"{item!r} is not a billing weight: write NAME=NUMBER (0 or more)")
        parse_tres(f"{name}=1")  # a TRES name
        out[name] = weight / scale
    return out


def billing(tres: Mapping[str, int], weights: Mapping[str, float]) -> float:
    """A job's billable TRES: Σ count·weight (memory in MiB), truncated as Slurm's."""
    return float(int(sum(count * weights.get(name, 0.0) for name, count in tres.items())))
