"""sbatch's --mail-type, and when a running job's time-limit notices are due. Pure."""
from __future__ import annotations

from melond.spec.timespec import SpecError

#: What --mail-type may name (sbatch(1)); ALL is BEGIN, END, FAIL, INVALID_DEPEND, REQUEUE, STAGE_OUT.
TYPES = ("BEGIN", "END", "FAIL", "REQUEUE", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90",
         "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")
ALL = ("BEGIN", "END", "FAIL", "INVALID_DEPEND", "REQUEUE", "STAGE_OUT")
#: The share of the current limit at which each time-limit notice is due.
THRESHOLDS = {"TIME_LIMIT_50": 0.5, "TIME_LIMIT_80": 0.8, "TIME_LIMIT_90": 0.9}
#: Final states that a FAIL notice reports (TIME_LIMIT reports TIMEOUT too).
FAILED = frozenset({"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"})


def parse_mail_type(text: str) -> list[str]:
    """`BEGIN,END` -> ["BEGIN", "END"]; ALL expands, NONE is none; anything else names the forms."""
    out: list[str] = []
    for word in (w.strip().upper() for w in text.split(",")):
        if word == "NONE":
            return []
        if word == "ALL":
            out += ALL
        elif word in TYPES:
            out.append(word)
        else:
            raise SpecError(f"unknown mail type {word or '(empty)'!r}; give a comma list of NONE, ALL, "
                            + ", ".join(TYPES))
    return list(dict.fromkeys(out))


def due(types: list[str], start: float, limit: int, now: float, sent: set[str]) -> list[str]:
    """The time-limit notices now due for a running job (`sent`: those already sent this deadline)."""
    if not limit:
        return []
    return [name for name, share in THRESHOLDS.items()
            if name in types and name not in sent and now >= start + share * limit]


def rearmed(sent: set[str], start: float, limit: int, now: float) -> set[str]:
    """After an extension: the time-limit notices that stay sent, those whose point, on the new
    limit, has already passed; the others are due again when the job reaches them."""
    return {name for name in sent if name not in THRESHOLDS or (limit and now >= start + THRESHOLDS[name] * limit)}
