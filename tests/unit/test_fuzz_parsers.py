"""Any text, for every parser that reads user input: a value or the module's own error, nothing else.

Beyond the property tests in test_directives.py and test_timespec.py: every environment variable and
command-line option mbatch reads, huge digit strings (Python refuses int() of more than 4,300
digits with a plain ValueError), lone surrogates (what a non-UTF-8 byte becomes in argv), NUL.
"""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from melond.spec import jobrel
from melond.spec.directives import MELON_OPTIONS, DirectiveError
from melond.spec.request import build_request, dry_run_view
from melond.spec.timespec import (SpecError, expand_hostlist, parse_acct_time, parse_begin, parse_extension, parse_signal, parse_size_mib,
                             parse_time_limit, signal_spec)

NOW = 1_700_000_000.0
ALL_CHARS = st.characters(codec=None, categories=None)  # every code point, surrogates and NUL included
NASTY = st.one_of(
    st.text(ALL_CHARS, max_size=60),
    st.text("0123456789", min_size=4000, max_size=5000),
    st.builds(lambda a, digits, b: a + digits + b, st.sampled_from(["", "1-", "now+", "n[", "afterok:", "+", "1:"]),
              st.text("0123456789", min_size=19, max_size=4400), st.sampled_from(["", "]", "G", ":00", "-3", "s"])),
    st.text("0123456789-:+[],%kKmMgGtTunlimitedINFnowafterok?*\x00\udcff ", max_size=40),
)
OPTION_NAMES = [name for name, _, _ in MELON_OPTIONS]
ENV_NAMES = [f"{prefix}_{name}" for prefix in ("SBATCH", "MBATCH") for name in (
    "TIMELIMIT", "JOB_NAME", "PARTITION", "MEM_PER_NODE", "MEM_PER_CPU", "EXPORT", "ARRAY_INX", "OUTPUT", "ERROR",
    "SIGNAL", "NO_REQUEUE", "REQUEUE", "CPUS_PER_TASK", "HOLD")]
PARSERS = (parse_time_limit, parse_extension, parse_size_mib, expand_hostlist, parse_signal, signal_spec,
           lambda text: parse_begin(text, NOW), lambda text: parse_acct_time(text, NOW))


@settings(max_examples=300)
@given(NASTY)
def test_time_size_signal_and_host_parsers(text: str) -> None:
    for parse in PARSERS:
        try:
            parse(text)
        except SpecError:
            pass


@settings(max_examples=300)
@given(NASTY)
def test_array_and_dependency_parsers(text: str) -> None:
    for parse in (jobrel.parse_array, jobrel.parse_dependency):
        try:
            parse(text)
        except jobrel.RelError:
            pass


def _build(script: str, cli: dict, environ: dict, args: list[str]) -> None:
    try:
        request, warnings = build_request(script_text=script, script_path="job.sh", script_args=args, cli=cli,
                                          environ=environ, cwd="/home/ada", submit_host="login1", user="ada",
                                          now=NOW)
    except (DirectiveError, SpecError):
        return
    json.dumps(dry_run_view(request, warnings))  # what mbatch --dry-run --json prints
    json.dumps(request)  # what mbatch sends


@settings(max_examples=200)
@given(cli=st.dictionaries(st.sampled_from(OPTION_NAMES), st.one_of(NASTY, st.booleans()), max_size=6),
       environ=st.dictionaries(st.sampled_from(ENV_NAMES), NASTY, max_size=6),
       args=st.lists(st.text(ALL_CHARS, max_size=20), max_size=4))
def test_every_option_and_input_variable_with_any_value(cli: dict, environ: dict, args: list[str]) -> None:
    _build("#!/bin/sh\ntrue\n", cli, environ, args)


@settings(max_examples=200)
@given(st.lists(st.builds(lambda name, value: f"#SBATCH --{name}={value}", st.sampled_from(OPTION_NAMES), NASTY),
                max_size=6), st.sampled_from(["#SBATCH", "#MBATCH"]))
def test_every_directive_with_any_value(lines: list[str], magic: str) -> None:
    _build("#!/bin/sh\n" + "\n".join(line.replace("#SBATCH", magic) for line in lines) + "\ntrue\n", {}, {}, [])


@settings(max_examples=200)
@given(st.text(ALL_CHARS, max_size=400))
def test_any_script_text(text: str) -> None:
    _build(text, {}, {}, [])
