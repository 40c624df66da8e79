"""sacct's `--format` for macct: field names (any case), `Name%width`, and sacct's way of showing them.

Pure: rows from `GET /accounting` in, text out. As in sacct, a value wider than its column is cut
and ends in `+`, JobID is left-justified and every other field right-justified, and `-P` prints
the fields whole, separated by `|`.
"""
from __future__ import annotations

import time

from cli.common import job_label
from melond.errors import ParseError
from melond.spec.timespec import format_size_mib

DEFAULT = "JobID,JobName,Partition,User,AllocCPUS,State,ExitCode"
SHORT_STATE = {"PENDING": "PD", "RUNNING": "R"}


def _time(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch)) if epoch else "Unknown"


def _elapsed(j: dict, now: float) -> float:
    if not j.get("start_time"):
        return 0.0
    return max(0.0, (j.get("end_time") or now) - j["start_time"])


def hms(seconds: float) -> str:
    """sacct's durations: [DD-]HH:MM:SS, always with hours."""
    days, rest = divmod(max(0, int(seconds)), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _cpu(seconds: float | None) -> str:
    """sacct's TotalCPU: MM:SS.mmm under an hour, else [DD-]HH:MM:SS."""
    if seconds is None:
        return ""
    if seconds >= 3600:
        return hms(seconds)
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 1000):03d}"


def _exit(j: dict) -> str:
    return f"{j.get('exit_code') or 0}:{j.get('exit_signal') or 0}"


def _state(j: dict) -> str:
    return j["state"]


# name (as sacct spells it) -> (default width, the stored columns it reads, how it is shown)
FIELDS: dict[str, tuple[int, tuple[str, ...], object]] = {
    "JobID": (12, ("id", "array_job_id", "array_task_id"), lambda j, now: j.get("label") or job_label(j)),
    "JobIDRaw": (12, ("id",), lambda j, now: str(j["id"])),
    "JobName": (10, ("name",), lambda j, now: j["name"]),
    "User": (9, ("user",), lambda j, now: j["user"]),
    "UID": (6, ("uid",), lambda j, now: str(j["uid"])),
    "Partition": (10, ("partition",), lambda j, now: j["partition"]),
    "State": (10, ("state",), lambda j, now: _state(j)),
    "ExitCode": (8, ("exit_code", "exit_signal"), lambda j, now: _exit(j)),
    "Submit": (19, ("submit_time",), lambda j, now: _time(j["submit_time"])),
    "Start": (19, ("start_time",), lambda j, now: _time(j.get("start_time"))),
    "End": (19, ("end_time",), lambda j, now: _time(j.get("end_time"))),
    "Elapsed": (10, ("start_time", "end_time"), lambda j, now: hms(_elapsed(j, now))),
    "ElapsedRaw": (10, ("start_time", "end_time"), lambda j, now: str(int(_elapsed(j, now)))),
    "Timelimit": (10, ("time_limit",), lambda j, now: hms(j["time_limit"]) if j["time_limit"] else "UNLIMITED"),
    "TimelimitRaw": (12, ("time_limit",),
                     lambda j, now: str(j["time_limit"] // 60) if j["time_limit"] else "UNLIMITED"),
    "NodeList": (15, ("node",), lambda j, now: j.get("node") or "None assigned"),
    "AllocCPUS": (10, ("cpus", "start_time"), lambda j, now: str(j["cpus"]) if j.get("start_time") else "0"),
    "ReqCPUS": (8, ("cpus",), lambda j, now: str(j["cpus"])),
    "ReqMem": (10, ("memory",), lambda j, now: format_size_mib(j["memory"] // (1024 * 1024))),
    "TotalCPU": (10, ("cpu_time",), lambda j, now: _cpu(j.get("cpu_time"))),
    "CPUTime": (10, ("start_time", "end_time", "cpus"), lambda j, now: hms(_elapsed(j, now) * j["cpus"])),
    "CPUTimeRaw": (10, ("start_time", "end_time", "cpus"), lambda j, now: str(int(_elapsed(j, now) * j["cpus"]))),
    "MaxRSS": (10, ("max_rss",), lambda j, now: f"{j['max_rss'] // 1024}K" if j.get("max_rss") is not None else ""),
    "Reason": (20, ("reason",), lambda j, now: j.get("reason") or "None"),
    "WorkDir": (20, ("chdir",), lambda j, now: j.get("chdir") or ""),
    "NNodes": (8, (), lambda j, now: "1"),
    "NCPUS": (10, ("cpus",), lambda j, now: str(j["cpus"])),
    "Account": (10, ("account",), lambda j, now: j.get("account") or ""),  # as asked: Melon has no accounts
    "Comment": (10, ("comment",), lambda j, now: j.get("comment") or ""),
}
_ALIASES = {"jobidraw": "JobIDRaw", "nodes": "NodeList"}
_BY_LOWER = {name.lower(): name for name in FIELDS} | _ALIASES
FORMS = "comma-separated sacct field names, each with an optional %WIDTH (JobName%30); fields: " + ", ".join(FIELDS)


class Column:
    __slots__ = ("name", "width", "left")

    def __init__(self, name: str, width: int, left: bool | None = None) -> None:
        self.name, self.width = name, width
        self.left = name == "JobID" if left is None else left  # `%-20` left-justifies, as in sacct

    def fit(self, text: str) -> str:
        if len(text) > self.width:
            text = text[:self.width - 1] + "+"
        return text.ljust(self.width) if self.left else text.rjust(self.width)


def parse_format(text: str) -> list[Column]:
    """`JobID,JobName%30,state` -> columns; names in any case, as sacct takes them."""
    out = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, _, width = item.partition("%")
        known = _BY_LOWER.get(name.lower())
        if known is None:
            raise ParseError(f"unknown field {name!r} in --format {text!r}; use {FORMS}")
        digits = width[1:] if width.startswith("-") else width
        if width and not (digits.isascii() and digits.isdigit() and 0 < int(digits) <= 1000):
            raise ParseError(f"bad width {width!r} for {name} in --format {text!r}: a number from 1 to 1000")
        out.append(Column(known, int(digits) if width else FIELDS[known][0], True if width.startswith("-") else None))
    if not out:
        raise ParseError(f"--format {text!r} names no field; use {FORMS}")
    return out


def columns_needed(columns: list[Column]) -> list[str]:
    return list(dict.fromkeys(["id", "array_job_id", "array_task_id", "partition",
                               *(col for c in columns for col in FIELDS[c.name][1])]))


def render(columns: list[Column], jobs: list[dict], now: float, *, header: bool, parsable: str | None) -> str:
    """The table sacct prints: a header, a line of dashes, one line per job; or, with `parsable`
    ("|" ends every line, as -p; "" does not, as -P), the fields whole, joined by `|`."""
    cells = [[FIELDS[c.name][2](j, now) for c in columns] for j in jobs]
    if parsable is not None:
        lines = ["|".join(c.name for c in columns) + parsable] if header else []
        return "\n".join(lines + ["|".join(row) + parsable for row in cells])
    lines = [" ".join(c.fit(c.name) for c in columns), " ".join("-" * c.width for c in columns)] if header else []
    return "\n".join(lines + [" ".join(c.fit(v) for c, v in zip(columns, row)) for row in cells])
