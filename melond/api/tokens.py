"""Bearer tokens for the TCP API: their format, hashing and checks. No I/O, no clock.

A token reads `melon_<id>_<secret>`: the prefix makes a leaked token easy to recognise (and to
grep for), the id is public (it names the token in `mtoken list` and is how melond finds its
record) and the secret is `secrets.token_urlsafe(32)`, 256 random bits. melond stores only the
secret's SHA-256. Randomness comes in through `generate`'s arguments' defaults, so every other
function here is deterministic.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from melond.errors import ParseError

PREFIX = "melon"
ID_BYTES = 6  # 12 hex digits: ids only need to be unique, the secret carries the entropy
SECRET_BYTES = 32
DEFAULT_TTL = 30 * 86400  # a month: long enough for daily use, short enough that a forgotten copy dies
MAX_TTL = 365 * 86400  # no token that never expires (see docs/design.md)
CREATE_HINT = "run `mtoken create --save` on the machine melond runs on (over its Unix socket)"

_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{{2 * ID_BYTES}}})_([A-Za-z0-9_-]{{16,128}})")
_ID = re.compile(rf"[0-9a-f]{{{2 * ID_BYTES}}}")
_DURATION = re.compile(r"([0-9]{1,9})\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenError(ParseError):
    """A token (or a duration) that cannot be used; the message says why and what to do."""


class Problem(str, Enum):
    """Why a presented token is refused, in the order melond checks."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"  # no such id, or the secret does not match: the same answer for both
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Issued:
    """A new token: the string handed to the user once, and what melond keeps of it."""

    token: str
    id: str
    hash: str


def generate(token_id: str | None = None, secret: str | None = None) -> Issued:
    """A fresh token; pass both parts to make one deterministically (tests)."""
    token_id = token_id or secrets.token_hex(ID_BYTES)
    secret = secret or secrets.token_urlsafe(SECRET_BYTES)
    return Issued(token=f"{PREFIX}_{token_id}_{secret}", id=token_id, hash=hash_secret(secret))


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret, hex.

    A plain fast hash is enough here, unlike for passwords: the secret is 256 random bits, so
    nobody can guess it from its hash however many guesses per second they make, and a slow
    KDF (bcrypt, scrypt) would only add its cost to every TCP request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a token string; TokenError if it is not shaped like a Melon token."""
    m = _TOKEN.fullmatch(token.strip())
    if not m:
        raise TokenError(f"not a Melon token (they look like {PREFIX}_<12 hex digits>_<secret>)")
    return m.group(1), m.group(2)


def bearer(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header; None if there is no header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenError(f"the Authorization header must be `Bearer <token>`, not {scheme!r}")
    return value.strip()


def check(record: dict | None, secret: str, now: float) -> Problem | None:
    """Why the record refuses this secret at `now`, or None if it is good.

    The secret is checked first, so only a holder of the real secret learns that a token was
    revoked or has expired; compare_digest keeps the comparison's time independent of the data.
    """
    if record is None or not hmac.compare_digest(record["hash"], hash_secret(secret)):
        return Problem.UNKNOWN
    return standing(record, now)


def standing(record: dict | None, now: float) -> Problem | None:
    """Whether a known token still holds at `now` (re-checked by long requests such as the event
    stream, whose secret was checked when it began): revoked, expired, or None if it holds."""
    if record is None:
        return Problem.UNKNOWN
    if record.get("revoked") is not None:
        return Problem.REVOKED
    if record.get("expires") is not None and now >= record["expires"]:
        return Problem.EXPIRED
    return None


def session_expiry(parent: dict, now: float) -> float:
    """When a browser session minted from `parent` ends: with its parent, never later."""
    return parent["expires"] if parent.get("expires") is not None else now + MAX_TTL


def refusal(problem: Problem, token_id: str | None = None) -> str:
    """The 401 message for a problem: what is wrong and what to do."""
    what = {
        Problem.MISSING: "the TCP API needs a token: send `Authorization: Bearer <token>` "
                         "(the CLIs read MELON_TOKEN, MELON_TOKEN_FILE or ~/.config/melon/token)",
        Problem.MALFORMED: "the token is not a Melon token (they look like melon_<id>_<secret>)",
        Problem.UNKNOWN: "the token is not valid (unknown, or its secret is wrong)",
        Problem.REVOKED: f"token {token_id} has been revoked",
        Problem.EXPIRED: f"token {token_id} has expired",
    }[problem]
    return f"{what}; {CREATE_HINT} for a new one"


def valid_id(token_id: str) -> bool:
    return _ID.fullmatch(token_id) is not None


def parse_ttl(text: str) -> int:
    """A token lifetime such as `30d`, `12h`, `2w` or `90m`, in seconds (at most MAX_TTL)."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise TokenError(f"cannot read {text!r} as a lifetime; use a number with a unit s, m, h, d or w "
                         f"(e.g. 30d, 12h); tokens that never expire are not offered")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 1 <= seconds <= MAX_TTL:
        raise TokenError(f"a token lives between 1 second and {MAX_TTL // 86400} days, not {text!r}")
    return seconds
