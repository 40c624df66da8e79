"""Where melond keeps its state, and where clients look for its socket.

Standard library only: the CLIs import this to find the default endpoint.
"""
from __future__ import annotations

import os
import pwd

SYSTEM_STATE_DIR = "/var/lib/melon"
SOCKET_NAME = "melond.sock"


def user_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "melon")


def default_state_dir() -> str:
    """Root keeps state in the system path; anyone else in their XDG state dir."""
    return SYSTEM_STATE_DIR if os.geteuid() == 0 else user_state_dir()


def default_endpoint() -> str:
    """The user's own melond if one runs, else the system one."""
    mine = os.path.join(default_state_dir(), SOCKET_NAME)
    if os.path.exists(mine):
        return f"unix:{mine}"
    system = os.path.join(SYSTEM_STATE_DIR, SOCKET_NAME)
    return f"unix:{system if os.path.exists(system) else mine}"


def current_user() -> str:
    """The caller's name, or the bare uid where the account has no name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
