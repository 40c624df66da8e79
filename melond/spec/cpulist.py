"""CPU id lists in the kernel's text form (`0-3,8`), as cpuset.cpus and Slurm's CPU_IDs write them.

Pure and standard library only: the scheduler, the store and the CLIs read and write the form.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


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
