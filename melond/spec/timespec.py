"""Parse and format the values users type for job options: times, sizes, host lists, signals.

The parsers follow Slurm's C code so that a script written for sbatch means the same in Melon:
time limits follow ``time_str2secs``/``_is_valid_timespec`` (``src/common/parse_time.c``), memory
sizes follow ``str_to_mbytes`` (``src/common/proc_args.c``) and begin times a subset of
``parse_time``. One deliberate difference: Slurm rounds a time limit up to whole minutes, Melon
keeps the seconds (``0:05`` is 5 s), because an extendable deadline is enforced to the second.
"""

from __future__ import annotations

from melond.errors import ParseError
from melond.spec.charclass import digits
from melond.spec.lazy_re import LazyPattern

__all__ = [
    "MAX_BYTES",
    "MAX_SECONDS",
    "SpecError",
    "expand_bracketed",
    "expand_hostlist",
    "format_duration",
    "format_limit",
    "format_size_mib",
    "parse_begin",
    "parse_extension",
    "parse_signal",
    "parse_size_mib",
    "parse_time_limit",
]


MAX_SECONDS = 100 * 365 * 86400  # the longest time any entrance takes: past any real limit, inside SQLite's integers
MAX_BYTES = 2**60  # the most memory any entrance takes: an exbibyte


class SpecError(ParseError):
    """A value the user typed that Melon cannot read; the message names it and says which forms work."""


TIME_FORMS = (
    "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (a bare number is minutes); "
    "0, -1, UNLIMITED or INFINITE mean no limit"
)
EXTENSION_FORMS = "+D-HH:MM:SS, +HH:MM:SS, +MM:SS or +MM (minutes), the '+' optional; or the older D-HH-MM"
SIZE_FORMS = "a whole number with an optional unit K, M, G or T (e.g. 4000, 500M, 16G, 2TB); no unit means MiB"
BEGIN_FORMS = (
    "now, now+N[seconds|minutes|hours|days|weeks], HH:MM[:SS] [AM|PM], YYYY-MM-DD[THH:MM[:SS]], "
    "midnight, noon, teatime, today or tomorrow"
)

# xstrcasecmp matches these before any parsing; "-1" is the only negative number Slurm accepts.
_UNLIMITED_WORDS = frozenset({"-1", "infinite", "unlimited"})

# _is_valid_timespec: fewest digit groups needed for (dashes, colons); "60:" and "1-2:" fail here.
_MIN_GROUPS = {(0, 0): 1, (0, 1): 2, (0, 2): 3, (1, 0): 1, (1, 1): 3, (1, 2): 4}

# C reads each field into an int; capping the digits keeps values sane and int() cheap.
_MAX_FIELD_DIGITS = 9

