"""Pure rules of the security issue: submission caps, the per-user submit rate, extension budgets."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.sched import policy
from melond.config import Limits
from melond.errors import Forbidden, RateLimited, TooLarge
from melond.sched.policy import Caller
from melond.sched.caps import SubmitRate, body_cap, check_submission
from melond.spec.states import State
from melond.state.job import Job

HOUR = 3600
OWNER = Caller(user="alice", uid=1000)
OPERATOR = Caller(user="carol", uid=1002, operator=True)
SMALL = Limits(script_size=100, args=3, arg_length=10, args_total=20, name_length=8, env_size=30)


def a_request(**changes) -> dict:
    return {"script": "#!/bin/sh\ntrue\n", "script_args": [], "name": "job", "environment": {}, **changes}


# name: (request changes, the limit's key in the refusal, the value in the refusal)
OVER = {
    "script": ({"script": "x" * 101}, "script_size", "101"),
    "script counted in UTF-8 bytes": ({"script": "é" * 51}, "script_size", "102"),
    "too many arguments": ({"script_args": ["a"] * 4}, "args", "4"),
    "one long argument": ({"script_args": ["a", "b" * 11]}, "arg_length", "11"),
    "arguments in total": ({"script_args": ["a" * 10, "b" * 10, "c"]}, "args_total", "21"),
    "job name": ({"name": "n" * 9}, "name_length", "9"),
    "environment": ({"environment": {"A": "x" * 20, "B": "y" * 8}}, "env_size", "32"),
}


@pytest.mark.parametrize("changes, key, value", OVER.values(), ids=OVER.keys())
def test_each_cap_refuses_naming_the_limit_and_the_value(changes, key, value):
    with pytest.raises(TooLarge) as err:
        check_submission(a_request(**changes), SMALL)
    message = str(err.value)
    assert f"[limits] {key}" in message and f"is {value}," in message
    assert err.value.status == 413


def test_everything_at_its_cap_is_accepted():
    check_submission(a_request(script="x" * 100, script_args=["a" * 10, "b" * 10, ""], name="n" * 8,
                               environment={"A": "x" * 28}), SMALL)


def test_the_defaults_take_ordinary_jobs_and_the_body_cap_covers_them():
    limits = Limits()
    check_submission(a_request(script="x" * (1 << 20), script_args=["a"] * 4096), limits)
    with pytest.raises(TooLarge, match="script_size"):
        check_submission(a_request(script="x" * ((1 << 20) + 1)), limits)
    assert body_cap(limits) > 6 * (limits.script_size + limits.args_total + limits.env_size)


def test_the_bucket_gives_a_burst_then_the_rate():
    rate = SubmitRate(burst=3, rate=2.0)
    for _ in range(3):
        rate.take("alice", 100.0)
    with pytest.raises(RateLimited) as err:
        rate.take("alice", 100.0)
    assert err.value.status == 429 and err.value.retry_after == 1
    assert "submit_burst" in str(err.value) and "3" in str(err.value) and "retry in 1 s" in str(err.value)
    rate.take("bob", 100.0)  # each user has a bucket of their own
    rate.take("alice", 100.5)  # half a second at 2/s: one more
    with pytest.raises(RateLimited):
        rate.take("alice", 100.5)


def test_a_refused_request_does_not_refill_and_the_retry_after_is_honest():
    rate = SubmitRate(burst=1, rate=0.1)
    rate.take("alice", 0.0)
    with pytest.raises(RateLimited) as err:
        rate.take("alice", 1.0)
    assert err.value.retry_after == 9
    rate.take("alice", 1.0 + err.value.retry_after)


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=200),
       st.integers(1, 20), st.floats(0.1, 100))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps, burst, per_second):
    rate, now, taken = SubmitRate(burst=burst, rate=per_second), 0.0, 0
    for gap in gaps:
        now += gap
        try:
            rate.take("alice", now)
            taken += 1
        except RateLimited as exc:
            assert exc.retry_after >= 1
    assert taken <= burst + per_second * now + 1e-6


# ---- extension budgets ------------------------------------------------------------------------

def a_job(limit=HOUR) -> Job:
    return Job(id=42, user="alice", uid=1000, name="job", state=State.RUNNING, time_limit=limit, partition="debug")


def budget(caller, limit, past, max_extension=None, max_extensions=None, job=None):
    policy.check_extension_budget(job or a_job(), caller, limit, past, max_extension=max_extension,
                                  max_extensions=max_extensions, partition="debug")


# name: (past additions, new limit from 1 h, max_extension, max_extensions, refusal words or None)
BUDGETS = {
    "no caps": ([HOUR] * 50, 9 * HOUR, None, None, None),
    "within the count": ([600], 2 * HOUR, None, 2, None),
    "count reached": ([600, 600], HOUR + 1, None, 2, "max_extensions"),
    "zero extensions allowed": ([], HOUR + 60, None, 0, "allows an owner 0 extensions"),
    "within the total": ([600], HOUR + 1200, 1800, None, None),
    "exactly the total": ([600], HOUR + 1200, 1800, None, None),
    "over the total": ([600], HOUR + 1201, 1800, None, "max_extension"),
    "one asking more than the total": ([], 3 * HOUR, HOUR, None, "cap of 1:00:00"),
    "unlimited is beyond any cap": ([], 0, 100 * HOUR, None, "unlimited"),
}


@pytest.mark.parametrize("past, limit, total, count, words", BUDGETS.values(), ids=BUDGETS.keys())
def test_extension_budget(past, limit, total, count, words):
    if words is None:
        budget(OWNER, limit, past, total, count)
        return
    with pytest.raises(Forbidden) as err:
        budget(OWNER, limit, past, total, count)
    assert words in str(err.value) and "job 42" in str(err.value) and "partition debug" in str(err.value)


def test_operators_have_no_budget():
    budget(OPERATOR, 0, [HOUR] * 10, max_extension=60, max_extensions=1)
