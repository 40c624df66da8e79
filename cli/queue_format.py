"""squeue's `-o/--format` for mqueue (and, with codes of their own, sinfo's and sprio's):
`%[.][width]code` fields and literal text between them; and squeue's and sprio's `-S` sort keys.

Pure: a format string in, rows of text out. `%.10i` is right-justified in 10 columns, `%10i`
left-justified; a field is cut to its width, as squeue cuts it. Each code names the API fields
it reads, so mqueue asks melond for only those (`GET /jobs?fields=`).
"""
from __future__ import annotations


from melon_cli.common import fmt_time, job_label
from melond.errors import ParseError
from melond.spec.gres import format_gres, parse_list
from melond.spec.timespec import format_duration, format_limit, format_size_mib

TYPE_CHECKING = False  # as in cli.args: collections.abc would cost mqueue's common path its import
if TYPE_CHECKING:
    from collections.abc import Container

#: squeue's own default, `squeue -o` without `-o`: the columns mqueue shows unless told otherwise.
DEFAULT = "%.18i %.9P %.8j %.8u %.2t %.10M %.10l %.6D %R"


def _label(j: dict) -> str:
    """The label melond folded the line under (`13_[5-9%3]`), else the job's own."""
    return j.get("label") or job_label(j)


def _left(j: dict, now: float) -> str:
    if not j["time_limit"]:
        return "UNLIMITED"
    if j["state"] != "R":
        return format_duration(j["time_limit"])
    return format_duration(max(0.0, j["time_limit"] - j["elapsed"]))


ENDING_SHARE = 0.1  # a running job in the last tenth of its limit is marked


def time_left(j: dict) -> str:
    """What mqueue and mshow show as time left: squeue's %L, with `!` after it for a running job in
    the last 10 % of its limit (time to extend it, or to let it end)."""
    text = _left(j, 0.0)
    ending = j["state"] == "R" and j["time_limit"] and j["time_limit"] - j["elapsed"] <= ENDING_SHARE * j["time_limit"]
    return text + "!" if ending else text


def _start(j: dict, now: float) -> str:
    return fmt_time(j.get("start_time") or j.get("expected_start"))


def _end(j: dict, now: float) -> str:
    if j.get("end_time"):
        return fmt_time(j["end_time"])
    if j.get("start_time") and j["time_limit"]:
        return fmt_time(j["start_time"] + j["time_limit"])
    if j.get("expected_start") and j["time_limit"]:
        return fmt_time(j["expected_start"] + j["time_limit"])
    return "N/A"


def _reason_or_node(j: dict, now: float) -> str:
    where = j.get("node_list") or j.get("node")
    return where if where and j["state"] not in ("PD",) else f"({j.get('reason') or 'None'})"


#: What a field melond withholds shows (another user's working directory or command: their
#: owner's and operators' only, so the job's JSON leaves them out).
WITHHELD = "N/A"


def _command(j: dict, now: float) -> str:
    if "script_path" not in j:
        return WITHHELD
    return j["script_path"] or "(wrap)"


def _task(j: dict, now: float) -> str:
    label = _label(j)
    return label.partition("_")[2] if "_" in label else "N/A"


