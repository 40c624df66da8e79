"""melond's log: JSON lines for the journal and for files, readable text for a person at a terminal.

Either goes to stderr or, with --log-file, is appended to a file that SIGHUP reopens, so that
logrotate can move the file away and melond carries on in a new one at the same path.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from melond.errors import MelonError

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
FORMATS = ("json", "text")


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """The fields a call passed with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonLines(logging.Formatter):
    """`{"time", "level", "logger", "msg", ...extra}` per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _text_value(value: object) -> str:
    """A value as `key=value` shows it: bare where that reads back unambiguously, else JSON."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=\\' for c in value):
        return value
    return json.dumps(value, default=str)


class Text(logging.Formatter):
    """`2026-05-01 12:00:00.123 INFO    message key=value ...` per record, in local time."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.getMessage()}"
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in _extras(record).items())
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonLines, "text": Text}


class ReopenedFile(logging.FileHandler):
    """A log file appended to; `reopen` moves on to whatever file is at its path now."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8")  # opened now, so a bad path fails at start

    def reopen(self) -> None:
        """Open the path anew (logrotate moved the old file away) and close the old file; on
        failure keep writing to the old one and raise OSError."""
        self.acquire()
        try:
            old, self.stream = self.stream, self._open()
            old.close()
        finally:
            self.release()


def setup(level: str = "INFO", fmt: str | None = None, path: str | None = None) -> None:
    """Log at `level` to `path` (appended) or stderr, as `fmt`; no format given means text on a
    terminal and JSON lines anywhere else (the journal, a pipe, a file)."""
    if path:
        try:
            handler: logging.StreamHandler = ReopenedFile(path)
        except OSError as exc:
            raise MelonError(f"cannot open the log file {path}: {exc.strerror or exc}; "
                             "give --log-file a path in a folder that exists") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    if fmt is None:
        fmt = "text" if not path and sys.stderr.isatty() else "json"
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime


def reopen() -> bool:
    """Reopen the log file, if melond writes one (SIGHUP); False when it logs to stderr."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, ReopenedFile)]
    for handler in files:
        handler.reopen()
    return bool(files)
