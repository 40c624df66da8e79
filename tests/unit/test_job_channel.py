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
