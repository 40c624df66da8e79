"""Caps on what one submission may carry, and a per-user submit rate: pure checks, no I/O.

A submission is stored whole (script, arguments, environment) and shipped to a node in one
frame, so an unbounded one costs every later read of the job table, and a loop submitting as
fast as it can starves every other user. Each refusal names the limit, its value and the
inventory field that sets it, so the user knows what to change and the operator what to raise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from melond.errors import RateLimited, TooLarge

KIB = 1024
MIB = 1024 * KIB


class SubmitLimits(Protocol):
    """The inventory's `[limits]` (melond.config.Limits holds the defaults); sizes in bytes, UTF-8."""

    script_size: int
    args: int
    arg_length: int
    args_total: int
    name_length: int
    env_size: int  # sum of NAME=value over every variable


def body_cap(limits: SubmitLimits) -> int:
    """The most an HTTP body may hold: every capped part at its cap, escaped as JSON (a byte takes
    at most six characters, `\\u00XX`), plus room for the rest. Above it aiohttp answers 413 alone."""
    return 6 * (limits.script_size + limits.args_total + limits.env_size + limits.name_length) + MIB


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _refuse(what: str, value: int, limit: int, key: str) -> TooLarge:
    return TooLarge(f"{what} is {value:,}, above the limit of {limit:,} ([limits] {key} in melond's inventory); "
                    f"make it smaller, or ask the operator to raise the limit")


def check_submission(req: dict, limits: SubmitLimits) -> None:
    """Raise TooLarge naming the first limit `req` (a SubmitRequest dump) goes over."""
    script = _size(req["script"])
    if script > limits.script_size:
        raise _refuse("the script's size in bytes", script, limits.script_size, "script_size")
    args = req.get("script_args") or []
    if len(args) > limits.args:
        raise _refuse("the number of script arguments", len(args), limits.args, "args")
    for i, arg in enumerate(args, 1):
        if _size(arg) > limits.arg_length:
            raise _refuse(f"script argument {i}'s length in bytes", _size(arg), limits.arg_length, "arg_length")
    total = sum(_size(a) for a in args)
    if total > limits.args_total:
        raise _refuse("the script arguments' total length in bytes", total, limits.args_total, "args_total")
    name = _size(req["name"])
    if name > limits.name_length:
        raise _refuse("the job name's length in bytes", name, limits.name_length, "name_length")
    env = sum(_size(k) + _size(v) + 1 for k, v in (req.get("environment") or {}).items())
    if env > limits.env_size:
        raise _refuse("the environment's size in bytes (NAME=value, summed)", env, limits.env_size, "env_size")


@dataclass
class SubmitRate:
    """A token bucket per user: `burst` submissions at once, refilled at `rate` per second.

    The clock is passed in, so the arithmetic is tested without sleeping.
    """

    burst: int
    rate: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # user -> (tokens, last time)

    def take(self, user: str, now: float) -> None:
        """Spend one token of `user`'s, or raise RateLimited saying when to retry."""
        tokens, last = self._buckets.get(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[user] = (tokens, now)
            wait = (1.0 - tokens) / self.rate if self.rate > 0 else math.inf
            retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
            raise RateLimited(f"{user} submitted more than {self.burst:,} jobs at once or {self.rate:g} per second "
                              f"([limits] submit_burst and submit_rate in melond's inventory); "
                              f"retry in {retry} s", retry_after=retry)
        self._buckets[user] = (tokens - 1.0, now)
