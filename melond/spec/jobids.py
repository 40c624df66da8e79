"""Job ids as users type them, as Slurm's commands take them: ``13``, ``13_4``, ``13_[1-3,5]``.

Python's ``int()`` reads ``13_5`` as 135, so every command parses ids here and never with ``int``.
A plain id names a job; when that job is an array's first task (whose id is the array's), the
commands that act on jobs act on the whole array, as ``scancel 13`` does. Pure: no I/O.
"""
from __future__ import annotations

from melond.errors import ParseError

JOB_ID_FORMS = "accepted forms: ID, ID_TASK or ID_[TASKS] such as 13, 13_4, 13_[1-3,5] (digits only)"
MAX_JOB_ID = 2**63 - 1  # what SQLite's INTEGER holds
MAX_TASKS = 100_000


class JobRef(tuple):
    """One job (``task is None``) or one task of array ``job_id``. A tuple, not a dataclass:
    `dataclasses` would cost every command ~8 ms of imports (inspect, re)."""

    __slots__ = ()

    def __new__(cls, job_id: int, task: int | None = None) -> JobRef:
        return tuple.__new__(cls, (job_id, task))

    @property
    def job_id(self) -> int:
        return self[0]

    @property
    def task(self) -> int | None:
        return self[1]

    def __repr__(self) -> str:
        return f"JobRef({self[0]}, {self[1]})"

    def __str__(self) -> str:
        return str(self.job_id) if self.task is None else f"{self.job_id}_{self.task}"


def _number(text: str, whole: str) -> int:
    # str.isdigit() accepts '²' and other digits int() refuses; only ASCII digits are ids.
    if not text or not text.isascii() or not text.isdigit():
        raise ParseError(f"{whole!r} is not a job id; {JOB_ID_FORMS}")
    value = int(text)
    if value > MAX_JOB_ID:
        raise ParseError(f"{whole!r} is not a job id: above {MAX_JOB_ID}")
    return value


def _tasks(spec: str, whole: str) -> list[int]:
    out: list[int] = []
    for item in spec.split(","):
        lo, sep, hi = item.partition("-")
        first = _number(lo, whole)
        last = _number(hi, whole) if sep else first
        if last < first:
            raise ParseError(f"{whole!r}: the task range {item} runs backwards; write LOW-HIGH")
        if len(out) + last - first + 1 > MAX_TASKS:
            raise ParseError(f"{whole!r} names more than {MAX_TASKS} tasks")
        out.extend(range(first, last + 1))
    return out


def parse_job_ref(text: str) -> list[JobRef]:
    """``13`` -> [13]; ``13_4`` -> [13_4]; ``13_[1-3,5]`` -> [13_1, 13_2, 13_3, 13_5]."""
    text = text.strip()
    head, sep, tail = text.partition("_")
    job_id = _number(head, text)
    if not sep:
        return [JobRef(job_id)]
    if tail.startswith("[") and tail.endswith("]"):
        tasks = _tasks(tail[1:-1], text)
    else:
        tasks = [_number(tail, text)]
    return [JobRef(job_id, t) for t in dict.fromkeys(tasks)]


def split_refs(text: str) -> list[str]:
    """A comma list whose commas inside ``[...]`` belong to a task list: ``1,13_[1,2]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def parse_job_refs(values: list[str] | tuple[str, ...]) -> list[JobRef]:
    """Every id in arguments such as ``12 13,14 15_[1-3]``, in order, without repeats."""
    refs: dict[JobRef, None] = {}
    for value in values:
        parts = split_refs(value)
        if not parts:
            raise ParseError(f"{value!r} is not a job id; {JOB_ID_FORMS}")
        for part in parts:
            refs.update(dict.fromkeys(parse_job_ref(part)))
    return list(refs)


def parse_one_ref(text: str) -> JobRef:
    """Exactly one job, for an API path or a command that takes one: ``13`` or ``13_4``."""
    refs = parse_job_ref(text)
    if len(refs) != 1 or "[" in text:
        raise ParseError(f"{text!r} names several jobs; give one: ID or ID_TASK")
    return refs[0]


def format_tasks(tasks: list[int]) -> str:
    """Task ids as squeue folds them: [1, 2, 3, 5, 7, 8] -> ``1-3,5,7-8``."""
    runs: list[list[int]] = []
    for t in sorted(set(tasks)):
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def folded_label(array_job_id: int, tasks: list[int], throttle: int | None = None) -> str:
    """One line's id for an array's pending tasks, as squeue prints it: ``13_[5-9%3]``, or ``13_5``."""
    if len(tasks) == 1 and not throttle:
        return f"{array_job_id}_{tasks[0]}"
    return f"{array_job_id}_[{format_tasks(tasks)}{f'%{throttle}' if throttle else ''}]"