# code -> (header, API fields it reads, how it is shown)
CODES: dict[str, tuple[str, tuple[str, ...], object]] = {
    "i": ("JOBID", ("id", "array_job_id", "array_task_id"), lambda j, now: _label(j)),
    "A": ("JOBID", ("id",), lambda j, now: str(j["id"])),  # each array task's own id
    "F": ("ARRAY_JOB_ID", ("id", "array_job_id"), lambda j, now: str(j.get("array_job_id") or j["id"])),
    "K": ("ARRAY_TASK_ID", ("id", "array_job_id", "array_task_id"), _task),
    "a": ("ACCOUNT", ("account",), lambda j, now: j.get("account") or "(null)"),
    "q": ("QOS", ("slurm_options",), lambda j, now: (j.get("slurm_options") or {}).get("qos") or "normal"),
    "Q": ("PRIORITY", ("priority",), lambda j, now: str(j.get("priority") or 0)),
    "j": ("NAME", ("name",), lambda j, now: j["name"]),
    "u": ("USER", ("user",), lambda j, now: j["user"]),
    "t": ("ST", ("state",), lambda j, now: j["state"]),
    "T": ("STATE", ("state_name",), lambda j, now: j["state_name"]),
    "M": ("TIME", ("elapsed",), lambda j, now: format_duration(j["elapsed"])),
    "l": ("TIME_LIMIT", ("time_limit",), lambda j, now: format_limit(j["time_limit"])),
    "L": ("TIME_LEFT", ("time_limit", "state", "elapsed"), _left),
    "D": ("NODES", ("num_nodes",), lambda j, now: str(j.get("num_nodes") or 1)),
    "C": ("CPUS", ("cpus",), lambda j, now: str(j["cpus"])),
    "m": ("MIN_MEMORY", ("memory",), lambda j, now: format_size_mib(j["memory"] // (1024 * 1024))),
    "P": ("PARTITION", ("partition",), lambda j, now: j["partition"]),
    "N": ("NODELIST", ("node_list",), lambda j, now: j.get("node_list") or j.get("node") or ""),
    "B": ("EXEC_HOST", ("node",), lambda j, now: j.get("node") or "n/a"),
    "b": ("TRES_PER_NODE", ("gres",), lambda j, now: j.get("gres") and format_gres(parse_list(j["gres"]), "gres/") or "N/A"),
    "R": ("NODELIST(REASON)", ("node", "node_list", "state", "reason"), _reason_or_node),
    "r": ("REASON", ("reason",), lambda j, now: j.get("reason") or "None"),
    "S": ("START_TIME", ("start_time", "expected_start"), _start),
    "V": ("SUBMIT_TIME", ("submit_time",), lambda j, now: fmt_time(j["submit_time"])),
    "e": ("END_TIME", ("end_time", "start_time", "time_limit", "expected_start"), _end),
    "Z": ("WORK_DIR", ("chdir",), lambda j, now: j.get("chdir") or WITHHELD),
    "o": ("COMMAND", ("script_path",), _command),
}
FORMS = ("write fields as %[.][width]CODE, e.g. \"%.18i %.9P %.8j %T\" (the '.' right-justifies); codes: "
         + " ".join(f"%{c} ({h})" for c, (h, _, _) in CODES.items()) + "; %% is a literal %")


#: Times squeue prints whole when right-justified (print.c _print_secs with cut_output false):
#: `%.9l` shows a limit of 10-00:00:00 in full.
WHOLE = frozenset({"M", "l", "L"})


class Field:
    __slots__ = ("code", "width", "right")

    def __init__(self, code: str, width: int | None, right: bool) -> None:
        self.code, self.width, self.right = code, width, right

    def fit(self, text: str, title: bool = False) -> str:
        if self.width is None:
            return text
        if not (self.right and self.code in WHOLE and not title):
            text = text[:self.width]
        return text.rjust(self.width) if self.right else text.ljust(self.width)


def parse_format(text: str, codes: dict = CODES, forms: str = FORMS) -> list[Field | str]:
    """`%.18i %j|%T` -> [Field(i, 18, right), " ", Field(j), "|", Field(T)]; `codes` is squeue's
    unless another command's (sinfo's, sprio's) is given, with the `forms` its errors name."""
    out: list[Field | str] = []
    literal, i = "", 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            literal += ch
            i += 1
            continue
        if text[i + 1:i + 2] == "%":
            literal, i = literal + "%", i + 2
            continue
        j = i + 1
        right = text[j:j + 1] == "."
        j += right
        k = j
        while k < len(text) and text[k] in "0123456789":
            k += 1
        code = text[k:k + 1]
        if code not in codes:
            shown = text[i:k + 1] or "%"
            raise ParseError(f"unknown format field {shown!r} in {text!r}; {forms}")
        if literal:
            out.append(literal)
            literal = ""
        width = int(text[j:k]) if k > j else None
        if width is not None and width > 1000:
            raise ParseError(f"field width {width} in {text!r} is too wide (at most 1000)")
        out.append(Field(code, width, right))
        i = k + 1
    if literal:
        out.append(literal)
    return out


SORT_FORMS = "a comma list of format codes, each optionally after + or - (descending), e.g. -S -t,i or -S P,-M"


def parse_sort(text: str, codes: Container[str] = CODES, forms: str = SORT_FORMS) -> list[tuple[str, bool]]:
    """squeue's and sprio's -S: `-t,i` -> [("t", True), ("i", False)], the first key first."""
    out = []
    for item in filter(None, text.split(",")):
        descending = item.startswith("-")
        code = item.lstrip("+-")
        if code not in codes:
            raise ParseError(f"unknown sort field {item!r} in -S {text!r}; {forms}")
        out.append((code, descending))
    if not out:
        raise ParseError(f"-S {text!r} names no field; {forms}")
    return out


#: squeue -O/--Format names and the % code each prints.
LONG_NAMES = {
    "jobid": "i", "jobarrayid": "i", "arrayjobid": "F", "arraytaskid": "K", "name": "j", "username": "u",
    "account": "a", "qos": "q", "priority": "Q",
    "userid": "u", "state": "T", "statecompact": "t", "timeused": "M", "timelimit": "l", "timeleft": "L",
    "numnodes": "D", "numcpus": "C", "minmemory": "m", "partition": "P", "nodelist": "N", "exechost": "B",
    "tres-per-node": "b", "reasonlist": "R", "reason": "r", "starttime": "S", "submittime": "V", "endtime": "e",
    "workdir": "Z", "command": "o",
}
LONG_FORMS = ("write -O fields as NAME[:[.][SIZE][SUFFIX]],..., e.g. \"jobid:10,state:.12,name\" (20 columns "
              "unless SIZE is given); names: " + ", ".join(LONG_NAMES))


def parse_long_format(text: str) -> list[Field | str]:
    """squeue -O: `jobid:10,state:.12 ,name` -> fields of 20 columns unless sized, each followed by
    its suffix (the text after its size)."""
    out: list[Field | str] = []
    for item in text.split(","):
        name, _, spec = item.partition(":")
        code = LONG_NAMES.get(name.strip().lower())
        if code is None:
            raise ParseError(f"unknown -O field {name.strip()!r} in {text!r}; {LONG_FORMS}")
        right = spec.startswith(".")
        spec = spec[right:]
        digits = len(spec) - len(spec.lstrip("0123456789"))
        width = int(spec[:digits]) if digits else 20
        if width > 1000:
            raise ParseError(f"field width {width} in {text!r} is too wide (at most 1000)")
        out.append(Field(code, width or None, right))  # `:0`, as squeue's long layouts end: the text whole
        if spec[digits:]:
            out.append(spec[digits:])
    return out


def fields_needed(spec: list[Field | str]) -> list[str]:
    return list(dict.fromkeys(f for item in spec if isinstance(item, Field) for f in CODES[item.code][1]))


def header(spec: list[Field | str], codes: dict = CODES) -> str:
    return "".join(item.fit(codes[item.code][0], title=True) if isinstance(item, Field) else item
                   for item in spec).rstrip()


def render(spec: list[Field | str], job: dict, now: float, codes: dict = CODES) -> str:
    return "".join(item.fit(codes[item.code][2](job, now)) if isinstance(item, Field) else item
                   for item in spec).rstrip()
