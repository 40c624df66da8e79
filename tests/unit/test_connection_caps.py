"""Pure rules of the API's connections: the count per client, the refusals' words, the settings."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from melond.config import Limits
from melond.errors import ERRORS, RequestTimeout, TooManyConnections, from_wire
from melond.sched.connections import ClientSlots, body_late, head_late, too_many


def test_a_client_gets_its_cap_and_no_more_while_others_get_theirs():
    slots = ClientSlots(cap=2)
    assert slots.take("uid 1000") and slots.take("uid 1000")
    assert not slots.take("uid 1000")
    assert slots.take("uid 1001") and slots.take("address 127.0.0.1")
    slots.give("uid 1000")
    assert slots.take("uid 1000") and not slots.take("uid 1000")


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=200), st.integers(1, 5))
def test_the_count_is_the_connections_taken_and_not_given_back(ops, cap):
    slots, held = ClientSlots(cap=cap), {"a": 0, "b": 0, "c": 0}
    for client, opening in ops:
        if opening:
            assert slots.take(client) == (held[client] < cap)
            held[client] = min(cap, held[client] + 1)
        elif held[client]:
            slots.give(client)
            held[client] -= 1
        assert slots.held(client) == held[client] <= cap


def test_a_refusal_is_logged_once_until_the_client_has_no_connection_left():
    slots = ClientSlots(cap=2)
    slots.take("uid 7"), slots.take("uid 7")
    assert not slots.take("uid 7") and slots.first_refusal("uid 7")
    for _ in range(3):  # closing one and trying two more, again and again: still the same episode
        slots.give("uid 7")
        assert slots.take("uid 7") and not slots.take("uid 7") and not slots.first_refusal("uid 7")
    slots.give("uid 7"), slots.give("uid 7")
    slots.take("uid 7"), slots.take("uid 7")
    assert not slots.take("uid 7") and slots.first_refusal("uid 7")


def test_each_refusal_names_its_limit_and_crosses_the_wire_as_its_own_type():
    for error, words, kind, status in [
        (too_many("uid 1000", 64), ["uid 1000", "64", "[limits] connections_per_client"], TooManyConnections, 503),
        (head_late(10), ["head", "10 s", "[limits] header_timeout"], RequestTimeout, 408),
        (body_late(2.5), ["body", "2.5 s", "[limits] body_timeout"], RequestTimeout, 408),
    ]:
        assert isinstance(error, kind) and error.status == status
        assert all(w in str(error) for w in words), str(error)
        back = from_wire(error.to_wire(), status)
        assert type(back) is kind and str(back) == str(error)
    assert ERRORS["too_many_connections"] is TooManyConnections and ERRORS["request_timeout"] is RequestTimeout


def test_the_settings_default_and_refuse_nonsense():
    limits = Limits()
    assert (limits.header_timeout, limits.body_timeout, limits.connections_per_client) == (10.0, 30.0, 64)
    assert Limits(header_timeout=0.5, body_timeout=1, connections_per_client=1).body_timeout == 1.0
    for bad in ({"header_timeout": 0}, {"body_timeout": -1}, {"connections_per_client": 0}):
        with pytest.raises(ValidationError):
            Limits(**bad)
