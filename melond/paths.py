"""Where melond keeps its state and reads its configuration, and where clients look for its socket.

Standard library only: the CLIs import this to find the default endpoint.
"""
from __future__ import annotations

import os
import pwd

SYSTEM_STATE_DIR = "/var/lib/melon"
SOCKET_NAME = "melond.sock"
SYSTEM_CONFIG = "/etc/melon/melon.toml"
CONFIG_ENV = "MELON_CONFIG"
SYSTEMD_UNIT = "/etc/systemd/system/melond.service"


def user_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "melon")


def default_state_dir() -> str:
    """Root keeps state in the system path; anyone else in their XDG state dir."""
    return SYSTEM_STATE_DIR if os.geteuid() == 0 else user_state_dir()


def user_config() -> str:
    """The user's own inventory, in their XDG config dir (~/.config/melon/melon.toml)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "melon", "melon.toml")


def default_config() -> tuple[str | None, str]:
    """The inventory melond reads without --inventory, and why: (path, source).

    MELON_CONFIG wins, and is returned even when missing so that the caller can name it; else
    root's system file or anyone else's own file, each only where it exists (as the state dir,
    root never reads a home directory's); else (None, "embedded"), the local node alone.
    """
    chosen = os.environ.get(CONFIG_ENV)
    if chosen:
        return chosen, CONFIG_ENV
    path = SYSTEM_CONFIG if os.geteuid() == 0 else user_config()
    return (path, "default") if os.path.isfile(path) else (None, "embedded")


def default_endpoints() -> list[str]:
    """Where a command with no endpoint given asks: the user's own melond if its socket is
    there, then the system one. A user's melond that died leaves its socket behind; the client
    then falls back to the system melond rather than failing (cli/client.py)."""
    mine = os.path.join(default_state_dir(), SOCKET_NAME)
    system = os.path.join(SYSTEM_STATE_DIR, SOCKET_NAME)
    found = [f"unix:{path}" for path in dict.fromkeys((mine, system)) if os.path.exists(path)]
    return found or [f"unix:{mine}"]


def current_user() -> str:
    """The caller's name, or the bare uid where the account has no name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
