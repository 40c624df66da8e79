"""Shell completion's values from melond: job ids (as `mqueue` labels them) and node names.

Loaded only while a shell asks for completions (`_MQUEUE_COMPLETE=bash_complete ...`); a melond
that cannot be reached completes nothing rather than printing an error into the prompt.
"""
from __future__ import annotations

import os

from melon_cli.common import client, job_label


def _endpoint(ctx) -> str | None:
    return (ctx.params.get("endpoint") if ctx is not None else None) or os.environ.get("MELON_API") or None


def jobs(ctx, param, incomplete: str) -> list:
    """Pending and running jobs whose label starts with what is typed; each array also by its id."""
    from click.shell_completion import CompletionItem
    try:
        fields = "id,name,state,array_job_id,array_task_id"
        listed = client(_endpoint(ctx)).call("GET", "/jobs", query={"fields": fields}, timeout=2.0)["jobs"]
    except Exception:  # noqa: BLE001 - a prompt is no place for an error
        return []
    items: dict[str, str] = {}
    for j in listed:
        items.setdefault(job_label(j), f"{j['name']} ({j['state']})")
        if j.get("array_job_id") is not None:
            items.setdefault(str(j["array_job_id"]), f"{j['name']} (the whole array)")
    return [CompletionItem(label, help=text) for label, text in items.items() if label.startswith(incomplete)]


def nodes(ctx, param, incomplete: str) -> list:
    from click.shell_completion import CompletionItem
    try:
        listed = client(_endpoint(ctx)).call("GET", "/nodes", timeout=2.0)["nodes"]
    except Exception:  # noqa: BLE001
        return []
    return [CompletionItem(n["name"], help=n["state"]) for n in listed if n["name"].startswith(incomplete)]
