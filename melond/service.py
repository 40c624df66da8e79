"""melond as a systemd service: the unit shipped in melond/data, printed or installed.

The shipped file is the one source of the unit; printing it only points its ExecStart at the
melond command being run, so that the unit starts the melond that installed it.
"""
from __future__ import annotations

import os
import sys
from importlib import resources

from melond.errors import MelonError

UNIT_NAME = "melond.service"
SHIPPED_EXEC = "/usr/local/bin/melond"  # the file's ExecStart: where `pip install` as root puts melond
NEXT_STEP = "systemctl daemon-reload && systemctl enable --now melond"


def this_melond() -> str | None:
    """The melond command being run, as an absolute path; None when run another way (python -m)."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) != "melond" or not os.access(argv0, os.X_OK):
        return None
    return os.path.abspath(argv0)  # not resolved: a pipx or venv upgrade keeps the same path


def unit_text(melond: str | None = None) -> str:
    """The unit, its ExecStart pointing at `melond` where given."""
    text = resources.files("melond.data").joinpath(UNIT_NAME).read_text(encoding="utf-8")
    if melond:
        text = text.replace(f"\nExecStart={SHIPPED_EXEC}\n", f"\nExecStart={melond}\n", 1)
    return text


def install(unit_path: str, config_dir: str, melond: str | None) -> str:
    """Write the unit (atomically, 0644) and make the inventory's folder; say what was done and
    what to run next. systemctl is left to the operator: enabling a service is their call."""
    text = unit_text(melond)
    try:
        with open(unit_path, encoding="utf-8") as f:
            same = f.read() == text
    except FileNotFoundError:
        same = False
    except OSError as exc:
        raise MelonError(f"cannot read {unit_path}: {exc.strerror}") from None
    try:
        if not same:
            _write(unit_path, text)
        os.makedirs(config_dir, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise MelonError(f"cannot write {exc.filename or unit_path}: {exc.strerror}; run it as root") from None
    program = melond or SHIPPED_EXEC
    lines = [f"melond: {'unchanged' if same else 'wrote'} {unit_path} (ExecStart={program})"]
    if not os.access(program, os.X_OK):
        lines.append(f"melond: warning: {program} is not an executable here; edit ExecStart in {unit_path}")
    lines += [f"melond: the inventory goes in {os.path.join(config_dir, 'melon.toml')} "
              "(without it, melond runs jobs on this machine only)",
              "Start melond now and at every boot:", f"  {NEXT_STEP}"]
    return "\n".join(lines)


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # whatever the umask: systemd and operators read units
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
