"""macct's sacct fields: widths, cutting with '+', justification, parsable lines, refusals."""
from __future__ import annotations

import pytest

from melon_cli.acct_format import FIELDS, hms, parse_format, render
from melond.errors import ParseError

JOB = {"id": 7, "array_job_id": 5, "array_task_id": 2, "name": "analysis-run", "user": "ana", "uid": 1000,
       "partition": "main", "state": "CANCELLED", "reason": None, "exit_code": 0, "exit_signal": 15,
       "submit_time": 100.0, "start_time": 200.0, "end_time": 3861.5, "time_limit": 7200, "node": "n1",
       "cpus": 2, "memory": 2 * 1024 ** 3, "cpu_time": 65.25, "max_rss": 300 * 1024 ** 2, "chdir": "/w"}


def test_sacct_table_and_parsable_forms() -> None:
    cols = parse_format("jobid,JobName%8,State,exitcode,Elapsed,Timelimit,TotalCPU,CPUTime,MaxRSS,ReqMem")
    text = render(cols, [JOB], 0.0, header=True, parsable=None).splitlines()
    assert text[0].split() == ["JobID", "JobName", "State", "ExitCode", "Elapsed", "Timelimit", "TotalCPU",
                               "CPUTime", "MaxRSS", "ReqMem"]
    assert text[2].split() == ["5_2", "analysi+", "CANCELLED", "0:15", "01:01:01", "02:00:00", "01:05.250",
                               "02:02:03", "300M", "2G"]  # convert_num_unit: exact, so 300M
    assert text[2].startswith("5_2         ")  # JobID left-justified in 12
    assert render(cols[:2], [JOB], 0.0, header=True, parsable="") == "JobID|JobName\n5_2|analysis-run"
    assert render(cols[:2], [JOB], 0.0, header=False, parsable="|") == "5_2|analysis-run|"


def test_every_field_renders_for_a_pending_job() -> None:
    pending = {**JOB, "state": "PENDING", "start_time": None, "end_time": None, "cpu_time": None, "max_rss": None}
    line = render(parse_format(",".join(FIELDS)), [pending], 1000.0, header=False, parsable="")
    assert "Unknown" in line and line.count("|") == len(FIELDS) - 1


def test_durations() -> None:
    assert hms(0) == "00:00:00" and hms(3661) == "01:01:01" and hms(90061) == "1-01:01:01"


@pytest.mark.parametrize("text, says", [("JobID,Nope", "'Nope'"), ("JobID%0", "'0'"), ("JobID%x", "'x'"), (",", "no field")])
def test_bad_formats(text: str, says: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_format(text)
    assert says in str(err.value)


def test_sizes_in_units_as_sacct_units_and_noconvert_print_them() -> None:
    """src/sacct/print.c passes ReqMem (MB), MaxRSS (bytes) and the TRES through convert_num_unit
    with --units (params.units) and --noconvert (CONVERT_NUM_UNIT_NO)."""
    job = {**JOB, "memory": 1536 * 1024 ** 2, "max_rss": 5234688}
    cols = parse_format("ReqMem,MaxRSS,ReqTRES")
    show = lambda **kw: render(cols, [job], 0.0, header=False, parsable="", **kw)  # noqa: E731
    assert show() == "1.50G|5112K|billing=2,cpu=2,mem=1.50G,node=1"
    assert show(units=1) == "1572864K|5112K|billing=2,cpu=2,mem=1572864K,node=1"
    assert show(units=2) == "1536M|4.99M|billing=2,cpu=2,mem=1536M,node=1"
    assert show(units=3) == "1.50G|0.00G|billing=2,cpu=2,mem=1.50G,node=1"
    assert show(noconvert=True) == "1536M|5234688|billing=2,cpu=2,mem=1536M,node=1"


def test_the_long_field_list_is_slurms() -> None:
    from melon_cli.acct_format import LONG
    cols = parse_format(LONG)
    assert len(cols) == 54 and [c.width for c in cols[:6]] == [12, 12, 10, 10, 10, 14]
    line = render(cols, [JOB], 0.0, header=False, parsable="").split("|")
    assert line[:4] == ["5_2", "7", "analysis-run", "main"] and line[8] == "300M" and line[26:29] == ["Unknown"] * 3
    assert line[30] == "0" and line[39:41] == ["billing=2,cpu=2,mem=2G,node=1"] * 2 and line[4] == line[-1] == ""


def test_step_rows_follow_their_job_as_sacct_lists_them() -> None:
    from melon_cli.acct_format import with_steps
    job = {"id": 7, "array_job_id": None, "array_task_id": None, "name": "train", "partition": "gpu",
           "state": "TIMEOUT", "exit_code": 0, "exit_signal": 15, "start_time": 10.0, "end_time": 70.0, "node": "n1",
           "cpus": 4, "steps": [{"step_id": 0, "name": "python", "state": "CANCELLED", "exit_code": 0,
                                 "exit_signal": 15, "start_time": 11.0, "end_time": 70.0, "node": "n1", "cpus": 2,
                                 "cpu_time": 55.5, "max_rss": 1 << 20, "ntasks": 2}]}
    pending = {**job, "id": 8, "state": "PENDING", "start_time": None, "steps": []}
    rows = with_steps([job, pending])
    assert [(r.get("label"), r["name"], r["state"], r["partition"]) for r in rows] == [
        (None, "train", "TIMEOUT", "gpu"), ("7.batch", "batch", "CANCELLED", ""), ("7.0", "python", "CANCELLED", ""),
        (None, "train", "PENDING", "gpu")]
    text = render(parse_format("JobID,JobName,State,ExitCode,NTasks,AllocCPUS"), rows, 100.0, header=False,
                  parsable="")
    assert text.splitlines() == ["7|train|TIMEOUT|0:15||4", "7.batch|batch|CANCELLED|0:15|1|4",
                                 "7.0|python|CANCELLED|0:15|2|2", "8|train|PENDING|0:15||0"]
