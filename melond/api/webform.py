"""A job submitted from the browser's form: the script pasted or uploaded, its directives read by
mbatch's own parser (melond.spec), the form's fields on top as mbatch's command line would be.

A browser has no shell, so there is no environment to export: the job gets a login's
variables (HOME, USER, LOGNAME, SHELL, a plain PATH), as `--export=NONE` gives in Slurm, and
starts in the user's home unless the form or the script names a directory.
"""
from __future__ import annotations

import os
import pwd

from melond.spec.directives import options_from_scan, scan_script
from melond.spec.request import build_request

# The form's fields, by mbatch's option names (what a directive sets them with).
FIELDS = ("job-name", "time", "cpus-per-task", "mem", "partition", "array", "output", "error", "chdir",
          "time-max", "signal", "mail-type", "hold")
PATH = "/usr/local/bin:/usr/bin:/bin"


def directives(script: str) -> tuple[dict[str, object], list[str]]:
    """The form's fields as the script's #MBATCH/#SBATCH lines set them, and the parser's warnings."""
    settings, warnings = options_from_scan(scan_script(script))
    return {key: setting.value for key, setting in settings.items() if key in FIELDS}, warnings


def login_environment(entry: pwd.struct_passwd) -> dict[str, str]:
    return {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name,
            "SHELL": entry.pw_shell or "/bin/sh", "PATH": PATH}


def request(script: str, fields: dict[str, object], args: list[str], entry: pwd.struct_passwd,
            now: float) -> tuple[dict, list[str]]:
    """The job request mbatch would build from this script with the form's fields as its options."""
    cli = {k: v for k, v in fields.items() if v not in (None, "", False)}
    return build_request(script_text=script, script_path=None, script_args=args, cli=cli,
                         environ=login_environment(entry), cwd=entry.pw_dir, submit_host=os.uname().nodename,
                         user=entry.pw_name, now=now)
