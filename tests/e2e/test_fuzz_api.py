"""Every API route of a real melond, over its Unix socket, with whatever a client could send.

Bodies of arbitrary JSON (the route's own field names with values of every type, huge numbers,
deep nesting), raw bytes (not JSON, not UTF-8, NaN, Infinity), arbitrary path parameters and
query strings. Never a 5xx, never a dropped connection; every refusal is a 4xx in the documented
shape; melond answers and runs a job afterwards.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Melon, UnixHTTP
from melond.api import models
from melond.api.routes import PREFIX, ROUTES

FIELDS = sorted({name for m in (models.SubmitRequest, models.ExtendRequest, models.NodeAction,
                                models.TokenRequest, models.RevokeRequest) for name in m.model_fields})
QUERY_KEYS = ["state", "user", "ids", "all", "wait", "x"]
HUGE = st.sampled_from([2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 2**64, 0, -1])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(codec=None, categories=None), max_size=30))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)
RAW = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                     b'{"cpus": NaN}', b'{"ttl": Infinity}', b'{"add": -Infinity}', b"\xff\xfe{}", b"null",
                     b'{"script": "\\ud800", "name": "\\u0000", "chdir": "/"}', b'{"add": 1e999}',
                     b'{"ids": ["' + b"a" * 100_000 + b'"]}', b'{"to": ' + b"9" * 5000 + b"}"]),
)
TEXT = st.one_of(st.text(st.characters(codec=None, categories=None), max_size=30),
                 st.integers().map(str), HUGE.map(str), st.sampled_from(["1", "local", "-1", "1e5", "nan", "inf"]))


def _quote(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def send(melon: Melon, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    conn = UnixHTTP(str(melon.state / "melond.sock"))
    try:
        conn.request(method, url, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check(status: int, raw: bytes, what: str) -> None:
    assert status < 500, f"{what}: HTTP {status}: {raw[:300]!r}"
    if status == 200 and raw.startswith(b"retry: "):  # the event stream: server-sent events, not JSON
        assert all(line.startswith((b"retry: ", b"id: ", b"event: ", b"data: ", b": ")) or not line
                   for line in raw.split(b"\n")), (what, raw[:300])
        return
    reply = json.loads(raw)
    if status >= 400:
        assert set(reply) == {"error"} and set(reply["error"]) == {"code", "message"}, (what, reply)
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"], (what, reply)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Melon]:
    root = Path(tempfile.mkdtemp(prefix="mf-", dir="/tmp"))
    root.chmod(0o755)
    melon = Melon(root)
    melon.start()
    yield melon
    melon.run("mnode", "resume", "local", check=False)
    melon.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _body_for(method: str, body: object) -> bytes | None:
    if method == "GET" and body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, dict):
        body = {**body, "hold": True} if "script" in body else body  # never run what the fuzzer wrote
    return json.dumps(body).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), job_id=TEXT, name=TEXT,
       query=st.lists(st.tuples(st.sampled_from(QUERY_KEYS), TEXT), max_size=3),
       body=st.one_of(st.none(), JSON, st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6), RAW))
def test_no_input_gets_a_5xx_or_a_malformed_error(fuzzed: Melon, route, job_id: str, name: str,
                                                   query: list[tuple[str, str]], body: object) -> None:
    method, path, *_ = route
    url = PREFIX + path.format(job_id=_quote(job_id), name=_quote(name), request_id=_quote(job_id))
    params = [(k, "0.01" if k == "wait" and _positive(v) else v) for k, v in query]  # never park on a job
    if path == "/events":
        params = [(k, v) for k, v in params if k != "seconds"] + [("seconds", "0")]  # a stream that ends
    if params:
        url += "?" + "&".join(f"{quote(k)}={_quote(v)}" for k, v in params)
    status, raw = send(fuzzed, method, url, _body_for(method, body))
    check(status, raw, f"{method} {url[:200]} {str(body)[:200]}")


@pytest.mark.parametrize("method, path", [("GET", "/jobs/1"), ("POST", "/nowhere"), ("DELETE", "/jobs"),
                                          ("POST", "/jobs/%ff%fe/cancel"), ("GET", "/jobs?ids=%ff,1")])
def test_odd_paths_and_methods(fuzzed: Melon, method: str, path: str) -> None:
    status, raw = send(fuzzed, method, PREFIX + path, None)
    check(status, raw, path)


def test_melond_still_runs_jobs_after_the_fuzzing(fuzzed: Melon) -> None:
    assert "unhandled error" not in fuzzed.log.read_text()
    fuzzed.run("mnode", "resume", "local")  # the fuzzer may have drained it: it is root, an operator
    jid = fuzzed.submit("--wrap", "echo alive")
    assert fuzzed.wait_state(jid, {"CD"})["exit_code"] == 0
    assert (fuzzed.work / f"melon-{jid}.out").read_text() == "alive\n"
