"""Job ids as users type them: the forms Slurm's commands take, and never `int()`'s reading."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.errors import ParseError
from melond.spec.jobids import MAX_TASKS, JobRef, folded_label, parse_job_ref, parse_job_refs, parse_one_ref, split_refs


@pytest.mark.parametrize("text, refs", [
    ("13", ["13"]),
    (" 13 ", ["13"]),
    ("13_4", ["13_4"]),
    ("13_[4]", ["13_4"]),
    ("13_[1-3,5]", ["13_1", "13_2", "13_3", "13_5"]),
    ("13_[3,1-2,3]", ["13_3", "13_1", "13_2"]),  # in the order typed, each once
    ("0", ["0"]),
])
def test_forms(text: str, refs: list[str]) -> None:
    assert [str(r) for r in parse_job_ref(text)] == refs


def test_a_task_is_never_read_as_a_longer_number() -> None:
    assert parse_job_ref("13_5") == [JobRef(13, 5)]
    assert parse_one_ref("18_2") == JobRef(18, 2)


@pytest.mark.parametrize("text, names", [
    ("", "''"), ("abc", "'abc'"), ("13a", "'13a'"), ("-13", "'-13'"), ("1_3_4", "'1_3_4'"),
    ("１３", "'１３'"), ("1²", "'1²'"), ("13_", "'13_'"), ("_4", "'_4'"), ("13_[]", "'13_[]'"),
    ("13_[1-3%2]", "'13_[1-3%2]'"), ("13_[1-", "'13_[1-'"), ("13_[x]", "'13_[x]'"), ("1 3", "'1 3'"),
    ("1e3", "'1e3'"), ("0x10", "'0x10'"), (str(2**63), str(2**63)),
])
def test_bad_ids_name_the_value_and_the_forms(text: str, names: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_job_ref(text)
    assert names in str(err.value)


def test_backwards_range_and_too_many_tasks_are_refused() -> None:
    with pytest.raises(ParseError, match="runs backwards"):
        parse_job_ref("13_[3-1]")
    with pytest.raises(ParseError, match=f"more than {MAX_TASKS}"):
        parse_job_ref(f"13_[0-{MAX_TASKS}]")


def test_lists_split_outside_brackets_and_drop_repeats() -> None:
    assert split_refs("1,13_[1,2], 4,,") == ["1", "13_[1,2]", "4"]
    refs = parse_job_refs(["12", "13,14", "15_[1-2]", "12"])
    assert [str(r) for r in refs] == ["12", "13", "14", "15_1", "15_2"]
    with pytest.raises(ParseError, match="',' is not a job id"):
        parse_job_refs([","])


def test_one_ref_refuses_several() -> None:
    with pytest.raises(ParseError, match="names several jobs"):
        parse_one_ref("13_[1-2]")
    with pytest.raises(ParseError, match="names several jobs"):
        parse_one_ref("13_[1]")


@given(st.integers(0, 2**63 - 1), st.none() | st.integers(0, 10**6))
def test_every_label_reads_back_as_itself(job_id: int, task: int | None) -> None:
    ref = JobRef(job_id, task)
    assert parse_job_ref(str(ref)) == [ref] == [parse_one_ref(str(ref))]


@given(st.text(max_size=12))
def test_anything_else_is_a_parse_error_never_another_exception(text: str) -> None:
    try:
        refs = parse_job_refs([text])
    except ParseError:
        return
    assert refs and all(isinstance(r.job_id, int) and r.job_id >= 0 for r in refs)


@pytest.mark.parametrize("tasks, throttle, label", [
    ([5, 6, 7, 8, 9], 3, "13_[5-9%3]"),
    ([1, 2, 3, 5, 7, 8], None, "13_[1-3,5,7-8]"),
    ([9, 1, 2], None, "13_[1-2,9]"),
    ([4], None, "13_4"),
    ([4], 2, "13_[4%2]"),
])
def test_folded_labels_read_back_as_their_tasks(tasks: list[int], throttle: int | None, label: str) -> None:
    assert folded_label(13, tasks, throttle) == label
    if throttle is None:
        assert sorted(r.task for r in parse_job_ref(label)) == sorted(tasks)
