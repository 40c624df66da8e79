"""sacct's `--format` for macct: field names (any case), `Name%width`, and sacct's way of showing them.

Pure: rows from `GET /accounting` in, text out. As in sacct, a value wider than its column is cut
and ends in `+`, JobID is left-justified and every other field right-justified, and `-P` prints
the fields whole, separated by `|`.
"""
from __future__ import annotations


from melon_cli.common import fmt_time, job_label
from melon_cli.units import MEGA, NONE, convert
from melond.errors import ParseError
from melond.spec.gres import tres

DEFAULT = "JobID,JobName,Partition,User,AllocCPUS,State,ExitCode"
SHORT_STATE = {"PENDING": "PD", "RUNNING": "R"}
MIB = 1024 * 1024


class Size:
    """A size as sacct prints it through convert_num_unit: exact by default, in --units if asked.
    A plain class: a namedtuple would cost sacct and macct the import of `collections` (~1.5 ms)."""

    __slots__ = ("num", "unit")

    def __init__(self, num: float, unit: int) -> None:
        self.num, self.unit = num, unit


def _time(epoch: float | None) -> str:
    return fmt_time(epoch, "Unknown")


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
    "ReqMem": (10, ("memory",), lambda j, now: Size(j["memory"] // MIB, MEGA)),
    "TotalCPU": (10, ("cpu_time",), lambda j, now: _cpu(j.get("cpu_time"))),
    "CPUTime": (10, ("start_time", "end_time", "cpus"), lambda j, now: hms(_elapsed(j, now) * j["cpus"])),
    "CPUTimeRAW": (10, ("start_time", "end_time", "cpus"), lambda j, now: str(int(_elapsed(j, now) * j["cpus"]))),
    "MaxRSS": (10, ("max_rss",), lambda j, now: Size(j["max_rss"], NONE) if j.get("max_rss") is not None else ""),
    "Reason": (22, ("reason",), lambda j, now: j.get("reason") or "None"),
    "WorkDir": (20, ("chdir",), lambda j, now: j.get("chdir") or ""),
    "NNodes": (8, ("node",), lambda j, now: str(j.get("num_nodes") or 1)),
    "NTasks": (8, (), lambda j, now: str(j["ntasks"]) if j.get("ntasks") else ""),  # a step's; a job line's is empty
    "NCPUS": (10, ("cpus",), lambda j, now: str(j["cpus"])),
    "Account": (10, ("account",), lambda j, now: j.get("account") or ""),  # as asked: Melon has no accounts
    "Comment": (14, ("comment",), lambda j, now: j.get("comment") or ""),
    # sacct -l's (sacct.h LONG_FIELDS): on a job's own line Slurm leaves its steps' statistics
    # empty (print.c _get_tres_cnt is for steps), and so does Melon, but for MaxRSS above
    "ReqTRES": (10, ("cpus", "memory", "node", "gres_total"), lambda j, now: _tres(j)),
    "AllocTRES": (10, ("cpus", "memory", "start_time", "node", "gres_total"),
                  lambda j, now: _tres(j) if j.get("start_time") else ""),
    "ConsumedEnergy": (14, (), lambda j, now: "0"),  # no energy TRES: INFINITE64 -> 0
    **{name: (13, (), lambda j, now: "Unknown")  # cpu_freq_to_string(NO_VAL): the frequency is a step's
       for name in ("ReqCPUFreqMin", "ReqCPUFreqMax", "ReqCPUFreqGov")},
    **{name: (width, (), lambda j, now: "") for name, width in (
        ("MaxVMSize", 10), ("MaxVMSizeNode", 14), ("MaxVMSizeTask", 14), ("AveVMSize", 10), ("MaxRSSNode", 10),
        ("MaxRSSTask", 10), ("AveRSS", 10), ("MaxPages", 8), ("MaxPagesNode", 12), ("MaxPagesTask", 14),
        ("AvePages", 10), ("MinCPU", 10), ("MinCPUNode", 10), ("MinCPUTask", 10), ("AveCPU", 10),
        ("AveCPUFreq", 10), ("MaxDiskRead", 12), ("MaxDiskReadNode", 15), ("MaxDiskReadTask", 15),
        ("AveDiskRead", 14), ("MaxDiskWrite", 12), ("MaxDiskWriteNode", 16), ("MaxDiskWriteTask", 16),
        ("AveDiskWrite", 14), ("TRESUsageInAve", 14), ("TRESUsageInMax", 14), ("TRESUsageInMaxNode", 18),
        ("TRESUsageInMaxTask", 18), ("TRESUsageInMin", 14), ("TRESUsageInMinNode", 18), ("TRESUsageInMinTask", 18),
        ("TRESUsageInTot", 14), ("TRESUsageOutMax", 15), ("TRESUsageOutMaxNode", 19), ("TRESUsageOutMaxTask", 19),
        ("TRESUsageOutAve", 15), ("TRESUsageOutTot", 15))},
}
#: sacct -l (sacct.h LONG_FIELDS in Slurm 23.11, its abbreviations spelled out).
LONG = ("JobID,JobIDRaw,JobName,Partition,MaxVMSize,MaxVMSizeNode,MaxVMSizeTask,AveVMSize,MaxRSS,MaxRSSNode,"
        "MaxRSSTask,AveRSS,MaxPages,MaxPagesNode,MaxPagesTask,AvePages,MinCPU,MinCPUNode,MinCPUTask,AveCPU,NTasks,"
        "AllocCPUS,Elapsed,State,ExitCode,AveCPUFreq,ReqCPUFreqMin,ReqCPUFreqMax,ReqCPUFreqGov,ReqMem,"
        "ConsumedEnergy,MaxDiskRead,MaxDiskReadNode,MaxDiskReadTask,AveDiskRead,MaxDiskWrite,MaxDiskWriteNode,"
        "MaxDiskWriteTask,AveDiskWrite,ReqTRES,AllocTRES,TRESUsageInAve,TRESUsageInMax,TRESUsageInMaxNode,"
        "TRESUsageInMaxTask,TRESUsageInMin,TRESUsageInMinNode,TRESUsageInMinTask,TRESUsageInTot,TRESUsageOutMax,"
        "TRESUsageOutMaxNode,TRESUsageOutMaxTask,TRESUsageOutAve,TRESUsageOutTot")
_ALIASES = {"jobidraw": "JobIDRaw", "nodes": "NodeList"}
#: Left-justified (a negative width in sacct.c's fields[]).
_LEFT = frozenset({"JobID", "JobIDRaw"})


#: A job's state as its batch step's: the step the limit or a cancel killed is CANCELLED (sacct).
_BATCH_STATE = {"TIMEOUT": "CANCELLED", "PREEMPTED": "CANCELLED", "PENDING": None}


def with_steps(jobs: list[dict]) -> list[dict]:
    """sacct without -X: each job's row, then its `batch` step (a job that started: the batch
    script, with the job's figures) and the steps srun ran in it (`J.0`, `J.1`, ... from the
    rows' `steps`), each a row of its own that the same fields show."""
    out = []
    for job in jobs:
        out.append(job)
        if not job.get("start_time") or "steps" not in job:
            continue
        parent = job.get("label") or job_label(job)
        state = _BATCH_STATE.get(job["state"], job["state"])
        if state:
            out.append({**job, "label": parent + ".batch", "parent": parent, "name": "batch", "partition": "",
                        "state": state, "steps": None, "node": job.get("batch_host") or job.get("node"),
                        "num_nodes": 1, "ntasks": 1})  # the batch script: one task, as Slurm's J.batch
        for st in job["steps"]:
            out.append({**job, "label": f"{parent}.{st['step_id']}", "parent": parent, "name": st["name"],
                        "partition": "", "state": st["state"], "exit_code": st["exit_code"],
                        "exit_signal": st["exit_signal"], "start_time": st["start_time"], "end_time": st["end_time"],
                        "node": st["node"], "cpus": st["cpus"] or job.get("cpus"), "cpu_time": st["cpu_time"],
                        "max_rss": st["max_rss"], "ntasks": st["ntasks"], "steps": None,
                        "num_nodes": st.get("num_nodes") or 1})
    return out


def _tres(j: dict) -> tuple:
    """A job's TRES as sacct prints them (billing, cpu, mem, node; its memory a Size)."""
    return ("billing=", str(j["cpus"]), ",cpu=", str(j["cpus"]), ",mem=", Size(j["memory"] // MIB, MEGA), ",node=",
            str(j.get("num_nodes") or 1), *("," + t for t in tres(j.get("gres_total"))))
_BY_LOWER = {name.lower(): name for name in FIELDS} | _ALIASES
FORMS = "comma-separated sacct field names, each with an optional %WIDTH (JobName%30); fields: " + ", ".join(FIELDS)


class Column:
    __slots__ = ("name", "width", "left")

    def __init__(self, name: str, width: int, left: bool | None = None) -> None:
        self.name, self.width = name, width
        self.left = name in _LEFT if left is None else left  # `%-20` left-justifies, as in sacct

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


def render(columns: list[Column], jobs: list[dict], now: float, *, header: bool, parsable: str | None,
           units: int | None = None, noconvert: bool = False) -> str:
    """The table sacct prints: a header, a line of dashes, one line per job; or, with `parsable`
    ("|" ends every line, as -p; "" does not, as -P), the fields whole, joined by `|`. Sizes are
    in `units` (--units) or kept in their own (--noconvert) if asked."""
    def text(value: object) -> str:
        if isinstance(value, Size):
            return convert(value.num, value.unit, units, noconvert=noconvert)
        return "".join(map(text, value)) if isinstance(value, tuple) else value
    cells = [[text(FIELDS[c.name][2](j, now)) for c in columns] for j in jobs]
    return table(columns, cells, header=header, parsable=parsable)


def table(columns: list[Column], cells: list[list[str]], *, header: bool, parsable: str | None) -> str:
    """Slurm's accounting tables (sacct, sshare, sacctmgr): a header, a line of dashes, the rows
    fitted to their columns; or, with `parsable` ("|" ends every line, as -p; "" not, as -P),
    the fields whole, joined by `|`."""
    if parsable is not None:
        lines = ["|".join(c.name for c in columns) + parsable] if header else []
        return "\n".join(lines + ["|".join(row) + parsable for row in cells])
    lines = [" ".join(c.fit(c.name) for c in columns), " ".join("-" * c.width for c in columns)] if header else []
    return "\n".join(lines + [" ".join(c.fit(v) for c, v in zip(columns, row)) for row in cells])
