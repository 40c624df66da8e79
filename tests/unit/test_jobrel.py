"""Tables for --array and --dependency parsing and evaluation, plus round-trip properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.jobrel import (
    Condition,
    DepKind,
    DepRef,
    Dependency,
    RelError,
    dependency_status,
    parse_array,
    parse_dependency,
)

# ------------------------------------------------------------------------------------ --array


@pytest.mark.parametrize(
    "spec, ids, throttle",
    [
        ("0-15", list(range(16)), None),
        ("1,6-7,12", [1, 6, 7, 12], None),
        ("0-15:4", [0, 4, 8, 12], None),
        ("1-1000%10", list(range(1, 1001)), 10),
        ("7", [7], None),
        ("3,1,2,3", [1, 2, 3], None),  # sorted, duplicates merged
        ("0-10:5,2", [0, 2, 5, 10], None),
        ("1-3:10", [1], None),  # step larger than the range
        (" 1, 2 %3 ", [1, 2], 3),
        ("5%1", [5], 1),
        ("0-9999", list(range(10000)), None),  # exactly the default cap
    ],
)
def test_parse_array(spec, ids, throttle):
    assert parse_array(spec) == (ids, throttle)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("abc", "cannot read 'abc'"),
        ("1-", "cannot read"),
        ("1,,2", "empty element"),
        ("5-1", "reversed"),
        ("0-15:0", "step"),
        ("-1", "negative"),
        ("-3-5", "negative"),
        ("0-10000", "10001 tasks"),
        ("0-5000,6000-11000", "more than the limit"),
        ("1-5%0", "never run"),
        ("1-5%x", "%LIMIT"),
        ("1-5%2%3", "%LIMIT"),
        ("1.5", "cannot read"),
        ("²", "cannot read"),
        ("0-99999999999", "cannot read"),
        ("0-4294967295", "maximum"),
    ],
)
def test_parse_array_errors(spec, words):
    with pytest.raises(RelError, match=words) as info:
        parse_array(spec)
    assert "--array" in str(info.value)


def test_parse_array_errors_name_accepted_forms():
    with pytest.raises(RelError, match="N-M:STEP"):
        parse_array("x")


def test_parse_array_max_tasks_argument():
    assert parse_array("1-4", max_tasks=4)[0] == [1, 2, 3, 4]
    with pytest.raises(RelError, match="limit of 3"):
        parse_array("1-4", max_tasks=3)


@given(st.sets(st.integers(0, 5000), min_size=1, max_size=50), st.none() | st.integers(1, 50))
def test_parse_array_lists_round_trip(ids, throttle):
    spec = ",".join(map(str, ids)) + (f"%{throttle}" if throttle else "")
    assert parse_array(spec) == (sorted(ids), throttle)


@given(st.integers(0, 3000), st.integers(0, 3000), st.integers(1, 50))
def test_parse_array_step_matches_range(lo, length, step):
    assert parse_array(f"{lo}-{lo + length}:{step}")[0] == list(range(lo, lo + length + 1, step))


# ------------------------------------------------------------------------------- --dependency

A, OK, NOTOK, ANY, SINGLE = DepKind


@pytest.mark.parametrize(
    "spec, dep",
    [
        ("afterok:12", Dependency((Condition(OK, (DepRef(12),)),))),
        ("afterok:1:2:3", Dependency((Condition(OK, (DepRef(1), DepRef(2), DepRef(3))),))),
        ("after:5+10:6", Dependency((Condition(A, (DepRef(5, 10), DepRef(6))),))),
        ("afternotok:4,afterany:5", Dependency((Condition(NOTOK, (DepRef(4),)), Condition(ANY, (DepRef(5),))))),
        ("afterok:4?afterany:5", Dependency((Condition(OK, (DepRef(4),)), Condition(ANY, (DepRef(5),))), any_of=True)),
        ("singleton", Dependency((Condition(SINGLE),))),
        ("singleton,afterok:3", Dependency((Condition(SINGLE), Condition(OK, (DepRef(3),))))),
        (" AfterOK:7 ", Dependency((Condition(OK, (DepRef(7),)),))),
    ],
)
def test_parse_dependency(spec, dep):
    assert parse_dependency(spec) == dep


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("afterok", "needs at least one job id"),
        ("afterok:", "needs at least one job id"),
        ("before:3", "unknown type 'before'"),
        ("afterok:abc", "'abc' is not a job id"),
        ("afterok:1::2", "'' is not a job id"),
        ("afterok:0", "start at 1"),
        ("afterok:-3", "not a job id"),
        ("afterok:3+5", "only for after"),
        ("afterany:3+5", "only for after"),
        ("after:3+", "not a job id"),
        ("singleton:4", "singleton takes no job ids"),
        ("afterok:1,afterok:2?afterok:3", "not both"),
        ("afterok:1,", "empty element"),
        ("?afterok:1", "empty element"),
        ("afterok:12_3", "not a job id"),
    ],
)
def test_parse_dependency_errors(spec, words):
    with pytest.raises(RelError, match=words) as info:
        parse_dependency(spec)
    assert "--dependency" in str(info.value)


def test_dependency_errors_name_accepted_forms():
    with pytest.raises(RelError, match=r"afterok:ID\[:ID\.\.\.\]"):
        parse_dependency("whenever:1")


def test_dependency_helpers():
    dep = parse_dependency("after:1+2:3,afterok:3:4,singleton")
    assert dep.job_ids == {1, 3, 4}
    assert dep.singleton
    assert not parse_dependency("afterok:1").singleton


refs = st.builds(DepRef, st.integers(1, 10**9))
delayed = st.builds(DepRef, st.integers(1, 10**9), st.integers(0, 10**4))
conditions = st.one_of(
    st.builds(Condition, st.just(A), st.lists(delayed, min_size=1, max_size=4).map(tuple)),
    st.builds(Condition, st.sampled_from([OK, NOTOK, ANY]), st.lists(refs, min_size=1, max_size=4).map(tuple)),
    st.just(Condition(SINGLE)),
)
dependencies = st.builds(Dependency, st.lists(conditions, min_size=1, max_size=4).map(tuple), st.booleans())


@given(dependencies)
def test_dependency_str_round_trips(dep):
    assert parse_dependency(str(dep)) == dep


# ----------------------------------------------------------------------------------- status

FINISHED = ["CD", "F", "TO", "CA", "OOM", "NF"]
READY, WAIT, NEVER = "ready", "wait", "never"

# state of the single referenced job -> expected status, per dependency type
STATUS_TABLE = {
    "after": {"PD": WAIT, "R": READY, "CG": READY, **dict.fromkeys(FINISHED, READY)},
    "afterok": {"PD": WAIT, "R": WAIT, "CG": WAIT, "CD": READY, **dict.fromkeys(FINISHED[1:], NEVER)},
    "afternotok": {"PD": WAIT, "R": WAIT, "CG": WAIT, "CD": NEVER, **dict.fromkeys(FINISHED[1:], READY)},
    "afterany": {"PD": WAIT, "R": WAIT, "CG": WAIT, **dict.fromkeys(FINISHED, READY)},
}


@pytest.mark.parametrize(
    "kind, state, expected",
    [(kind, state, want) for kind, row in STATUS_TABLE.items() for state, want in row.items()],
)
def test_dependency_status_single(kind, state, expected):
    assert dependency_status(parse_dependency(f"{kind}:7"), {7: state}) == expected


@pytest.mark.parametrize(
    "spec, states, expected",
    [
        ("afterok:1", {}, NEVER),  # unknown id
        ("afterok:1:2", {1: "CD", 2: "CD"}, READY),
        ("afterok:1:2", {1: "CD", 2: "R"}, WAIT),
        ("afterok:1:2", {1: "F", 2: "R"}, NEVER),
        ("afterok:1,afternotok:2", {1: "CD", 2: "F"}, READY),
        ("afterok:1,afternotok:2", {1: "CD", 2: "CD"}, NEVER),
        ("afterok:1,afternotok:2", {1: "R", 2: "F"}, WAIT),
        ("afterok:1?afternotok:2", {1: "F", 2: "R"}, WAIT),
        ("afterok:1?afternotok:2", {1: "F", 2: "CD"}, NEVER),
        ("afterok:1?afternotok:2", {1: "PD", 2: "OOM"}, READY),
        ("afterok:1?afterok:2", {1: "CD"}, READY),  # 2 unknown, but one suffices
        ("afterok:1?afterok:2", {}, NEVER),
    ],
)
def test_dependency_status_combined(spec, states, expected):
    assert dependency_status(parse_dependency(spec), states) == expected


@pytest.mark.parametrize(
    "spec, blocked, states, expected",
    [
        ("singleton", False, {}, READY),
        ("singleton", True, {}, WAIT),
        ("singleton,afterok:1", False, {1: "CD"}, READY),
        ("singleton,afterok:1", True, {1: "CD"}, WAIT),
        ("singleton,afterok:1", True, {1: "F"}, NEVER),
        ("singleton?afterok:1", True, {1: "CD"}, READY),
    ],
)
def test_dependency_status_singleton(spec, blocked, states, expected):
    assert dependency_status(parse_dependency(spec), states, singleton_blocked=blocked) == expected


@pytest.mark.parametrize(
    "state, started, now, expected",
    [
        ("PD", {}, 100.0, WAIT),
        ("R", {1: 100.0}, 100.0 + 5 * 60 - 1, WAIT),
        ("R", {1: 100.0}, 100.0 + 5 * 60, READY),
        ("CA", {1: 100.0}, 100.0 + 10 * 60, READY),  # cancelled before it ran: from its end
    ],
)
def test_dependency_status_after_delay(state, started, now, expected):
    dep = parse_dependency("after:1+5")
    assert dependency_status(dep, {1: state}, now=now, started=started) == expected


@pytest.mark.parametrize(
    "kwargs", [{}, {"now": 100.0}, {"started": {1: 100.0}}, {"now": 100.0, "started": {2: 100.0}}]
)
def test_dependency_status_after_delay_without_times_is_plain_after(kwargs):
    dep = parse_dependency("after:1+5")
    assert dependency_status(dep, {1: "R"}, **kwargs) == READY
    assert dependency_status(dep, {1: "PD"}, **kwargs) == WAIT


def test_dependency_status_rejects_unknown_state():
    with pytest.raises(ValueError, match="unknown job state 'XX'"):
        dependency_status(parse_dependency("afterok:1"), {1: "XX"})


plain_conditions = st.builds(
    Condition, st.sampled_from([A, OK, NOTOK, ANY]), st.lists(refs, min_size=1, max_size=4).map(tuple)
)
plain_dependencies = st.builds(Dependency, st.lists(plain_conditions, min_size=1, max_size=4).map(tuple), st.booleans())
ALL_STATES = ["PD", "R", "CG", *FINISHED]


@given(plain_dependencies, st.data())
def test_dependency_status_settles_once_every_job_finished(dep, data):
    finished = {i: data.draw(st.sampled_from(FINISHED)) for i in sorted(dep.job_ids)}
    assert dependency_status(dep, finished) in {READY, NEVER}
    live = {i: data.draw(st.sampled_from(ALL_STATES)) for i in sorted(dep.job_ids)}
    assert dependency_status(dep, live) in {READY, WAIT, NEVER}


@given(plain_dependencies, st.data())
def test_dependency_status_any_of_is_the_best_single_condition(dep, data):
    states = {i: data.draw(st.sampled_from(ALL_STATES)) for i in sorted(dep.job_ids)}
    singles = [dependency_status(Dependency((c,)), states) for c in dep.conditions]
    rank = {NEVER: 0, WAIT: 1, READY: 2}
    pick = max if dep.any_of else min
    assert dependency_status(dep, states) == pick(singles, key=rank.__getitem__)
