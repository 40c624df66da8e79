"""melond/tokens.py and melond/files.py's pure parts: token format, hashing, checks, lifetimes, modes."""
from __future__ import annotations

import hashlib

import pytest

from melond.api import tokens
from melond.files import mode_problem
from melond.api.tokens import Problem, TokenError

NOW = 1_800_000_000.0


def _record(issued: tokens.Issued, **extra) -> dict:
    return {"id": issued.id, "hash": issued.hash, "revoked": None, "expires": NOW + 60, **extra}


def test_a_token_carries_prefix_public_id_and_secret_and_parses_back() -> None:
    issued = tokens.generate()
    assert issued.token.startswith("melon_") and len(issued.id) == 12
    token_id, secret = tokens.parse(issued.token)
    assert token_id == issued.id and len(secret) >= 43  # 32 bytes, base64url
    assert issued.hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in issued.hash
    assert tokens.generate().token != issued.token


def test_generate_is_deterministic_given_its_parts() -> None:
    issued = tokens.generate("0123456789ab", "s" * 43)
    assert issued.token == "melon_0123456789ab_" + "s" * 43
    assert tokens.parse(issued.token + "\n") == ("0123456789ab", "s" * 43)


def test_a_secret_with_underscores_and_dashes_parses() -> None:
    assert tokens.parse("melon_0123456789ab_a_b-c_d-e_f_g_h_i_j_k_l")[1] == "a_b-c_d-e_f_g_h_i_j_k_l"


@pytest.mark.parametrize("text", [
    "", "melon", "melon_0123456789ab", "melon_0123456789ab_", "melon_0123456789ab_short",
    "melon_0123456789AB_" + "s" * 43, "melon_0123456789a_" + "s" * 43, "other_0123456789ab_" + "s" * 43,
    "melon_0123456789ab_" + "s" * 43 + "!", "melon_0123456789ab_" + "s" * 200, "Bearer melon_0123456789ab_" + "s" * 43,
])
def test_malformed_tokens_are_refused(text: str) -> None:
    with pytest.raises(TokenError, match="not a Melon token"):
        tokens.parse(text)


@pytest.mark.parametrize(("header", "token"), [
    (None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x_y", "x_y"),
])
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert tokens.bearer(header) == token


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "abc", "Token abc"])
def test_other_authorization_schemes_are_refused(header: str) -> None:
    with pytest.raises(TokenError, match="Bearer <token>"):
        tokens.bearer(header)


def test_check_accepts_the_right_secret_until_expiry() -> None:
    issued = tokens.generate()
    secret = tokens.parse(issued.token)[1]
    assert tokens.check(_record(issued), secret, NOW) is None
    assert tokens.check(_record(issued), secret, NOW + 59.9) is None
    assert tokens.check(_record(issued), secret, NOW + 60) is Problem.EXPIRED
    assert tokens.check(_record(issued, expires=None), secret, NOW + 10**9) is None


def test_check_refuses_wrong_unknown_and_revoked() -> None:
    issued = tokens.generate()
    secret = tokens.parse(issued.token)[1]
    assert tokens.check(None, secret, NOW) is Problem.UNKNOWN
    assert tokens.check(_record(issued), secret[:-1] + ("A" if secret[-1] != "A" else "B"), NOW) is Problem.UNKNOWN
    assert tokens.check(_record(issued, revoked=NOW - 1), secret, NOW) is Problem.REVOKED


def test_only_the_secret_holder_learns_revoked_or_expired() -> None:
    issued = tokens.generate()
    record = _record(issued, revoked=NOW - 1, expires=NOW - 1)
    assert tokens.check(record, "wrong" * 9, NOW) is Problem.UNKNOWN
    assert tokens.check(record, tokens.parse(issued.token)[1], NOW) is Problem.REVOKED  # revoked wins


@pytest.mark.parametrize("problem", list(Problem))
def test_every_refusal_says_what_to_do(problem: Problem) -> None:
    message = tokens.refusal(problem, "0123456789ab")
    assert "mtoken create" in message
    if problem in (Problem.REVOKED, Problem.EXPIRED):
        assert "0123456789ab" in message and problem.value in message


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1), ("90m", 5400), ("12h", 43200), ("30d", 30 * 86400), ("2w", 14 * 86400), (" 7D ", 7 * 86400),
    ("365d", 365 * 86400),
])
def test_lifetimes(text: str, seconds: int) -> None:
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize(("text", "why"), [
    ("never", "never expire"), ("30", "unit"), ("", "unit"), ("1y", "unit"), ("-1d", "unit"), ("1.5d", "unit"),
    ("0s", "between"), ("366d", "between"), ("53w", "between"),
])
def test_bad_lifetimes(text: str, why: str) -> None:
    with pytest.raises(TokenError, match=why):
        tokens.parse_ttl(text)


def test_default_lifetime_is_within_bounds() -> None:
    assert 0 < tokens.DEFAULT_TTL <= tokens.MAX_TTL


@pytest.mark.parametrize(("mode", "mask", "who"), [
    (0o600, 0o077, None), (0o400, 0o077, None), (0o700, 0o077, None), (0o640, 0o077, "its group"),
    (0o604, 0o077, "other users"), (0o644, 0o077, "its group and other users"), (0o640, 0o007, None),
    (0o644, 0o007, "other users"),
])
def test_mode_problem(mode: int, mask: int, who: str | None) -> None:
    assert mode_problem(mode, mask) == who


def test_standing_is_the_check_without_the_secret_and_a_session_ends_with_its_parent() -> None:
    issued = tokens.generate()
    assert tokens.standing(_record(issued), NOW) is None
    assert tokens.standing(_record(issued, revoked=NOW - 1), NOW) is Problem.REVOKED
    assert tokens.standing(_record(issued), NOW + 60) is Problem.EXPIRED
    assert tokens.standing(None, NOW) is Problem.UNKNOWN
    assert tokens.session_expiry({"expires": NOW + 60}, NOW) == NOW + 60
    assert tokens.session_expiry({"expires": None}, NOW) == NOW + tokens.MAX_TTL


def test_a_json_key_given_twice_is_refused_naming_it() -> None:
    import json

    from melond.api.models import DuplicateKey, unique_keys
    assert json.loads('{"a": {"b": 1, "c": 2}}', object_pairs_hook=unique_keys) == {"a": {"b": 1, "c": 2}}
    for text in ('{"token": "x", "token": "y"}', '{"a": {"b": 1, "b": 1}}'):
        with pytest.raises(DuplicateKey, match="given twice"):
            json.loads(text, object_pairs_hook=unique_keys)
