"""An interactive allocation, as salloc and `srun --pty` make one: asked for with sbatch's job
options, waited for with Slurm's lines (Ctrl-C while it waits withdraws it), a terminal opened
in it (cli/terminal.py), and its end said as Slurm says it.

The job is `interactive`: melond starts a holder on each of its nodes instead of a script, and
the command runs on a pty on its first node, where `srun` inside reaches the job's other nodes
through the job channel, as in a batch job. Where the inventory turns use_interactive_step off,
salloc's command runs here on the login node instead, with the allocation's variables, and
`srun` in it starts every task through melond's API (`login_shell`).
"""
from __future__ import annotations

import os
import sys
import time

from melon_cli.client import Client
from melon_cli.common import fmt_time
from melon_cli.mbatch import FINISHED_SHORT
from melond.errors import MelonError

def allocate(prog: str, cli: dict, *, announce: bool, immediate: float | None = None) -> tuple[Client, dict]:
    """Submit the allocation and wait until it runs: (client, the job as melond shows it)."""
    import signal

    from melon_cli.common import client
    from melond.spec.request import build_request, current_umask

    request, warnings = build_request(script_text=None, script_path=None, script_args=[], cli={**cli, "wrap": "true"},
                                      environ=os.environ, cwd=os.getcwd(), submit_host=os.uname().nodename, user="",
                                      now=time.time(), sbatch=True, umask=current_umask())
    for warning in warnings:
        sys.stderr.write(f"{prog}: warning: {warning}\n")
    request["interactive"] = True
    request.pop("output", None)
    c = client(os.environ.get("MELON_API") or None)
    try:
        jid = c.call("POST", "/jobs", request)["job_ids"][0]
    except MelonError as exc:
        raise MelonError(f"Job submit/allocate failed: {exc}") from None
    if announce:
        sys.stderr.write(f"{prog}: Pending job allocation {jid}\n")
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    said = False
    started = time.monotonic()
    try:
        while True:
            job = c.call("GET", f"/jobs/{jid}")
            if job["state"] == "R":
                break
            if job["state"] in FINISHED_SHORT:
                raise MelonError(f"Job allocation {jid} has been revoked ({job['state']}: {job.get('detail') or ''})")
            waited = time.monotonic() - started
            if interrupted or (immediate is not None and waited >= immediate):
                c.call("POST", f"/jobs/{jid}/cancel")
                if interrupted:
                    raise MelonError(f"Job allocation {jid} has been revoked.")
                raise MelonError("Unable to allocate resources: Immediate execution impossible. "
                                 f"Individual job submission scheduling attempts deferred ({job.get('reason')})")
            if not said and waited > 1:
                sys.stderr.write(f"{prog}: job {jid} queued and waiting for resources\n")
                said = True
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    if said or announce:
        sys.stderr.write(f"{prog}: {'Granted job allocation' if announce else 'job'} {jid}"
                         f"{'' if announce else ' has been allocated resources'}\n")
    return c, job


def session(prog: str, c: Client, job: dict, argv: list[str], cwd: str | None) -> int:
    """The command on a terminal on the job's first node, then the job's end said: the exit code."""
    from melon_cli.terminal import attach
    jid = job["id"]
    try:
        code = attach(c, jid, argv, cwd=cwd, final=True, prog=prog)
    except MelonError:  # no terminal was had: the allocation is given back, not left to its time limit
        try:
            c.call("POST", f"/jobs/{jid}/cancel")
        except MelonError:
            pass
        raise
    ended = _ended(c, jid)
    state = (ended or {}).get("state")
    node = (ended or job).get("batch_host") or job.get("node") or "?"
    at = fmt_time((ended or {}).get("end_time") or time.time())
    if state in ("CA", "PR"):
        why = " DUE TO PREEMPTION" if state == "PR" else ""
        sys.stderr.write(f"slurmstepd: error: *** STEP {jid}.0 ON {node} CANCELLED AT {at}{why} ***\n")
    elif state == "TO":
        sys.stderr.write(f"slurmstepd: error: *** STEP {jid}.0 ON {node} CANCELLED AT {at} DUE TO TIME "
                         f"LIMIT ***\nmelon: job {jid} reached its time limit; a running job's limit can be moved with "
                         f"`mextend` (from inside its shell too)\n")
    elif state == "NF":
        sys.stderr.write(f"{prog}: error: job {jid}'s node {node} was lost\n")
    if code is None:
        if ended is None:
            sys.stderr.write(f"{prog}: error: lost the terminal's connection to melond; job {jid} runs on (scancel "
                             f"{jid} ends it)\n")
        return 128 + 9 if state in ("CA", "PR", "TO", "NF") else 1
    if code < 0:
        import signal
        if state not in ("CA", "PR", "TO"):
            sys.stderr.write(f"{prog}: error: {node}: task 0: {signal.strsignal(-code) or -code}\n")
        return 128 - code
    return code


