"""CPU id lists in the kernel's text form (`0-3,8`), as cpuset.cpus and Slurm's CPU_IDs write them.

Pure and standard library only: the scheduler, the store and the CLIs read and write the form.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


def cpuset_text(ids: Iterable[int]) -> str:
    """`0-3,8` for [0, 1, 2, 3, 8]."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(set(ids)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_cpuset(text: str | None) -> list[int]:
    """`0-3,8` as the ids it names; empty or None names none."""
    ids: list[int] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        low, dash, high = part.partition("-")
        ids.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    return ids


def node_cpusets_text(by_node: Mapping[str, Iterable[int]]) -> str:
    """`n1:0-1;n2:4`: a step's CPUs on each node of a job that spans nodes."""
    return ";".join(f"{node}:{cpuset_text(ids)}" for node, ids in by_node.items())


def parse_node_cpusets(text: str | None) -> dict[str, list[int]]:
    """`n1:0-1;n2:4` by node; a plain cpuset (a one-node job's step) is node ''."""
    out: dict[str, list[int]] = {}
    for entry in (text or "").split(";"):
        node, colon, ids = entry.rpartition(":")
        if entry.strip():
            out[node if colon else ""] = parse_cpuset(ids)
    return out
