"""Melon's version, once: pyproject reads it from here (setuptools' `attr:`, read without importing
the package), and every command's `--version` prints it without importlib.metadata, whose import
would cost a fast command more than its whole run."""
from __future__ import annotations

__version__ = "0.2.0"
#: The --version option's help, the same on every command.
HELP = "Print the version and exit."


def version_line(prog: str) -> str:
    """What `PROG --version` prints, in GNU's form: `mqueue (Melon) 0.2.0`."""
    return f"{prog} (Melon) {__version__}"
