"""A job's process, forked by hand so that nothing a user names is opened by the supervisor.

Standard library only: streamed to compute nodes with the helper. The supervisor starts and
watches every job of its node from one loop, so a job's working directory and output files are
opened in the job's own child, as its user, never in the supervisor: a FIFO nobody reads, a
device or a file on a hung network mount then holds up that one job (whose deadline and cancel
still reach it, as a process of its cgroup), never its neighbours. The child reports on a
close-on-exec socket, which closes once the job's command is running: what failed, or else the
job's error stream, passed whole (SCM_RIGHTS), where the supervisor writes Slurm's own lines
about the job's end (`*** JOB 12 ON node1 CANCELLED AT ... DUE TO TIME LIMIT ***`) without
ever opening a path of the user's.

A job may start milliseconds after sbatch returns, before the tool that submitted it has made
its output directory (submitit and Hydra make a `%j` folder once they know the job's id). So
an output or error file whose directory does not exist yet is waited for, up to DIR_WAIT
seconds, in the child alone; the directory is never created for the user (a typo fails, as
in Slurm, rather than scattering folders).

Where the supervisor is root, the child also gives the job a private /dev/shm: a tmpfs of its
own mount namespace, charged to the job's memory as it is written and gone with the job's last
process. Every job gets a temporary directory of its own as TMPDIR, which the supervisor removes
when the job ends (Slurm's job_container/tmpfs does both with bind mounts; TMPDIR leaves the
node's /tmp visible, where sites keep working directories).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_SLAVE = 0x2, 0x4, 0x4000, 0x80000
SHM = "/dev/shm"
DIR_WAIT = 10.0  # seconds a job waits for its output file's directory to appear
ERROR_STREAM = b"stderr"  # the report that carries the job's error stream (SCM_RIGHTS)
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Launch:
    """What the child needs: the command, and where and as whom it runs."""

    argv: list[str]
    env: dict[str, str]
    keep_fd: int  # the script's memfd, the one descriptor the job inherits besides stdio
    cwd: str
    output: str
    error: str | None
    append: bool
    umask: int
    ids: tuple[int, int, list[int]] | None  # (uid, gid, groups) to take; None: stay who we are
    for_good: bool  # take the ids for good; False: only to open files (systemd-run needs root to exec)
    tmpdir: str | None
    shm_size: int  # bytes for the private /dev/shm (the job's memory); 0: the kernel's default, half the RAM
    cpu_ids: list[int] | None = None  # the CPUs it is pinned to (inherited by all it starts); None: any


def spawn(launch: Launch, enter: Callable[[], None], leave: Callable[[], None]) -> tuple[int, int]:
    """Fork the job (inside its cgroup: `enter` and `leave` move the caller in and out around
    the fork); return its pid and the supervisor's end of its report socket, non-blocking."""
    report_r, report_w = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    try:
        enter()
        pid = os.fork()
    except BaseException:
        leave()  # also after a move that failed half way
        os.close(report_r)
        os.close(report_w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(report_r)
            _child(launch, report_w)
        finally:
            os._exit(127)
    leave()
    os.close(report_w)
    os.set_blocking(report_r, False)
    return pid, report_r


def _child(launch: Launch, report: int) -> None:
    step = "start"
    try:
        try:
            signal.set_wakeup_fd(-1)  # the supervisor's: a signal here must not wake its loop
        except ValueError:
            pass
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE and SIGXFSZ; exec keeps an ignore
        os.setsid()
        if launch.cpu_ids:
            step = "pin the job to its CPUs"
            _pin(launch.cpu_ids)
        if os.geteuid() == 0:  # a mount namespace needs CAP_SYS_ADMIN
            _private_shm(launch.shm_size)
        if launch.ids is not None:
            uid, gid, groups = launch.ids
            os.setgroups(groups)
            if launch.for_good:
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            else:
                os.setegid(gid)
                os.seteuid(uid)
        os.umask(launch.umask)
        step = f"change directory to {launch.cwd}"
        os.chdir(launch.cwd)
        if launch.tmpdir:
            step = f"create the job's temporary directory {launch.tmpdir}"
            os.mkdir(launch.tmpdir, 0o700)
            launch.env["TMPDIR"] = launch.tmpdir
        step = "open /dev/null"
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        step = f"open output file {launch.output}"
        out = _open_output(launch.output, launch.append)
        err = out
        if launch.error and launch.error != launch.output:  # the same file named twice: one file, one offset
            step = f"open error file {launch.error}"
            err = _open_output(launch.error, launch.append)
        os.dup2(out, 1)
        os.dup2(err, 2)
        step = "hand the error stream to the supervisor"
        channel = socket.socket(fileno=report)
        try:
            socket.send_fds(channel, [ERROR_STREAM], [2])
        finally:
            channel.detach()
        if launch.ids is not None and not launch.for_good:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups([])
        keep = sorted({launch.keep_fd, report})  # the report socket closes itself at exec
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 20)
        step = f"execute {launch.argv[0]}"
        os.execvpe(launch.argv[0], launch.argv, launch.env)
    except OSError as exc:
        os.write(report, f"cannot {step}: {exc.strerror or exc}".encode()[:4000])
    except BaseException as exc:  # noqa: BLE001 - anything else is still this job's failure alone
        os.write(report, f"cannot {step}: {exc!r}".encode()[:4000])


def _pin(cpu_ids: list[int]) -> None:
    """The job's CPUs as its affinity, which every process it starts inherits: `nproc`, OpenMP,
    BLAS and PyTorch size their thread pools by it. CPUs this node no longer lets us use (its
    own cpuset changed since melond chose) are dropped; none left leaves the node's."""
    allowed = os.sched_getaffinity(0)
    mine = [c for c in cpu_ids if c in allowed]
    if mine:
        os.sched_setaffinity(0, mine)


def _open_output(path: str, append: bool) -> int:
    """Opened without blocking (a FIFO nobody reads is ENXIO, not a wait), then made blocking
    again, so that the job's own writes behave as they would anywhere. A missing directory is
    waited for (DIR_WAIT)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    deadline, pause = time.monotonic() + DIR_WAIT, 0.005
    while True:
        try:
            fd = os.open(path, flags, 0o666)
            break
        except OSError as exc:
            if exc.errno == errno.ENXIO and _is_fifo(path):
                raise OSError(exc.errno, "it is a FIFO that no process is reading") from None
            folder = os.path.dirname(os.path.abspath(path))
            if exc.errno != errno.ENOENT or os.path.isdir(folder):
                raise
            if time.monotonic() >= deadline:
                raise OSError(exc.errno, f"its directory {folder} does not exist (waited {DIR_WAIT:g} s for it "
                                         f"to appear; create it before submitting)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _private_shm(size: int) -> bool:
    """A mount namespace of the job's own with a fresh tmpfs on /dev/shm; nothing if the node
    refuses (no CAP_SYS_ADMIN, a seccomp or LSM rule): the job then shares the node's."""
    if not os.path.isdir(SHM) or _libc.unshare(CLONE_NEWNS) != 0:
        return False
    # Slave: the node's later mounts still reach the job, and nothing of the job's reaches the node.
    if _libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) != 0:
        return False
    options = (f"mode=1777,size={size}" if size else "mode=1777").encode()
    return _libc.mount(b"tmpfs", SHM.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) == 0
