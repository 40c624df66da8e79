"""mqueue -o: squeue's format fields, widths, justification and cutting, and its refusals."""
from __future__ import annotations

import pytest

from melon_cli.queue_format import CODES, fields_needed, header, parse_format, render
from melond.errors import ParseError

JOB = {"id": 7, "array_job_id": None, "array_task_id": None, "name": "a-long-job-name", "user": "ana",
       "state": "R", "state_name": "RUNNING", "elapsed": 65, "time_limit": 3600, "cpus": 2,
       "memory": 4 * 1024 ** 3, "partition": "main", "node": "n1", "reason": None, "start_time": 1000.0,
       "submit_time": 990.0, "end_time": None, "chdir": "/home/ana", "script_path": "/home/ana/job.sh",
       "expected_start": None, "num_nodes": 1, "node_list": "n1", "gres": "gpu:a100:2", "account": None,
       "slurm_options": {}, "priority": 1}


def test_a_spanning_job_shows_its_node_count_and_host_list() -> None:
    job = {**JOB, "num_nodes": 3, "node_list": "n[1-3]"}
    assert render(parse_format("%D %N %R"), job, 2000.0) == "3 n[1-3] n[1-3]"


def test_widths_justify_and_cut_as_squeue_does() -> None:
    spec = parse_format("%.5i|%5i|%.4j|%j|%%|%t")
    assert header(spec) == "JOBID|JOBID|NAME|NAME|%|ST"
    assert render(spec, JOB, 0.0) == "    7|7    |a-lo|a-long-job-name|%|R"


def test_every_code_renders_and_names_its_fields() -> None:
    spec = parse_format(" ".join(f"%{c}" for c in CODES))
    line = render(spec, JOB, 2000.0)
    assert "RUNNING" in line and "58:55" in line and "4G" in line and "/home/ana/job.sh" in line
    assert "gres/gpu:a100:2" in line
    assert set(fields_needed(spec)) <= set(JOB)


def test_pending_and_array_views() -> None:
    pending = {**JOB, "state": "PD", "state_name": "PENDING", "node": None, "node_list": None, "reason": "Priority",
               "start_time": None, "elapsed": 0, "expected_start": 5000.0, "array_job_id": 7,
               "array_task_id": 3, "label": "7_[3-9%2]"}
    spec = parse_format("%i %F %K %R %L %N.")
    assert render(spec, pending, 0.0) == "7_[3-9%2] 7 [3-9%2] (Priority) 1:00:00 ."
    assert render(parse_format("%S"), pending, 0.0) != "N/A"
    assert render(parse_format("%K"), JOB, 0.0) == "N/A"
    # Slurm's squeue: %A the job's own id, %a its account, %q its QOS
    assert render(parse_format("%A %a %q"), {**JOB, "id": 9, "account": "lab"}, 0.0) == "9 lab normal"


@pytest.mark.parametrize("text, named", [("%W", "'%W'"), ("%.10", "'%.10'"), ("abc %", "'%'"), ("%5.i", "'%5.'")])
def test_unknown_fields_name_the_value_and_the_codes(text: str, named: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_format(text)
    assert named in str(err.value) and "%i (JOBID)" in str(err.value)


def test_absurd_widths_are_refused() -> None:
    with pytest.raises(ParseError, match="too wide"):
        parse_format("%99999i")
