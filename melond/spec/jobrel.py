"""Job relations: sbatch's ``--array`` and ``--dependency``, parsed and evaluated.

Pure functions (no I/O, no clock): the API validates a submission with the
parsers, the store keeps the canonical text (``str(Dependency)``), and each
scheduling pass asks :func:`dependency_status` whether a job may run yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from melond.errors import ParseError
from melond.spec.lazy_re import LazyPattern

__all__ = [
    "ARRAY_FORMS",
    "DEPENDENCY_FORMS",
    "MAX_ARRAY_TASKS",
    "MAX_TASK_ID",
    "Condition",
    "DepKind",
    "DepRef",
    "DepStatus",
    "Dependency",
    "RelError",
    "dependency_status",
    "parse_array",
    "parse_dependency",
]

# Task ids end up in MELON_ARRAY_TASK_ID / SLURM_ARRAY_TASK_ID, which scripts read as C ints.
MAX_TASK_ID = 2**31 - 1
MAX_ARRAY_TASKS = 10_000  # tasks in one array (`scontrol show config` reports MaxArraySize one more, as Slurm)

ARRAY_FORMS = (
    "accepted forms: N, N-M, N-M:STEP, comma lists such as 1,6-7,12, "
    "each optionally ending in %LIMIT to run at most LIMIT tasks at once (e.g. 0-15:4%2)"
)
DEPENDENCY_FORMS = (
    "accepted forms: after:ID[+MIN][:ID...], afterok:ID[:ID...], afternotok:ID[:ID...], "
    "afterany:ID[:ID...], singleton; join several with ',' (all must hold) "
    "or '?' (any one suffices)"
)


class RelError(ParseError):
    """A ``--array`` or ``--dependency`` value that cannot be accepted; the message is for users."""


# ---------------------------------------------------------------------------------------- arrays

_ARRAY_ITEM = LazyPattern(r"(?P<lo>[0-9]{1,10})(?:-(?P<hi>[0-9]{1,10})(?::(?P<step>[0-9]{1,10}))?)?")
_THROTTLE = LazyPattern(r"[0-9]{1,9}")


def _array_item(item: str, spec: str, max_tasks: int) -> range:
    """One comma-separated element as a range, refusing what sbatch refuses."""
    m = _ARRAY_ITEM.fullmatch(item)
    if m is None:
        if item.startswith("-"):
            raise RelError(f"--array {spec!r}: task ids cannot be negative ({item!r}); {ARRAY_FORMS}")
        raise RelError(f"--array {spec!r}: cannot read {item!r}; {ARRAY_FORMS}")
    lo = int(m["lo"])
    hi = int(m["hi"]) if m["hi"] is not None else lo
    step = int(m["step"]) if m["step"] is not None else 1
    if hi > MAX_TASK_ID:
        raise RelError(f"--array {spec!r}: task id {hi} is above the maximum {MAX_TASK_ID}")
    if hi < lo:
        raise RelError(f"--array {spec!r}: range {item!r} is reversed; write {hi}-{lo}")
    if step == 0:
        raise RelError(f"--array {spec!r}: the step in {item!r} must be at least 1")
    span = range(lo, hi + 1, step)
    if len(span) > max_tasks:
        raise RelError(f"--array {spec!r}: {len(span)} tasks, more than the limit of {max_tasks}")
    return span


def parse_array(spec: str, max_tasks: int = MAX_ARRAY_TASKS) -> tuple[list[int], int | None]:
    """Parse sbatch ``--array`` into (sorted unique task ids, throttle or None)."""
    text = spec.strip()
    if not text:
        raise RelError(f"--array is empty; {ARRAY_FORMS}")
    body, pct, limit = text.partition("%")
    throttle: int | None = None
    if pct:
        if _THROTTLE.fullmatch(limit.strip()) is None:
            raise RelError(f"--array {spec!r}: the %LIMIT must be a whole number; {ARRAY_FORMS}")
        throttle = int(limit)
        if throttle < 1:
            raise RelError(f"--array {spec!r}: %{limit.strip()} would never run a task; use %1 or more")
    ids: set[int] = set()
    for raw in body.split(","):
        item = raw.strip()
        if not item:
            raise RelError(f"--array {spec!r}: empty element; {ARRAY_FORMS}")
        ids.update(_array_item(item, spec, max_tasks))
        if len(ids) > max_tasks:
            raise RelError(f"--array {spec!r}: {len(ids)}+ tasks, more than the limit of {max_tasks}")
    return sorted(ids), throttle


# ----------------------------------------------------------------------------------- dependencies


class DepKind(StrEnum):
    """sbatch dependency types Melon supports."""

    AFTER = "after"
    AFTEROK = "afterok"
    AFTERNOTOK = "afternotok"
    AFTERANY = "afterany"
    SINGLETON = "singleton"


class DepStatus(StrEnum):
    """Outcome of evaluating a dependency; equal to the plain strings "ready", "wait", "never"."""

    READY = "ready"
    WAIT = "wait"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class DepRef:
    """One referenced job; ``delay`` (minutes after it started) exists only for ``after``."""

    job_id: int
    delay: int = 0

    def __str__(self) -> str:
        return f"{self.job_id}+{self.delay}" if self.delay else str(self.job_id)


@dataclass(frozen=True, slots=True)
class Condition:
    """``kind:ID:ID...``; every referenced job must satisfy ``kind``."""

    kind: DepKind
    refs: tuple[DepRef, ...] = ()

    def __str__(self) -> str:
        return ":".join([self.kind.value, *map(str, self.refs)])


@dataclass(frozen=True, slots=True)
class Dependency:
    """Conditions joined by ``,`` (all must hold) or, when ``any_of``, by ``?`` (one suffices)."""

    conditions: tuple[Condition, ...]
    any_of: bool = False

    def __post_init__(self) -> None:
        # One condition reads the same either way; normalise so equal meanings compare equal.
        if len(self.conditions) < 2:
            object.__setattr__(self, "any_of", False)

    def __str__(self) -> str:
        """The canonical sbatch spelling, which parses back to an equal Dependency."""
        return ("?" if self.any_of else ",").join(map(str, self.conditions))

    @property
    def job_ids(self) -> frozenset[int]:
        """Every job id referenced, so the caller can fetch exactly those states."""
        return frozenset(ref.job_id for cond in self.conditions for ref in cond.refs)

    @property
    def singleton(self) -> bool:
        """True when a ``singleton`` condition is present (the caller must then compute the block)."""
        return any(cond.kind is DepKind.SINGLETON for cond in self.conditions)


_REF = LazyPattern(r"(?P<id>[0-9]{1,18})(?:\+(?P<delay>[0-9]{1,9}))?")


def _condition(text: str, spec: str) -> Condition:
    """One ``kind:ids`` element of a dependency spec."""
    name, colon, rest = text.strip().partition(":")
    try:
        kind = DepKind(name.strip().lower())
    except ValueError:
        raise RelError(f"--dependency {spec!r}: unknown type {name!r}; {DEPENDENCY_FORMS}") from None
    if kind is DepKind.SINGLETON:
        if colon:
            raise RelError(f"--dependency {spec!r}: singleton takes no job ids; {DEPENDENCY_FORMS}")
        return Condition(kind)
    if not rest.strip():
        raise RelError(f"--dependency {spec!r}: {kind.value} needs at least one job id, e.g. {kind.value}:123")
    refs = []
    for raw in rest.split(":"):
        m = _REF.fullmatch(raw.strip())
        if m is None:
            raise RelError(f"--dependency {spec!r}: {raw.strip()!r} is not a job id; {DEPENDENCY_FORMS}")
        job_id, delay = int(m["id"]), int(m["delay"] or 0)
        if job_id < 1:
            raise RelError(f"--dependency {spec!r}: job ids start at 1, not {raw.strip()!r}")
        if m["delay"] is not None and kind is not DepKind.AFTER:
            raise RelError(
                f"--dependency {spec!r}: ID+MINUTES ({raw.strip()!r}) is accepted only for after, "
                f"not {kind.value}"
            )
        refs.append(DepRef(job_id, delay))
    return Condition(kind, tuple(refs))


def parse_dependency(spec: str) -> Dependency:
    """Parse sbatch ``-d/--dependency`` text into a :class:`Dependency`."""
    text = spec.strip()
    if not text:
        raise RelError(f"--dependency is empty; {DEPENDENCY_FORMS}")
    if "," in text and "?" in text:
        raise RelError(
            f"--dependency {spec!r}: use either ',' (all must hold) or '?' (any one suffices), not both"
        )
    any_of = "?" in text
    parts = text.split("?" if any_of else ",")
    if any(not part.strip() for part in parts):
        raise RelError(f"--dependency {spec!r}: empty element; {DEPENDENCY_FORMS}")
    return Dependency(tuple(_condition(part, spec) for part in parts), any_of)


# ----------------------------------------------------------------------------------- evaluation

_FINISHED = frozenset({"CD", "F", "TO", "CA", "OOM", "NF"})
_STATES = _FINISHED | {"PD", "R", "CG"}

# A reference is ready once its job's state is in this set; a finished job outside it never will be.
_SATISFIED: dict[DepKind, frozenset[str]] = {
    DepKind.AFTER: _FINISHED | {"R", "CG"},
    DepKind.AFTEROK: frozenset({"CD"}),
    DepKind.AFTERNOTOK: _FINISHED - {"CD"},
    DepKind.AFTERANY: _FINISHED,
}


def _all(statuses: Iterable[DepStatus]) -> DepStatus:
    """Conjunction: one never spoils it, every one ready makes it ready."""
    seen = set(statuses)
    if DepStatus.NEVER in seen:
        return DepStatus.NEVER
    return DepStatus.WAIT if DepStatus.WAIT in seen else DepStatus.READY


def _any(statuses: Iterable[DepStatus]) -> DepStatus:
    """Disjunction: one ready suffices, it is hopeless only when every one is."""
    seen = set(statuses)
    if DepStatus.READY in seen:
        return DepStatus.READY
    return DepStatus.WAIT if DepStatus.WAIT in seen else DepStatus.NEVER


def _ref_status(
    kind: DepKind,
    ref: DepRef,
    states: Mapping[int, str],
    now: float | None,
    started: Mapping[int, float] | None,
) -> DepStatus:
    state = states.get(ref.job_id)
    if state is None:
        return DepStatus.NEVER
    if state not in _STATES:
        raise ValueError(f"unknown job state {state!r} for job {ref.job_id}")
    if state not in _SATISFIED[kind]:
        return DepStatus.NEVER if state in _FINISHED else DepStatus.WAIT
    since = started.get(ref.job_id) if started is not None else None
    if not ref.delay or now is None or since is None:
        return DepStatus.READY  # without times the delay cannot be measured: plain after
    return DepStatus.READY if now >= since + 60 * ref.delay else DepStatus.WAIT


def dependency_status(
    dep: Dependency,
    states: Mapping[int, str],
    *,
    singleton_blocked: bool = False,
    now: float | None = None,
    started: Mapping[int, float] | None = None,
) -> str:
    """Evaluate ``dep`` against referenced jobs' state codes: "ready", "wait" or "never".

    An id missing from ``states`` is "never" (Slurm: DependencyNeverSatisfied).
    ``singleton_blocked`` says another job of the same name and user runs or precedes.
    ``after:ID+MIN`` measures its delay from ``started`` (when each referenced job started, or
    ended if it never ran) to ``now``; when either is missing it degrades to plain ``after``.
    """
    results = []
    for cond in dep.conditions:
        if cond.kind is DepKind.SINGLETON:
            results.append(DepStatus.WAIT if singleton_blocked else DepStatus.READY)
        else:
            results.append(_all(_ref_status(cond.kind, ref, states, now, started) for ref in cond.refs))
    return (_any if dep.any_of else _all)(results)
