"""Job states and how a node's report of a job's end maps onto them.

Standard library only: the CLIs import this for filters and colours.
"""
from __future__ import annotations

from enum import StrEnum

from melond.errors import ParseError


class State(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"  # cancelled for a job of a QOS that preempts its own (PreemptMode=CANCEL)


SHORT: dict[State, str] = {
    State.PENDING: "PD", State.RUNNING: "R", State.COMPLETED: "CD", State.FAILED: "F",
    State.TIMEOUT: "TO", State.CANCELLED: "CA", State.OUT_OF_MEMORY: "OOM", State.NODE_FAIL: "NF",
    State.PREEMPTED: "PR",
}
BY_SHORT: dict[str, State] = {v: k for k, v in SHORT.items()}
ACTIVE = frozenset({State.PENDING, State.RUNNING})
FINISHED = frozenset(State) - ACTIVE

# The node supervisor's `reason` for a job's end -> the state it ends in ("exited" depends on the status).
END_REASONS: dict[str, State] = {
    "timeout": State.TIMEOUT,
    "cancelled": State.CANCELLED,
    "oom": State.OUT_OF_MEMORY,
    "launch_failed": State.FAILED,
    "lost": State.NODE_FAIL,
}


def end_state(result: dict) -> State:
    """The final state for a node's result record."""
    reason = result.get("reason", "exited")
    if reason in END_REASONS:
        return END_REASONS[reason]
    return State.COMPLETED if result.get("exit_code") == 0 and not result.get("signal") else State.FAILED


def parse_states(text: str) -> set[State]:
    """`-t` filter values: short codes or names, comma-separated, any case; `all` for every state."""
    out: set[State] = set()
    for item in filter(None, (s.strip().upper() for s in text.split(","))):
        if item == "ALL":
            return set(State)
        if item in BY_SHORT:
            out.add(BY_SHORT[item])
        elif item in State.__members__:
            out.add(State[item])
        else:
            names = ", ".join(f"{SHORT[s]} ({s.value})" for s in State)
            raise ParseError(f"unknown job state {item!r}; use one of: {names}")
    return out
