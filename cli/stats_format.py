"""`minfo --stats`: melond's figures since it started (`GET /api/v1/stats`), with the rates an
operator asks first: scheduling passes, submissions and requests per minute. Pure: a reply in,
lines out."""
from __future__ import annotations

from melond.display import table
from melond.spec.timespec import format_clock


def per_minute(count: int, seconds: float) -> str:
    """A count over an uptime as a rate a minute (`-` before the first second)."""
    return f"{count * 60 / seconds:.1f}" if seconds >= 1 else "-"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def mean(figures: dict) -> float | None:
    return figures["total"] / figures["count"] if figures["count"] else None


def render(stats: dict) -> list[str]:
    """The summary's lines: uptime, jobs, scheduler, store, requests by route (most first)."""
    up = max(0.0, stats["time"] - stats["since"])
    began = format_clock(stats["since"])
    sched, store = stats["scheduler"], stats["store_commits"]
    requests = sum(r["count"] for r in stats["requests"])
    lines = [
        f"melond up since {began} ({_uptime(up)}); threads {stats['threads']}",
        "",
        f"Jobs: submitted {stats['jobs_submitted']}, started {stats['jobs_started']}, completed "
        f"{stats['jobs_completed']}, cancelled {stats['jobs_cancelled']}, failed {stats['jobs_failed']}, requeued "
        f"{stats['jobs_requeued']}, extended {stats['jobs_extended']}",
        f"      pending {stats['jobs_pending']}, running {stats['jobs_running']}; "
        f"submissions per minute {per_minute(stats['jobs_submitted'], up)}",
        f"Scheduler: passes {sched['count']} ({per_minute(sched['count'], up)} per minute); last "
        f"{ms(sched['last'])} ms, mean {ms(mean(sched))} ms, max {ms(sched['max'])} ms; last queue length "
        f"{stats['last_queue_length']}",
        f"Store: commits {store['count']}; last {ms(store['last'])} ms, mean {ms(mean(store))} ms, max "
        f"{ms(store['max'])} ms; writes waiting {stats['store_waiting']}",
        f"Requests: {requests} ({per_minute(requests, up)} per minute), {stats['requests_in_flight']} in flight",
    ]
    rows = [[r["method"], r["route"], str(r["count"]), ms(mean(r)), ms(r["total"])]
            for r in sorted(stats["requests"], key=lambda r: (-r["count"], r["route"], r["method"]))]
    if rows:
        lines += ["", table(["METHOD", "ROUTE", "COUNT", "MEAN_MS", "TOTAL_MS"], rows, right={2, 3, 4})]
    return lines


def _uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock
