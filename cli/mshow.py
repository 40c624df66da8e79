"""`mshow`: everything about one job, as `scontrol show job` does."""
from __future__ import annotations

import time

from melon_cli.args import Arg, Command, Opt
from melon_cli.common import client, echo, fmt_time, iso, job_ids, job_label, print_json
from melon_cli.queue_format import time_left
from melond.spec.timespec import format_duration, format_limit, format_size_mib

PROG = "mshow"


# The original Melon's `status` (its Rust enum's names; it had no cancel, memory or node-loss states).
ORIGINAL_STATUS = {"PD": "Pending", "R": "Running", "CD": "Completed", "F": "Failed", "TO": "Timeout",
                   "CA": "Cancelled", "OOM": "Failed", "NF": "Failed", "PR": "Cancelled"}


def _seconds(t: float | None) -> int | None:
    return None if t is None else int(t)


def parseable(job: dict) -> dict:
    """The original Melon's fields with its types (times in Unix seconds, `status` as `Completed`),
    then Melon's richer ones (times as ISO 8601, Slurm's state code and name)."""
    limit = job["time_limit"]
    return {
        "id": job["id"], "user": job["user"], "script_path": job.get("script_path"),
        "script_args": job.get("script_args") or [],
        "req_res": {"cpu_count": job["cpus"], "memory": job["memory"], "time": -(-limit // 60) if limit else None},
        "submit_time": _seconds(job["submit_time"]), "start_time": _seconds(job.get("start_time")),
        "stop_time": _seconds(job.get("end_time")), "status": ORIGINAL_STATUS[job["state"]],
        "assigned_node": job.get("node"),
        "name": job["name"], "state": job["state"], "state_name": job["state_name"],
        "time_limit_seconds": limit or None,
        "submitted_at": iso(job["submit_time"]), "started_at": iso(job.get("start_time")),
        "ended_at": iso(job.get("end_time")), "exit_code": job.get("exit_code"), "signal": job.get("exit_signal"),
        "reason": job.get("reason"), "why_waiting": job.get("why_waiting"), "priority": job.get("priority") or 0,
        "output": job["output_path"], "error": job["error_path"],
        "partition": job["partition"], "deadline": iso(job.get("deadline")), "detail": job.get("detail"),
        "backend": job.get("backend"), "requeue": job.get("requeue"), "restarts": job.get("restarts") or 0,
        "array_job_id": job.get("array_job_id"), "array_task_id": job.get("array_task_id"),
        "cpu_time": job.get("cpu_time"), "max_rss": job.get("max_rss"),
        "num_nodes": job.get("num_nodes", 1), "node_list": job.get("node_list"), "num_tasks": job.get("num_tasks", 1),
        "parts": [dict(zip(("node", "cpus", "tasks", "memory_mib", "cpu_ids"), p)) for p in job.get("parts") or []],
        "cpus_per_task": job.get("cpus_per_task", job["cpus"]), "cpu_ids": job.get("cpu_ids"),
        "interactive": bool(job.get("interactive")), "attached": job.get("attached", 0),
        "extensions": extensions(job),
        "steps": job.get("steps", []),
        "events": job.get("events", []),
    }


def extensions(job: dict) -> list[dict]:
    """The job's extension history: who, when, the limit before and after, the deadline after
    (readable here; the event's own epoch seconds stay under `data`)."""
    return [{**e, "by": e["actor"], "when": iso(e["time"]), "old_limit": format_limit(e["data"]["old_limit"]),
             "new_limit": format_limit(e["data"]["new_limit"]), "new_deadline": iso(e["data"].get("new_deadline"))}
            for e in job.get("events", []) if e["kind"] == "extended"]


def show(job_id: str, as_json: bool, endpoint: str | None) -> None:
    """Show job JOB_ID (12, an array task 10_3, tasks 10_[1-3], or an array's id for all its tasks):
    request, state, times, node, exit status, output and its history."""
    c = client(endpoint)
    shown = [c.call("GET", f"/jobs/{jid}") for jid in job_ids([job_id])]
    if len(shown) == 1 and shown[0].get("array_job_id") == shown[0]["id"] and "_" not in job_id:
        tasks = c.call("GET", f"/jobs?ids={shown[0]['id']}&all=1")["jobs"]
        shown += [c.call("GET", f"/jobs/{t['id']}") for t in tasks if t["id"] != shown[0]["id"]]
    if as_json:
        print_json(parseable(shown[0]) if len(shown) == 1 else [parseable(j) for j in shown])
        return
    for i, job in enumerate(shown):
        if i:
            echo()
        _details(job)


def _details(job: dict) -> None:
    exit_text = "-" if job.get("exit_code") is None and not job.get("exit_signal") else \
        f"{job.get('exit_code') if job.get('exit_code') is not None else 0}:{job.get('exit_signal') or 0}"
    rows = [
        ("JobId", job_label(job)), ("JobName", job["name"]), ("User", f"{job['user']}({job['uid']})"),
        ("JobState", f"{job['state_name']} ({job['state']})"),
        ("Reason", job.get("reason") + f": {job['why_waiting']}" if job.get("why_waiting") else
         job.get("reason") or "None"),
        ("Priority", str(job.get("priority") or 0)),
        ("Partition", job["partition"]), ("Node", job.get("node_list") or job.get("node") or "(none)"),
        ("Limits", job.get("backend") or "-"),
        ("NumCPUs", str(job["cpus"])), ("NumTasks", str(job.get("num_tasks", 1))),
        ("CPUs/Task", str(job.get("cpus_per_task", job["cpus"]))), ("CPU_IDs", job.get("cpu_ids") or "-"),
        ("Memory", format_size_mib(job["memory"] // (1024 * 1024))),
        ("TimeLimit", format_limit(job["time_limit"])), ("TimeLeft", time_left(job)),
        ("RunTime", format_duration(int(job["elapsed"]))),
        ("SubmitTime", fmt_time(job["submit_time"])), ("StartTime", fmt_time(job.get("start_time"))),
        ("Deadline", fmt_time(job.get("deadline"))), ("EndTime", fmt_time(job.get("end_time"))),
        ("Requeue", "1" if job.get("requeue") else "0"), ("Restarts", str(job.get("restarts") or 0)),
        ("ExitCode", exit_text), ("TotalCPU", _cpu(job.get("cpu_time"))),
        ("MaxRSS", format_size_mib(job["max_rss"] // (1024 * 1024)) if job.get("max_rss") is not None else "-"), ("Command", " ".join([job.get("script_path") or "(wrap)", *job.get("script_args", [])])),
        ("WorkDir", job["chdir"]), ("StdOut", job["output_path"]), ("StdErr", job["error_path"]),
    ]
    if job.get("gres_total"):  # its GPUs (and the like), and how it used them where nvidia-smi told
        at = next(i for i, (k, _) in enumerate(rows) if k == "Memory") + 1
        rows.insert(at, ("Gres", job["gres_total"]))
        if job.get("gpu_util") is not None:
            rows.insert(at + 1, ("GPUUse", f"{job['gpu_util']}% mean, "
                                           f"{format_size_mib(job['gpu_mem_peak'] // (1024 * 1024))} peak memory"))
    if len(job.get("parts") or []) > 1:  # a job spanning nodes: what it holds on each
        rows.insert(next(i for i, (k, _) in enumerate(rows) if k == "Node") + 1, ("Nodes", "; ".join(
            f"{node}: {cpus} CPU{'s' * (cpus != 1)}{f' ({ids})' if ids else ''}, {tasks} task{'s' * (tasks != 1)}, "
            f"{format_size_mib(memory) if memory else 'all memory'}" for node, cpus, tasks, memory, ids in job["parts"])))
    if job.get("runs_as"):  # a node melond reaches as an account, not root: the job runs as that account
        rows.insert(next(i for i, (k, _) in enumerate(rows) if k == "Node") + 1,
                    ("RunsAs", f"{job['runs_as']} (the account melond logs in to the node as)"))
    if job.get("extend_step"):
        rows.insert(next(i for i, (k, _) in enumerate(rows) if k == "TimeLeft") + 1, (
            "Elastic", f"+{format_duration(job['extend_step'])} at a time, up to {format_limit(job['time_max'])}, "
                       f"while it delays no waiting job"))
    if job.get("detail"):
        rows.append(("Detail", job["detail"]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key.rjust(width)}: {value}")
    asked = job.get("extension_requests") or []
    if asked:
        echo("Extension requests:")
        for r in reversed(asked):
            what = f"+{format_duration(r['add_seconds'])}" if r.get("add_seconds") is not None else \
                f"to {format_limit(r['to_limit'])}"
            verdict = f"; {r['verdict']}" if r.get("verdict") else ""
            by = f" by {r['decided_by']} at {fmt_time(r['decided'])}" if r.get("decided_by") else ""
            echo(f"  #{r['id']} {fmt_time(r['created'])}: {what} ({r['reason']}): {r['state']}{by}{verdict}")
    if job.get("steps"):
        echo("Steps:")
        for st in job["steps"]:
            took = format_duration(int((st["end_time"] or time.time()) - st["start_time"]))
            code = f"{st['exit_code'] or 0}:{st['exit_signal'] or 0}" if st["end_time"] else "-"
            echo(f"  {job_label(job)}.{st['step_id']} {st['name']}: {st['state']} ({code}), {st['ntasks']} "
                 f"task{'s' * (st['ntasks'] != 1)} on {st['node'] or '?'}, {took}")
    history = [e for e in job.get("events", []) if e["kind"] == "extended"]
    if history:
        echo("Extensions:")
        for e in history:
            d = e["data"]
            deadline = f", deadline {fmt_time(d['new_deadline'])}" if d.get("new_deadline") else ""
            echo(f"  {fmt_time(e['time'])} by {e['actor']}: {format_limit(d['old_limit'])} -> "
                       f"{format_limit(d['new_limit'])}{deadline}")


COMMAND = Command(PROG, show, [
    Opt("-p", "--parseable", dest="as_json", help="JSON for scripts: the original Melon's fields, then Melon's."),
    Opt("--json", dest="as_json", help="Same as -p."),
], args=[Arg("job_id", complete="jobs")])
main = COMMAND.main


def _cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{format_duration(int(seconds))}.{int(seconds * 1000) % 1000:03d}"