def login_shell(prog: str, c: Client, job: dict, argv: list[str], env: dict[str, str], cwd: str | None) -> int:
    """The command here, on the login node, as Slurm's salloc runs it without use_interactive_step:
    with the allocation's SLURM_* variables, `srun` in it reaching the allocated nodes through
    melond's API (MELON_JOB_API); its end ends the allocation with its exit code, and the
    allocation's end (scancel, its time limit) ends it. Told before the end, as a terminal on a
    node is (melond.spec.notices)."""
    import signal
    import subprocess
    import threading

    from melon_cli.jobchannel import API_ENV
    jid = job["id"]
    try:
        child = subprocess.Popen(argv, env={**os.environ, **env, API_ENV: c.endpoint}, cwd=cwd)
    except OSError as exc:
        _relinquish(c, jid, 1)
        raise MelonError(f"cannot run {argv[0]}: {exc.strerror}") from None
    # the keyboard's signals are the command's; a hangup or TERM is passed on to it, and its end ends the allocation
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)}
    for sig in (signal.SIGHUP, signal.SIGTERM):
        ignored[sig] = signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    revoked = threading.Event()
    threading.Thread(target=_watch, args=(prog, c, jid, child, revoked), daemon=True).start()
    try:
        code = child.wait()
    finally:
        for sig, previous in ignored.items():
            signal.signal(sig, previous)
    status = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number, as a shell says
    if not revoked.is_set():
        _relinquish(c, jid, status)
        _ended(c, jid)
    return status


def _relinquish(c: Client, jid: int, code: int) -> None:
    try:
        c.call("POST", f"/jobs/{jid}/relinquish", {"exit_code": min(max(code, 0), 255)})
    except MelonError as exc:
        sys.stderr.write(f"salloc: error: could not end job allocation {jid} ({exc}); scancel {jid} ends it\n")


def _watch(prog: str, c: Client, jid: int, child, revoked) -> None:
    """While the command runs: the end's nearing said (once per end: an extension moves it),
    and the command ended (HUP, then KILL) once the allocation is gone, as Slurm's salloc does."""
    import signal

    from melond.spec.notices import end_lead, end_notice
    told = None
    while child.poll() is None:
        try:
            job = c.call("GET", f"/jobs/{jid}", query={"wait": 5})
        except MelonError:
            time.sleep(1)
            continue
        if job["state"] in FINISHED_SHORT:
            revoked.set()
            why = " due to its time limit" if job["state"] == "TO" else ""
            sys.stderr.write(f"\n{prog}: Job allocation {jid} has been revoked{why}.\n")
            for sig, wait in ((signal.SIGHUP, 5.0), (signal.SIGKILL, 0.0)):
                if child.poll() is None:
                    child.send_signal(sig)
                    time.sleep(wait)
            return
        deadline = job.get("deadline")
        if deadline and deadline != told:
            left = deadline - time.time()
            if 0 < left <= end_lead(job.get("signal"), job.get("time_limit")):
                told = deadline
                sys.stderr.write(f"\n{end_notice(jid, left)}\n")


def _ended(c: Client, jid: int) -> dict | None:
    """The job once it has ended (its terminal's end is its end: melond waits up to 10 s for
    it), or None if it runs on."""
    try:
        job = c.call("GET", f"/jobs/{jid}", query={"wait": 10})
    except MelonError:
        return None
    return job if job["state"] in FINISHED_SHORT else None
