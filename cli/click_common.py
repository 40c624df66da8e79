"""For the operators' commands still written directly in rich-click (mnode, mtoken, minfo): the
endpoint option, --version and error reporting, as `cli.args` gives the fast commands."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import rich_click as click

from melon_cli.args import CONTEXT, ENDPOINT  # noqa: F401 - CONTEXT re-exported
from melond.errors import MelonError
from melond.version import HELP, __version__, version_line


def endpoint_option(fn: Callable) -> Callable:
    return click.option(*ENDPOINT.flags, "endpoint", envvar="MELON_API", default=None, metavar="URL",
                        help=ENDPOINT.help)(fn)


def version_option(prog: str) -> Callable:
    """`--version`: `PROG (Melon) X.Y.Z`, with the version given so click never asks importlib.metadata."""
    return click.version_option(__version__, "--version", message=version_line(prog).replace("%", "%%"), help=HELP)


def handle_errors(prog: str) -> Callable:
    """Turn MelonError (and bad values) into `prog: error: ...` and exit status 1."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (MelonError, ValueError) as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(1)
        return inner
    return wrap
