"""The job channel's check of what a job asks (pure: no node, no sockets)."""
from __future__ import annotations

import pytest

from melon_remote.asks import _check


@pytest.mark.parametrize("request_", [{"op": "extend", "add": 60}, {"op": "extend", "to": 0},
                                      {"op": "extend", "to": 7200}])
def test_well_formed_asks(request_: dict) -> None:
    assert _check(request_) is None


@pytest.mark.parametrize("request_", [
    None, [], "extend", {}, {"op": "cancel"}, {"op": "extend"}, {"op": "extend", "add": 1, "to": 2},
    {"op": "extend", "add": "60"}, {"op": "extend", "add": True}, {"op": "extend", "add": -5},
    {"op": "extend", "add": 1.5},
])
def test_malformed_asks_say_what_is_accepted(request_: object) -> None:
    problem = _check(request_)
    assert problem and '"op": "extend"' in problem or "exactly one of" in problem


@pytest.mark.parametrize("request_", [
    {"op": "step_start", "name": "sh", "ntasks": 2, "cpus": 0},
    {"op": "step_start", "name": "sh", "ntasks": 4, "cpus": 8, "layout": {"n1": 2, "n2": 2}, "cpus_per_task": 2},
    {"op": "step_end", "step_id": 0, "exit_code": 3, "signal": None, "cpu_time": 0.25, "max_rss": 1 << 20},
    {"op": "step_end", "step_id": 4, "signal": 9, "oom": True},
])
def test_srun_asks_for_its_step_number_and_says_how_it_ended(request_: dict) -> None:
    assert _check(request_) is None


@pytest.mark.parametrize("request_", [
    {"op": "step_start", "name": "", "ntasks": 1, "cpus": 0}, {"op": "step_start", "name": "x" * 201, "ntasks": 1,
                                                               "cpus": 0},
    {"op": "step_start", "name": "sh", "ntasks": 0, "cpus": 0}, {"op": "step_start", "name": "sh", "ntasks": True,
                                                                 "cpus": 0},
    {"op": "step_start", "name": "sh", "ntasks": 1, "cpus": 1, "layout": {"n1": 0}},
    {"op": "step_start", "name": "sh", "ntasks": 1, "cpus": 1, "layout": ["n1"]},
    {"op": "step_start", "name": "sh", "ntasks": 1, "cpus": 1, "cpus_per_task": 0},
    {"op": "step_end"}, {"op": "step_end", "step_id": -1}, {"op": "step_end", "step_id": 1, "exit_code": "3"},
    {"op": "step_end", "step_id": 1, "cpu_time": "x"}, {"op": "step_end", "step_id": 1, "oom": 1},
])
def test_malformed_step_asks_say_their_form(request_: dict) -> None:
    assert '"op": "step_' in (_check(request_) or "")


PTY = {"op": "step_pty", "argv": ["bash"], "cwd": "/tmp", "env": {"TERM": "xterm"}, "rows": 30, "cols": 100,
       "node": "n2"}


def test_srun_pty_asks_for_a_terminal_on_a_node_of_its_job() -> None:
    assert _check(PTY) is None
    assert _check({"op": "step_pty", "argv": ["bash"]}) is None  # first node, 24x80


@pytest.mark.parametrize("change", [{"argv": []}, {"argv": "bash"}, {"argv": [1]}, {"rows": 0}, {"cols": "80"},
                                    {"node": 3}, {"env": []}, {"cwd": None}])
def test_malformed_terminal_asks_say_their_form(change: dict) -> None:
    assert '"op": "step_pty"' in (_check({**PTY, **change}) or "")


LAUNCH = {"op": "step_launch", "step_id": 1, "argv": ["hostname"], "cwd": "/tmp", "env": {"A": "1"},
          "nodes": [{"node": "n1", "tasks": [{"rank": 0, "localid": 0, "cpus": [0]}]}]}


@pytest.mark.parametrize("request_", [
    {"op": "step_start", "name": "sh", "ntasks": 4, "cpus": 8, "layout": {"n1": 2, "n2": 2}, "cpus_per_task": 2},
    {"op": "step_end", "step_id": 4, "signal": 9, "oom": True}, {"op": "step_signal", "step_id": 1, "signal": 2},
    LAUNCH,
])
def test_the_api_takes_the_job_channels_step_asks_from_a_login_node(request_: dict) -> None:
    """salloc's shell on the login node: srun's asks reach melond's API (models.StepAsk) as they
    reach a node's job channel, and mean the same there."""
    from melond.api.models import StepAsk
    assert _check(request_) is None
    assert StepAsk.model_validate(request_).model_dump(exclude_none=True, exclude_defaults=True) == {
        k: v for k, v in request_.items() if v is not False}


@pytest.mark.parametrize("request_", [
    {"op": "step_start", "name": "sh", "ntasks": 1}, {"op": "step_end"}, {"op": "step_signal", "step_id": 1},
    {**LAUNCH, "nodes": []}, {**LAUNCH, "argv": []}, {"op": "step_pty", "argv": ["bash"]},
    {"op": "extend", "add": 60}, {**LAUNCH, "nodes": [{"node": "n1", "tasks": [{"rank": -1, "localid": 0}]}]},
])
def test_the_api_refuses_what_is_no_step_ask_of_a_login_node(request_: dict) -> None:
    from pydantic import ValidationError

    from melond.api.models import StepAsk
    with pytest.raises(ValidationError):
        StepAsk.model_validate(request_)
