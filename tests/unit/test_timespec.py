"""Tests for melond.timespec: Slurm's own test vectors, tables of forms, and properties."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.timespec import (
    SpecError,
    expand_hostlist,
    format_duration,
    format_limit,
    format_size_mib,
    parse_acct_time,
    parse_begin,
    parse_extension,
    parse_signal,
    parse_size_mib,
    parse_time_limit,
)

CONFORMANCE = Path(__file__).resolve().parents[1] / "data" / "sbatch-conformance"


def _rows(name: str) -> list[dict[str, str]]:
    """Rows of a conformance TSV (plain tabs, no quoting)."""
    path = CONFORMANCE / name
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _time_cases() -> list:
    """Every executable row of slurm_time_cases.tsv, as pytest params."""
    cases = []
    for row in _rows("slurm_time_cases.tsv"):
        text = json.loads(row["input_json"])
        if text is None or row["expected"].startswith("(disabled"):
            continue  # C-only NULL pointer; and the case upstream disabled (32-bit overflow)
        cases.append(pytest.param(row, id=f"{row['source_line']}:{text!r}"))
    return cases


def _mem_cases() -> list:
    """Every row of slurm_mem_cases_derived.tsv, as pytest params."""
    return [pytest.param(row, id=repr(json.loads(row["input_json"]))) for row in _rows("slurm_mem_cases_derived.tsv")]


@pytest.mark.parametrize("row", _time_cases())
def test_slurm_time_vectors(row: dict[str, str]) -> None:
    text = json.loads(row["input_json"])
    expected = row["expected"]
    if expected == "NO_VAL":
        with pytest.raises(SpecError):
            parse_time_limit(text)
    elif expected in ("INFINITE", "0"):
        assert parse_time_limit(text) == 0
    elif row["unit"] == "minutes":
        # Slurm stores whole minutes (rounded up); Melon keeps seconds, which round to the same.
        assert math.ceil(parse_time_limit(text) / 60) == int(expected)
    else:
        assert parse_time_limit(text) == int(expected)


@pytest.mark.parametrize("row", _mem_cases())
def test_slurm_memory_vectors(row: dict[str, str]) -> None:
    text = json.loads(row["input_json"])
    if row["expected_mebibytes"].startswith("NO_VAL64"):
        with pytest.raises(SpecError):
            parse_size_mib(text)
    else:
        mib = parse_size_mib(text)
        assert mib == int(row["expected_mebibytes"])
        assert mib * 1024 * 1024 == int(row["expected_bytes"])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),  # a bare number is minutes
        ("3000", 180000),
        ("30:00", 1800),
        ("3:00", 180),  # minutes:seconds, not hours
        ("0:05", 5),  # seconds are kept, not rounded to a minute
        ("00:5:00", 300),
        ("71:59:59", 259199),
        ("1000:00:00", 3600000),
        ("0:60:0", 3600),  # fields are not range-checked
        ("0-6", 21600),  # days-hours
        ("1-0", 86400),
        ("5-0:0", 432000),
        ("1-00:00", 86400),
        ("7-23:50:00", 690600),
        ("5-", 432000),  # sscanf reads the days and stops
        ("0", 0),
        ("0:0:0", 0),
        ("-1", 0),
        ("UNLIMITED", 0),
        ("unlimited", 0),
        ("Infinite", 0),
    ],
)
def test_time_limit_forms(text: str, seconds: int) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["garbage", "1:2:3:4", "-5", "-01", "60:", ":30", "1-2:", "1-2-3", " 0:0:0 ", "", "1.5", "+5", "1h",
     "١٢", "9" * 12, "INFINITE ", "unlimitedd"],
)
def test_time_limit_errors(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_time_limit(text)
    assert "HH:MM:SS" in str(info.value)  # the message says which forms work


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:00:00", 3600),
        ("+1:00:00", 3600),
        ("+1-00:00:00", 86400),
        ("90", 5400),
        ("+30", 1800),
        ("0-01-00", 3600),  # the seed's D-HH-MM form
        ("+2-00-30", 2 * 86400 + 1800),
        ("0:05", 5),
    ],
)
def test_extension_forms(text: str, seconds: int) -> None:
    assert parse_extension(text) == seconds


@pytest.mark.parametrize("text", ["0", "+0", "0:0:0", "0-00-00", "UNLIMITED", "+infinite", "-1", "-5", "abc", "", "+"])
def test_extension_errors(text: str) -> None:
    with pytest.raises(SpecError):
        parse_extension(text)


def test_extension_refuses_unlimited_with_a_reason() -> None:
    with pytest.raises(SpecError, match="unlimited"):
        parse_extension("UNLIMITED")


@pytest.mark.parametrize(
    ("text", "mib"),
    [("0", 0), ("1", 1), ("512M", 512), ("4G", 4096), ("4g", 4096), ("4GB", 4096), ("1t", 1048576), ("2K", 1)],
)
def test_size_forms(text: str, mib: int) -> None:
    assert parse_size_mib(text) == mib


@pytest.mark.parametrize("text", ["12Q", "-1G", "1.5G", "4GiB", "G", "", " 4G", "+4G", "4 G", "4GBB", "9" * 20])
def test_size_errors(text: str) -> None:
    with pytest.raises(SpecError, match="K, M, G or T|too large"):
        parse_size_mib(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (5, "0:05"), (754, "12:34"), (3723, "1:02:03"), (3 * 86400 + 3723, "3-01:02:03"),
     (86400, "1-00:00:00"), (None, "UNLIMITED"), (-3, "0:00"), (59.9, "0:59")],
)
def test_format_duration(seconds: int | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "UNLIMITED"), (None, "UNLIMITED"), (60, "1:00"), (90000, "1-01:00:00")]
)
def test_format_limit(seconds: int | None, text: str) -> None:
    assert format_limit(seconds) == text


@pytest.mark.parametrize(
    ("mib", "text"),
    [(512, "512M"), (4096, "4G"), (1536, "1.5G"), (1280, "1.25G"), (1048576, "1T"), (1572864, "1.5T"),
     (1025, "1025M"), (100000, "100000M"), (0, "0M")],
)
def test_format_size(mib: int, text: str) -> None:
    assert format_size_mib(mib) == text


# A fixed local wall-clock moment; expectations are built with the same local-time rules.
NOW = dt.datetime(2024, 5, 10, 15, 30, 0).timestamp()


def _local(*fields: int) -> float:
    return dt.datetime(*fields).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("now+60", NOW + 60),
        ("now+90seconds", NOW + 90),
        ("now+5minutes", NOW + 300),
        ("now+2hours", NOW + 7200),
        ("now + 1 hour", NOW + 3600),
        ("now+3days", NOW + 3 * 86400),
        ("now+1week", NOW + 604800),
        ("16:00", _local(2024, 5, 10, 16, 0)),  # later today
        ("16:00:30", _local(2024, 5, 10, 16, 0, 30)),
        ("15:00", _local(2024, 5, 11, 15, 0)),  # already past: tomorrow
        ("4:00pm", _local(2024, 5, 10, 16, 0)),
        ("4:00 PM", _local(2024, 5, 10, 16, 0)),
        ("12:00am", _local(2024, 5, 11, 0, 0)),
        ("12:30pm", _local(2024, 5, 11, 12, 30)),
        ("midnight", _local(2024, 5, 11, 0, 0)),
        ("noon", _local(2024, 5, 11, 12, 0)),
        ("teatime", _local(2024, 5, 10, 16, 0)),
        ("today", _local(2024, 5, 10, 0, 0)),
        ("tomorrow", _local(2024, 5, 11, 0, 0)),
        ("tomorrow 09:15", _local(2024, 5, 11, 9, 15)),
        ("noon tomorrow", _local(2024, 5, 11, 12, 0)),
        ("2024-06-01", _local(2024, 6, 1, 0, 0)),
        ("2024-06-01T08:30", _local(2024, 6, 1, 8, 30)),
        ("2024-06-01T08:30:15", _local(2024, 6, 1, 8, 30, 15)),
    ],
)
def test_begin_forms(text: str, expected: float) -> None:
    assert parse_begin(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "25:00", "12:60", "13:00pm", "2024-13-01", "2024-02-30", "now+5fortnights", "now+",
     "tomorrow today", "16:00 17:00", "2024-06-01Ttomorrow", "now-5"],
)
def test_begin_errors(text: str) -> None:
    with pytest.raises(SpecError, match="YYYY-MM-DD"):
        parse_begin(text, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("now-1hour", NOW - 3600),
        ("now-30minutes", NOW - 1800),
        ("now+2days", NOW + 2 * 86400),
        ("midnight", _local(2024, 5, 10, 0, 0)),  # today's: accounting looks back
        ("08:00", _local(2024, 5, 10, 8, 0)),
        ("2024-04-30", _local(2024, 4, 30, 0, 0)),
        ("2024-04-30T08:15", _local(2024, 4, 30, 8, 15)),
        ("04/30", _local(2024, 4, 30, 0, 0)),
        ("04/30/23", _local(2023, 4, 30, 0, 0)),
        ("4/30/2023-08:15:30", _local(2023, 4, 30, 8, 15, 30)),
    ],
)
def test_accounting_time_forms(text: str, expected: float) -> None:
    assert parse_acct_time(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "25:00", "13/40", "now-1fortnight", "02/30", "now-", "1:2:3:4"])
def test_accounting_time_errors_name_the_value(text: str) -> None:
    with pytest.raises(SpecError, match="now-1hour") as err:
        parse_acct_time(text, NOW)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("node1", ["node1"]),
        ("node[1-3,5]", ["node1", "node2", "node3", "node5"]),
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("a,b,a", ["a", "b"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("gpu[7],cpu[9-10]", ["gpu7", "cpu9", "cpu10"]),
    ],
)
def test_hostlist(text: str, names: list[str]) -> None:
    assert expand_hostlist(text) == names


@pytest.mark.parametrize(
    "text", ["", ",", "node[1-", "node]1[", "node[3-1]", "node[a-b]", "n[1-99999999]", "/etc/hosts"]
)
def test_hostlist_errors(text: str) -> None:
    with pytest.raises(SpecError):
        expand_hostlist(text)


@pytest.mark.parametrize("text", ["USR1", "SIGUSR1@120", "B:TERM@60", "10", "R:usr2"])
def test_signal_forms(text: str) -> None:
    assert parse_signal(text) == text


@pytest.mark.parametrize("text", ["", "FOO", "0", "65", "USR1@99999999", "USR1@", "X:USR1"])
def test_signal_errors(text: str) -> None:
    with pytest.raises(SpecError):
        parse_signal(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_time_limit(format_duration(seconds)) == seconds


@given(st.integers(min_value=1, max_value=10**9))
def test_extension_round_trip(seconds: int) -> None:
    assert parse_extension("+" + format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**40))
def test_size_round_trip_in_mib(mib: int) -> None:
    assert parse_size_mib(f"{mib}M") == parse_size_mib(str(mib)) == mib


def _only_spec_errors(text: str) -> None:
    """Every parser either returns or raises SpecError, whatever the text."""
    for parse in (parse_time_limit, parse_extension, parse_size_mib, expand_hostlist, parse_signal,
                  lambda value: parse_begin(value, NOW)):
        try:
            parse(text)
        except SpecError:
            pass


@given(st.text())
def test_parsers_raise_only_spec_errors(text: str) -> None:
    _only_spec_errors(text)


@given(st.text(alphabet="0123456789-:+kKmMgGtTbB[],unlimitedINFTnowpa +", max_size=30))
def test_parsers_raise_only_spec_errors_on_near_misses(text: str) -> None:
    _only_spec_errors(text)
