"""sprio's output from GET /priorities' answer: Slurm's default and long layouts, -o's letters and
widths, -S's order, -w's row, SPRIO_FORMAT, and the refusals that name what is known."""
from __future__ import annotations

import pytest

from melon_cli.slurm.sprio import CODES, render
from melond.errors import MelonError

WEIGHTS = {"age": 1000, "fairshare": 10000, "jobsize": 0, "partition": 0, "qos": 1000}


def _job(job_id: int, user: str, priority: int, fairshare: float, age: float = 0.5, nice: int = 0,
         account: str | None = "lab", partition: str = "main") -> dict:
    factors = {"age": age, "fairshare": fairshare, "jobsize": 0.25, "partition": 1.0, "qos": 0.0}
    return {"job_id": job_id, "partition": partition, "user": user, "account": account, "qos": "normal",
            "priority": priority, "nice": nice, "factors": factors,
            "weighted": {k: int(v * WEIGHTS[k]) for k, v in factors.items()}}


DATA = {"weights": WEIGHTS, "jobs": [_job(12, "bob", 3000, 0.25), _job(14, "ana", 8000, 0.75, nice=50),
                                     _job(13, "ana", 5500, 0.5, partition="gpu")]}


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_the_default_shows_the_factors_whose_weight_is_not_0_right_justified() -> None:
    out = render(DATA, {})
    assert out.splitlines()[0] == ("          JOBID PARTITION   PRIORITY       SITE        AGE  FAIRSHARE        QOS")
    assert out.splitlines()[1] == ("             12 main            3000          0        500       2500          0")
    assert [r[0] for r in _rows(out)[1:]] == ["12", "13", "14"]  # by job id


def test_a_user_filter_adds_the_user_column_as_sprio_does() -> None:
    assert _rows(render(DATA, {"user": "ana"})) == [
        ["JOBID", "PARTITION", "USER", "PRIORITY", "SITE", "AGE", "FAIRSHARE", "QOS"],
        ["13", "gpu", "ana", "5500", "0", "500", "5000", "0"], ["14", "main", "ana", "8000", "0", "500", "7500", "0"]]


def test_long_is_slurms_layout_with_melons_missing_factors_at_0() -> None:
    rows = _rows(render(DATA, {"long": ""}, ["14"]))
    assert rows[0] == ["JOBID", "PARTITION", "USER", "ACCOUNT", "PRIORITY", "SITE", "AGE", "ASSOC", "FAIRSHARE",
                       "JOBSIZE", "PARTITION", "QOSNAME", "QOS", "NICE", "TRES"]
    assert rows[1] == ["14", "main", "ana", "lab", "8000", "0", "500", "0", "7500", "0", "0", "normal", "0", "50"]


def test_norm_prints_the_factors_in_0_to_1_and_the_priority_over_the_largest() -> None:
    rows = _rows(render(DATA, {"norm": "", "jobs": "12"}))
    assert rows == [["JOBID", "PARTITION", "PRIORITY", "AGE", "FAIRSHARE", "QOS"],
                    ["12", "main", "0.00000069", "0.5000000", "0.2500000", "0.0000000"]]  # %10y: cut to 10


def test_a_field_is_cut_to_its_width_and_dot_right_justifies() -> None:
    out = render(DATA, {"format": "%.6i|%8u|%4r|%.10Y|%Y %F %f %n %o %N %c%%", "jobs": "14"})
    assert out.splitlines() == [" JOBID|USER    |PART|  PRIORITY|PRIORITY FAIRSHARE FAIRSHARE QOSNAME ACCOUNT NICE "
                                "CLUSTER%",
                                "    14|ana     |main|      8000|8000 7500 0.7500000 normal lab 50 melon%"]


def test_every_letter_renders_for_a_job_and_for_the_weights_row() -> None:
    spec = " ".join(f"%{c}" for c in CODES)
    assert len(render(DATA, {"format": spec}).splitlines()) == 4
    weights = render(DATA, {"format": "%i %A %a %F %Q %J %B %S %Y", "weights": ""}).splitlines()
    assert weights == ["JOBID AGE AGE FAIRSHARE QOS JOBSIZE ASSOC SITE PRIORITY", "Weights 1000 1000 10000 1000 0 0 1"]


def test_weights_suppress_the_jobs() -> None:
    assert _rows(render(DATA, {"weights": "", "noheader": ""})) == [["Weights", "1", "1000", "10000", "1000"]]


@pytest.mark.parametrize("sort, ids", [("-Y", ["14", "13", "12"]), ("u,-y", ["14", "13", "12"]),
                                       ("u,r", ["13", "14", "12"]), ("+F", ["12", "13", "14"]),
                                       ("-i", ["14", "13", "12"]), ("r,-i", ["13", "14", "12"])])
def test_sort_keys_are_sprios_letters_the_first_first(sort: str, ids: list[str]) -> None:
    assert [r[0] for r in _rows(render(DATA, {"sort": sort, "noheader": ""}))] == ids


def test_sprio_format_applies_unless_o_or_l_is_given() -> None:
    assert render(DATA, {"noheader": "", "jobs": "12"}, env_format="%i:%u") == "12:bob\n"
    assert render(DATA, {"noheader": "", "jobs": "12", "format": "%u"}, env_format="%i:%u") == "bob\n"
    assert _rows(render(DATA, {"noheader": "", "jobs": "12", "long": ""}, env_format="%i:%u"))[0][:3] == \
        ["12", "main", "bob"]


def test_unknown_letters_are_named_with_the_known_ones() -> None:
    with pytest.raises(MelonError) as bad:
        render(DATA, {"format": "%.10i %Z"})
    assert "'%Z'" in str(bad.value) and "%F (FAIRSHARE)" in str(bad.value) and "%f (FAIRSHARE, normalized)" in \
        str(bad.value)
    with pytest.raises(MelonError) as bad:
        render(DATA, {"sort": "u,-S"})
    assert "'-S'" in str(bad.value) and "u,r,-y" in str(bad.value)
    with pytest.raises(MelonError, match="'%-'"):  # sprio's fields are left-justified unless a '.' says right
        render(DATA, {"format": "%-8u"})
    with pytest.raises(MelonError, match="mutually exclusive"):
        render(DATA, {"format": "%i", "long": ""})