_MIB_FROM_UNIT = {
    "k": lambda n: -(-n // 1024),  # str_to_mbytes rounds KiB up to whole MiB
    "m": lambda n: n,
    "g": lambda n: n * 1024,
    "t": lambda n: n * 1024 * 1024,
}
_MAX_MIB = 2**43  # 8 EiB: the byte count still fits a signed 64-bit integer

_NOW = LazyPattern(r"now(?:\s*\+\s*([0-9]{1,9})\s*([a-z]*))?")
_SECONDS_PER_UNIT = {
    "": 1, "second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
    "day": 86400, "days": 86400, "week": 604800, "weeks": 604800,
}
_ISO_DATE = LazyPattern(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[t\s](.*))?")
_BEGIN_TOKEN = LazyPattern(r"\s*(?:([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?\s*(am|pm)?|([a-z]+))")
_NAMED_TIMES = {"midnight": (0, 0, 0), "noon": (12, 0, 0), "elevenses": (11, 0, 0),
                "fika": (15, 0, 0), "teatime": (16, 0, 0)}
_DAY_OFFSETS = {"today": 0, "tomorrow": 1}

_MAX_HOSTS = 65536  # a typo like node[1-999999999] must not exhaust memory
_BRACKET_DEPTH = {"[": 1, "]": -1}
_SIGNAL = LazyPattern(r"(?:([RBrb]{1,2}):)?([A-Za-z0-9]{1,12})(?:@([0-9]{1,5}))?")
_SIGNAL_NAMES = frozenset(
    "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP "
    "TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO POLL PWR SYS".split()
)


def _is_unlimited_word(text: str) -> bool:
    """True for Slurm's case-insensitive spellings of "no limit" (ASCII only, as xstrcasecmp)."""
    return text.isascii() and text.lower() in _UNLIMITED_WORDS


def _valid_shape(text: str) -> bool:
    """Port of ``_is_valid_timespec``: digits, at most one '-' before at most two ':'."""
    groups = dashes = colons = 0
    in_digits = False
    for ch in text:
        if "0" <= ch <= "9":
            if not in_digits:
                groups += 1
                in_digits = True
        elif ch == "-":
            in_digits = False
            dashes += 1
            if colons:
                return False
        elif ch == ":":
            in_digits = False
            colons += 1
        else:
            return False
    if not groups or dashes > 1 or colons > 2:
        return False
    return groups >= _MIN_GROUPS[(dashes, colons)]


def _fields(text: str, sep: str) -> list[int]:
    """The numbers of a digit-group string; an empty string has none."""
    return [int(part) for part in text.split(sep)] if text else []


def _timespec_seconds(text: str) -> int | None:
    """Slurm's ``time_str2secs`` for a finite value; None when the shape is invalid."""
    if not _valid_shape(text) or text.startswith("-"):
        # A leading '-' would make sscanf read negative days; only "-1" is allowed (unlimited).
        return None
    if any(len(field) > _MAX_FIELD_DIGITS for field in text.replace("-", ":").split(":")):
        raise SpecError(f"time {text!r} is too large (at most {_MAX_FIELD_DIGITS} digits a field); use {TIME_FORMS}")
    if "-" in text:
        days_text, _, rest = text.partition("-")
        days = int(days_text)
        hms = _fields(rest, ":") + [0, 0, 0]
        return days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
    values = _fields(text, ":")
    if len(values) == 3:
        return values[0] * 3600 + values[1] * 60 + values[2]
    # One field is minutes and two are minutes:seconds ("3:00" is three minutes, not hours).
    return values[0] * 60 + (values[1] if len(values) == 2 else 0)


def parse_time_limit(text: str) -> int:
    """Read an sbatch ``--time`` value into seconds, 0 meaning unlimited; seconds are kept."""
    if not isinstance(text, str):
        raise SpecError(f"invalid time limit {text!r}: use {TIME_FORMS}")
    if _is_unlimited_word(text):
        return 0
    seconds = _timespec_seconds(text)
    if seconds is None:
        raise SpecError(f"invalid time limit {text!r}: use {TIME_FORMS}")
    return seconds


def parse_extension(text: str) -> int:
    """Read an ``mextend -t`` amount to add, in seconds; it must be finite and positive."""
    if not isinstance(text, str):
        raise SpecError(f"invalid extension {text!r}: use {EXTENSION_FORMS}")
    body = text[1:] if text.startswith("+") else text
    legacy = body.split("-")
    if len(legacy) == 3 and all(digits(g, 9) for g in legacy):  # the original Melon's D-HH-MM
        days, hours, minutes = (int(g) for g in legacy)
        seconds = days * 86400 + hours * 3600 + minutes * 60
    elif _is_unlimited_word(body):
        seconds = 0
    else:
        seconds = _timespec_seconds(body)
        if seconds is None:
            raise SpecError(f"invalid extension {text!r}: use {EXTENSION_FORMS}")
    if seconds <= 0:
        raise SpecError(
            f"invalid extension {text!r}: an extension adds a positive amount of time "
            f"(e.g. +1:00:00 for one hour); it cannot make a limit unlimited"
        )
    return seconds


def _size_parts(text: str) -> tuple[str, str]:
    """`16G` -> ("16", "G"); `2TB` -> ("2", "T"); `500` -> ("500", ""): digits, then a unit with an optional B."""
    body = text[:-1] if len(text) > 1 and text[-1] in "bB" and text[-2] in "kKmMgGtT" else text
    if body and body[-1] in "kKmMgGtT":
        return body[:-1], body[-1]
    return body, ""


def parse_size_mib(text: str) -> int:
    """Read a Slurm memory size (``--mem``) into MiB: K rounds up, no unit means MiB, 0 is allowed."""
    number_text, unit = _size_parts(text) if isinstance(text, str) else ("", "")
    if not digits(number_text, 15) or unit.lower() not in ("", "k", "m", "g", "t"):
        raise SpecError(f"invalid memory size {text!r}: use {SIZE_FORMS}")
    number = int(number_text)
    unit = (unit or "m").lower()
    mib = _MIB_FROM_UNIT[unit](number)
    if mib > _MAX_MIB:
        raise SpecError(f"memory size {text!r} is too large")
    return mib


def format_duration(seconds: int | float | None) -> str:
    """Format seconds as squeue prints times (``0:05``, ``1:02:03``, ``3-01:02:03``); None is UNLIMITED."""
    if seconds is None:
        return "UNLIMITED"
    # Clock skew can make an elapsed time negative; show zero rather than a nonsense value.
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_clock(epoch: float) -> str:
    """A moment as Slurm's commands print one (StartTime, EndTime): local time, to the second."""
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def format_limit(seconds: int | None) -> str:
    """Format a stored time limit, where 0 (or None) means no limit."""
    return "UNLIMITED" if not seconds else format_duration(seconds)


def format_size_mib(mib: int) -> str:
    """Format MiB for people (``512M``, ``4G``, ``1.5G``), never rounding: inexact values stay in M."""
    for unit, scale in (("T", 1024 * 1024), ("G", 1024)):
        hundredths, remainder = divmod(mib * 100, scale)
        if mib >= scale and not remainder:
            whole, frac = divmod(hundredths, 100)
            number = str(whole) if not frac else f"{whole}.{frac:02d}".rstrip("0")
            return f"{number}{unit}"
    return f"{mib}M"


def _clock(hour: int, minute: int, second: int, meridiem: str | None) -> tuple[int, int, int]:
    """Validate a wall-clock time the way parse_time's ``_get_time`` does (12pm is noon, 12am midnight)."""
    if hour > 23 or minute > 59 or second > 59 or (meridiem and hour > 12):
        raise ValueError("clock out of range")
    if meridiem:
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    return hour, minute, second


def _at(day: _dt.date, clock: tuple[int, int, int]) -> float:
    """Epoch seconds of a local wall-clock time on a local date."""
    import datetime as _dt
    return _dt.datetime(day.year, day.month, day.day, *clock).timestamp()


def _begin_words(text: str) -> tuple[int | None, tuple[int, int, int] | None]:
    """Split "tomorrow 16:00"-style text into a day offset and a clock time."""
    day: int | None = None
    clock: tuple[int, int, int] | None = None
    pos = 0
    while pos < len(text):
        match = _BEGIN_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError("unreadable")
        pos = match.end()
        hour, minute, second, meridiem, word = match.groups()
        if word is None:
            found, is_day = _clock(int(hour), int(minute), int(second or 0), meridiem), False
        elif word in _DAY_OFFSETS:
            found, is_day = _DAY_OFFSETS[word], True
        elif word in _NAMED_TIMES:
            found, is_day = _NAMED_TIMES[word], False
        else:
            raise ValueError(f"unknown word {word}")
        if (day if is_day else clock) is not None:
            raise ValueError("given twice")
        if is_day:
            day = found
        else:
            clock = found
    return day, clock


def parse_begin(text: str, now: float) -> float:
    """Read an sbatch ``--begin`` time (local time zone) into epoch seconds."""
    import datetime as _dt  # here, not at import: most submissions never begin later
    spec = text.strip().lower() if isinstance(text, str) else ""
    try:
        now_match = _NOW.fullmatch(spec)
        if now_match:
            count, unit = now_match.groups()
            return now + int(count or 0) * _SECONDS_PER_UNIT[unit or ""]
        iso = _ISO_DATE.fullmatch(spec)
        if iso:
            year, month, mday, rest = iso.groups()
            day = _dt.date(int(year), int(month), int(mday))
            extra_day, clock = _begin_words(rest) if rest else (None, None)
            if extra_day is not None:
                raise ValueError("a date cannot be followed by today or tomorrow")
            return _at(day, clock or (0, 0, 0))
        offset, clock = _begin_words(spec)
        if offset is None and clock is None:
            raise ValueError("empty")
        today = _dt.datetime.fromtimestamp(now).date()
        if offset is not None:
            return _at(today + _dt.timedelta(days=offset), clock or (0, 0, 0))
        # A clock time alone means its next occurrence: today, or tomorrow if it has passed.
        when = _at(today, clock)
        return when if when > now else _at(today + _dt.timedelta(days=1), clock)
    except (KeyError, ValueError, OverflowError, OSError) as exc:
        raise SpecError(f"invalid begin time {text!r}: use {BEGIN_FORMS}") from exc


ACCT_TIME_FORMS = (
    "now, now-N[seconds|minutes|hours|days|weeks] (now-1hour), today, midnight, noon, YYYY-MM-DD[THH:MM[:SS]], "
    "MM/DD[/YY], MM/DD[/YY]-HH:MM[:SS] or HH:MM[:SS] (today)"
)
_NOW_OFFSET = LazyPattern(r"now\s*([+-])\s*([0-9]{1,9})\s*([a-z]*)")
_US_DATE = LazyPattern(r"([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{2}|[0-9]{4}))?(?:-([0-9:]+))?")


def parse_acct_time(text: str, now: float) -> float:
    """Read an sacct ``-S``/``-E`` time (local time zone) into epoch seconds. Unlike ``--begin``,
    a clock time alone is today's (accounting looks back), and ``now-1hour`` counts backwards."""
    import datetime as _dt
    spec = text.strip().lower() if isinstance(text, str) else ""
    try:
        if spec == "now":
            return now
        offset = _NOW_OFFSET.fullmatch(spec)
        if offset:
            sign, count, unit = offset.groups()
            return now + (1 if sign == "+" else -1) * int(count) * _SECONDS_PER_UNIT[unit]
        today = _dt.datetime.fromtimestamp(now).date()
        us = _US_DATE.fullmatch(spec)
        if us:
            month, mday, year, clock = us.groups()
            year = today.year if year is None else int(year) + (2000 if len(year) == 2 else 0)
            return _at(_dt.date(year, int(month), int(mday)), _clock_text(clock) if clock else (0, 0, 0))
        if _ISO_DATE.fullmatch(spec) or spec in ("today", "tomorrow"):
            return parse_begin(spec, now)
        if spec in _NAMED_TIMES:
            return _at(today, _NAMED_TIMES[spec])
        return _at(today, _clock_text(spec))
    except (KeyError, ValueError, OverflowError, OSError, SpecError) as exc:
        raise SpecError(f"invalid time {text!r}: use {ACCT_TIME_FORMS}") from exc


def _clock_text(text: str) -> tuple[int, int, int]:
    """``HH:MM`` or ``HH:MM:SS``."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(digits(p, 2) for p in parts):
        raise ValueError(f"not a clock time: {text!r}")
    return _clock(*(int(p) for p in parts), *([0] if len(parts) == 2 else []), None)


def _split_top_level(text: str) -> list[str]:
    """Split a host list on the commas that are outside brackets."""
    parts, depth, start = [], 0, 0
    for index, ch in enumerate(text):
        depth += _BRACKET_DEPTH.get(ch, 0)
        if depth not in (0, 1):
            raise SpecError(f"unbalanced brackets in host list {text!r}")
        if ch == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth:
        raise SpecError(f"unbalanced brackets in host list {text!r}")
    return parts + [text[start:]]


def _range_numbers(body: str, pattern: str) -> list[str]:
    """The numbers one bracket stands for: ``1-3,05`` gives 1 2 3 05 (width kept from the low end)."""
    numbers: list[str] = []
    for item in body.split(","):
        low, dash, high = item.partition("-")
        high = high if dash else low
        if not (digits(low) and digits(high)) or max(len(low), len(high)) > 9:
            raise SpecError(f"bad range {item!r} in {pattern!r}: use numbers like node[1-4,7]")
        if int(high) < int(low) or len(numbers) + int(high) - int(low) >= _MAX_HOSTS:
            raise SpecError(f"bad range {item!r} in {pattern!r}")
        numbers += [str(n).zfill(len(low)) for n in range(int(low), int(high) + 1)]
    return numbers


def _expand_host(pattern: str) -> list[str]:
    """Expand one name with bracket ranges, e.g. ``rack[1-2]n[01-02]``, keeping zero padding."""
    names, rest = [""], pattern
    while (opening := rest.find("[")) >= 0:
        closing = rest.index("]", opening)
        numbers = _range_numbers(rest[opening + 1:closing], pattern)
        if len(names) * len(numbers) > _MAX_HOSTS:
            raise SpecError(f"host list {pattern!r} names too many hosts")
        names = [name + rest[:opening] + number for name in names for number in numbers]
        rest = rest[closing + 1:]
    return [name + rest for name in names]


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list (``node[1-3,5],gpu01``) into distinct names, in order."""
    if "/" in text:
        raise SpecError("a node list file is not supported; list the node names")
    return expand_bracketed(text)


def expand_bracketed(text: str) -> list[str]:
    """Names with Slurm's bracket ranges, comma-separated (``node[1-3]``, gres.conf's
    ``/dev/nvidia[0,2-3]``), into distinct names, in order."""
    names: list[str] = []
    for part in _split_top_level(text):
        if part:
            names += _expand_host(part)
        if len(names) > _MAX_HOSTS:
            raise SpecError("the host list names too many hosts")
    if not names:
        raise SpecError("give one or more node names, e.g. node1,node[3-5]")
    return list(dict.fromkeys(names))


def ranged_hostlist(names: list[str]) -> str:
    """Names as Slurm prints a host list (hostlist_ranged_string in src/common/hostlist.c): sorted,
    hosts that differ in a trailing number of one width folded, ``node[1-3,5],gpu01``."""
    groups: dict[tuple[str, int], list[int]] = {}
    plain: list[str] = []
    for name in dict.fromkeys(names):
        digits = len(name) - len(name.rstrip("0123456789"))
        if digits:
            groups.setdefault((name[:-digits], digits), []).append(int(name[-digits:]))
        else:
            plain.append(name)
    out = [(name, "") for name in plain]
    for (prefix, width), numbers in groups.items():
        numbers.sort()
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        if len(numbers) == 1:
            out.append((prefix, f"{numbers[0]:0{width}d}"))
            continue
        ranges = ",".join(f"{a:0{width}d}" if a == b else f"{a:0{width}d}-{b:0{width}d}" for a, b in runs)
        out.append((prefix, f"[{ranges}]"))
    return ",".join(prefix + rest for prefix, rest in sorted(out))


def parse_signal(text: str) -> str:
    """Check an sbatch ``--signal`` value, ``[{R|B}:]<num|name>[@seconds]``, and return it as typed."""
    signal_spec(text)
    return text


def signal_name(text: str | int) -> str | int:
    """A signal as `mcancel -s` takes it (USR1, SIGUSR1, usr1, or a number 1-64): its name
    without SIG, or its number. The node turns a name into its own number (they differ between
    architectures), so neither the CLI nor melond imports `signal` (its enums cost a CLI ~3 ms)."""
    if isinstance(text, int) and not isinstance(text, bool):
        name = str(text)
    else:
        name = text.strip().upper() if isinstance(text, str) else ""
    name = name[3:] if name.startswith("SIG") and name[3:] in _SIGNAL_NAMES else name
    if name in _SIGNAL_NAMES:
        return name
    if name.isascii() and name.isdigit() and 1 <= int(name) <= 64:
        return int(name)
    raise SpecError(f"invalid signal {text!r}: use a name such as USR1, TERM or INT (SIG optional), or a number 1-64")


def signal_spec(text: str) -> tuple[int, int, str]:
    """An sbatch ``--signal`` value as (signal number, seconds before the deadline; default 60,
    whom it is for): `steps`, what srun started, or with ``B:`` the `batch` shell alone, as in
    sbatch (``R:`` concerns reservations, which Melon does not have)."""
    match = _SIGNAL.fullmatch(text) if isinstance(text, str) else None
    name = match.group(2).upper() if match else ""
    name = name[3:] if name.startswith("SIG") and name[3:] in _SIGNAL_NAMES else name
    known = name in _SIGNAL_NAMES or (name.isdigit() and 1 <= int(name) <= 64)
    if not match or not known or int(match.group(3) or 0) > 65535:
        raise SpecError(f"invalid signal {text!r}: use [B:]SIGNAL[@SECONDS], e.g. USR1@120 or B:TERM@60")
    import signal  # only here: the CLIs import this module and must start fast

    number = int(name) if name.isdigit() else int(signal.Signals[f"SIG{name}"])
    to = "batch" if "B" in (match.group(1) or "").upper() else "steps"
    return number, int(match.group(3)) if match.group(3) else 60, to
