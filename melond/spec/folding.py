"""An array's pending tasks on one line, as squeue shows the pending part of an array: `13_[5-9%3]`.

Pure and generic over what is folded (melond folds its Job records before it builds any view of
them, `mqueue` folds the dicts it filtered itself), so both read the same rule: pending tasks of
one array that differ only in index and reason share a line, placed where the first of them is
and showing its reason (the next to run's). A task given its own limit gets its own line, as
Slurm splits a task record off the array's when it updates one task.
"""
from __future__ import annotations

from melond.spec.jobids import folded_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable


def fold_pending(items: Iterable, key: Callable[[object], Hashable | None], task: Callable[[object], int],
                 array_id: Callable[[object], int],
                 throttle: Callable[[object], int | None]) -> list[tuple[object, str | None]]:
    """Each item with None, or, for the first of each group `key` puts together (None: folds with
    nothing), its folded label; the rest of its group is left out."""
    items = list(items)
    groups: dict = {}
    for item in items:
        k = key(item)
        if k is not None:
            groups.setdefault(k, []).append(task(item))
    out: list[tuple[object, str | None]] = []
    for item in items:
        k = key(item)
        if k is None:
            out.append((item, None))
        elif (tasks := groups.pop(k, None)) is not None:
            out.append((item, folded_label(array_id(item), tasks, throttle(item))))
    return out
