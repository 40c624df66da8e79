"""sbatch's --mail-type, and when a running job's time-limit notices are due. Pure."""
from __future__ import annotations

from melond.spec.timespec import SpecError, signal_spec

#: What --mail-type may name (sbatch(1)); ALL is BEGIN, END, FAIL, INVALID_DEPEND, REQUEUE, STAGE_OUT.
TYPES = ("BEGIN", "END", "FAIL", "REQUEUE", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90",
         "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")
ALL = ("BEGIN", "END", "FAIL", "INVALID_DEPEND", "REQUEUE", "STAGE_OUT")
#: The share of the current limit at which each time-limit notice is due.
THRESHOLDS = {"TIME_LIMIT_50": 0.5, "TIME_LIMIT_80": 0.8, "TIME_LIMIT_90": 0.9}
#: Final states that a FAIL notice reports (TIME_LIMIT reports TIMEOUT too).
FAILED = frozenset({"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"})
#: Seconds before an interactive job's end its terminal is told, unless --signal says when.
END_LEAD = 600.0


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


def end_lead(signal: str | None, time_limit: float | None) -> float:
    """How long before its end an interactive job's terminal says so: its --signal time, else
    END_LEAD, at most half of its limit (a 20-minute session hears at 10 minutes left)."""
    if signal:
        try:
            return float(signal_spec(signal)[1])
        except SpecError:
            pass
    return min(END_LEAD, time_limit / 2) if time_limit else END_LEAD


def end_notice(job_id: int, left: float) -> str:
    """The line a terminal reads before its job's end."""
    minutes = max(1, round(left / 60))
    when = f"{minutes} min" if left >= 90 else f"{max(1, round(left))} s"
    return f"melon: job {job_id} ends in {when}; `mextend -t +1:00:00` for more"
