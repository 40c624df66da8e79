"""The helper protocol's vocabulary, imported by both ends: operations, events, error codes.

Standard library only: this module is shipped to the node with the helper, and melond imports
the same file, so a code one side sends is a name the other side knows.
"""
from __future__ import annotations

from enum import StrEnum

from .marks import STEP_MARK  # noqa: F401 - srun's and the node side's one name for it


class Op(StrEnum):
    """Requests melond sends; each carries an `id` its reply repeats, and an `epoch` where melond
    leads by one (remote/fence.py): a node refuses every request of an older epoch than it has heard."""

    PING = "ping"
    START = "start"  # job: the start request (idempotent per run: a second start reports the first)
    SET_LIMIT = "set_limit"  # job_id, run, limit: a running job's new total limit
    SET_LIMITS = "set_limits"  # limits: [[job_id, run, limit], ...], a node's whole set at reconnect
    KILL = "kill"  # job_id, run, cause (KillCause): end it (idempotent: a flag in the run's spool)
    SIGNAL = "signal"  # job_id, run, signal, to (SignalTo): send it to those processes of the running job, once
    LIST = "list"  # every run in the spool and its state
    FORGET = "forget"  # runs: [[job_id, run], ...] whose end melond has committed
    ANSWER = "answer"  # ask, reply: melond's answer to a job's ask (Event.ASK)
    # job_id, run, step, argv, cwd, tasks: srun's tasks on a further node of the job (remote/holder.py); with `pty`:
    # a terminal; with `release`: the allocation ends with that exit code (its shell ran on the login node)
    LAUNCH = "launch"
    RELAY = "relay"  # ask, message: one of the lines a streamed answer to a job's ask carries (before its ANSWER)
    FEED = "feed"  # job_id, run, step, stdin (base64) | resize ([rows, cols]) | hangup: a terminal's input (Op.LAUNCH with pty)
    READ_OUTPUT = "read_output"  # path, user, uid, offset, limit: part of a job's output file, opened as the user (remote/output.py)
    GPU_USAGE = "gpu_usage"  # each GPU's utilization and memory used now, by nvidia-smi (remote/gpus.py)


class Event(StrEnum):
    """Messages the helper sends unasked."""

    HELLO = "hello"  # its probe of the node, once booted
    EXITED = "exited"  # job_id, run, result: a run ended
    ASK = "ask"  # ask, job_id, run, uid, request: a running job asks (remote/asks.py); melond answers with Op.ANSWER
    ASK_GONE = "ask_gone"  # ask, job_id, run: the process waiting for a streamed answer went away
    ASK_INPUT = "ask_input"  # ask, job_id, run, message: what srun --pty's user types ({stdin} | {resize})
    TASK = "task"  # job_id, run, step, message: a line from a further node's tasks (remote/holder.py)


class SignalTo(StrEnum):
    """Which of a running job's processes a signal is for (Slurm's scancel and sbatch --signal)."""

    ALL = "all"  # every process: mcancel -s, scancel -f, and SIGKILL
    STEPS = "steps"  # what srun started (its tasks and their children): scancel -s, --signal=SIG@T
    BATCH = "batch"  # the batch shell alone, not its children: scancel -b, --signal=B:SIG@T


STEP_TARGET = "step:"  # a signal's target `step:N`: the tasks of one step (`scancel J.N`)


class KillCause(StrEnum):
    """Why melond ends a running job (Op.KILL's `cause`): the words of the line slurmstepd
    writes to the job's error stream."""

    CANCEL = "cancel"  # scancel, mcancel: `CANCELLED AT <time>`
    REQUEUE = "requeue"  # scontrol requeue: `... DUE TO JOB REQUEUE`
    NODE_FAIL = "node_fail"  # mnode down, or a run fenced after its node was lost: `... DUE TO NODE FAILURE`
    PREEMPT = "preempt"  # a preempting QOS' job takes its room (PreemptMode=CANCEL): `... DUE TO PREEMPTION`


DEFAULT_UMASK = 0o022  # a job's umask when its start names none (the web form's jobs, jobs stored before umasks were)


def job_channel(scope: str) -> str:
    """The abstract Unix socket (without its leading NUL) where a spool's jobs ask melond for
    things; jobs find it in MELON_NODE_SOCKET, written `@` + this."""
    return "melon-jobs-" + scope


class ErrorCode(StrEnum):
    """Why the helper refused a request (`error.code` in its reply)."""

    BAD_REQUEST = "bad_request"  # an unknown operation or a malformed request
    NO_SUCH_USER = "no_such_user"  # the job's user has no account on the node
    NO_SUCH_JOB = "no_such_job"  # no such run in the spool (its start never arrived)
    LAUNCH_FAILED = "launch_failed"  # the node's supervisor did not start the job
    NO_OUTPUT = "no_output"  # the output file is missing, not a regular file, or not the job user's
    INTERNAL = "internal"  # a bug in the helper, caught so that the channel lives on
    STALE_EPOCH = "stale_epoch"  # from a melond older than the one that leads the node now (remote/fence.py)
