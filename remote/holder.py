"""A job's part on a node other than its first: what holds its CPUs and memory there, and starts
srun's tasks inside them.

Standard library only, and self-contained: melond sends this file as the script of the job's run
on each further node, so the supervisor starts it like any batch script, as the job's user, in
the job's cgroup, pinned to its CPUs, with its deadline. Every task it forks inherits all of
that; nothing is installed on the node and no node reaches another by SSH (Slurm's slurmstepd
has the same place on each node of a job).

It listens on an abstract Unix socket named for the node's spool and the run
(`melon-share-<scope>-<run key>`), where only the node's helper (root, or the account melond
logs in as) and the job's own user may connect. A request is one JSON line:

    {"step": 3, "argv": [...], "cwd": "/work", "env": {...}, "tasks": [{"rank": 4, "localid": 0,
     "cpus": [2, 3], "env": {...}}, ...]}

(`cpus`: the task's own, of the CPUs melond granted the step on this node)

or, for a terminal (`"pty": [rows, cols]`), one task on a pty of its own, whose connection then
carries `{"stdin": BASE64}`, `{"resize": [rows, cols]}` and `{"hangup": true}` lines; a
connection lost without `hangup` (melond's, as it restarts) leaves the terminal running, and
`{"attach": STEP, "pty": [rows, cols]}` on a new one takes it up again with what it wrote
meanwhile. The answer is a stream of JSON lines while the tasks run: `{"rank": 4, "fd": 1, "data": BASE64}`
for output, `{"rank": 4, "exit": CODE}` (a negative code: the signal that ended it) as each ends,
`{"error": TEXT}` for a task that could not start, and `{"done": true}` last.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import socket
import struct
import sys

PREFIX = "melon-share-"
MAX_REQUEST = 1 << 22
BACKLOG = 1 << 18  # bytes of a detached terminal's output kept for its reattachment (the last of them)
# The node's own values win over those srun sends from the first node.
NODE_LOCAL = ("SLURMD_NODENAME", "SLURM_CPUS_ON_NODE", "SLURM_TOPOLOGY_ADDR", "MELON_NODE_SOCKET", "TMPDIR",
              "HOSTNAME", "SLURM_MEM_PER_NODE")
# The job's GPUs on this node (melond.sched.launch.gres_environment): this node's, or none.
GPU_LOCAL = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_JOB_GPUS",
             "SLURM_GPUS_ON_NODE", "CUDA_DEVICE_ORDER")
GPU_LISTS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")


def task_gpus(env: dict, localid: int) -> None:
    """Bind a task to its own GPUs where the step asks for some per task (SLURM_GPUS_PER_TASK):
    the node's list of the job's GPUs, cut in turn, task `localid` taking the localid-th share, as
    Slurm's per-task binding numbers them (SLURM_STEP_GPUS by the node's indexes). A task beyond
    the GPUs there keeps the whole list."""
    per_task = env.get("SLURM_GPUS_PER_TASK", "").rpartition(":")[2]
    if not per_task.isdigit() or not int(per_task) or not env.get("CUDA_VISIBLE_DEVICES"):
        return
    n = int(per_task)
    listed = env["CUDA_VISIBLE_DEVICES"].split(",")
    mine = listed[localid * n:(localid + 1) * n]
    if len(mine) < n:
        return
    for name in GPU_LISTS:
        env[name] = ",".join(mine)
    indexes = (env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS", "")).split(",")  # the step's, if its own
    if len(indexes) == len(listed):
        env["SLURM_STEP_GPUS"] = ",".join(indexes[localid * n:(localid + 1) * n])


def node_env(own: dict, env: dict) -> dict:
    """A task's environment with this node's own values: its name, CPUs, GPUs, ... (a step's
    request carries the first node's). A step that holds GPUs of its own carries this node's
    (SLURM_STEP_GPUS, srun sets it node by node): those stay."""
    env.update({k: own[k] for k in NODE_LOCAL if k in own})
    step_own = ("SLURM_STEP_GPUS", *GPU_LISTS, "SLURM_GPUS_ON_NODE") if "SLURM_STEP_GPUS" in env else ()
    for k in GPU_LOCAL:
        if k in step_own:
            continue
        if k in own:
            env[k] = own[k]
        else:
            env.pop(k, None)
    return env


def address(scope: str, key: str) -> str:
    return "\0" + PREFIX + scope + "-" + key


def run_key(job_id: str, run: str) -> str:
    return f"{int(job_id)}.{int(run)}" if int(run or 0) else str(int(job_id))


def _peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid


class Step:
    """One request's tasks: their pipes, and the connection their output goes back on."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn: socket.socket | None = conn  # None: a terminal waiting to be reattached
        self.pipes: dict[int, tuple[int, int]] = {}  # read end -> (rank, fd)
        self.pids: dict[int, int] = {}  # pid -> rank
        self.exits = 0
        self.master: int | None = None  # a terminal's side that the holder keeps
        self.inbox = b""
        self.final = False  # its end is the job's: the holder exits with its code
        self.code: int | None = None
        self.id: int | None = None  # a terminal's step, by which a new connection reattaches it
        self.backlog = bytearray()  # what a terminal wrote while no connection was there to take it
        self.ended: list[dict] = []  # its task's exit, said once a connection is back

    @property
    def attached(self) -> bool:
        return self.conn is not None

    def send(self, message: dict) -> None:
        if self.conn is None:  # a terminal between connections (melond restarting): kept for the next
            if "data" in message:
                self.backlog += base64.b64decode(message["data"])
                del self.backlog[:-BACKLOG]
            elif "exit" in message:
                self.ended.append(message)
            return
        data = json.dumps(message).encode() + b"\n"
        try:
            self.conn.setblocking(True)
            self.conn.sendall(data)
        except OSError:  # srun's side gone: the tasks run on until the step or the job ends
            pass
        finally:
            if self.master is not None and self.conn is not None:
                self.conn.setblocking(False)

    @property
    def done(self) -> bool:
        return not self.pids and not self.pipes


class Holder:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.steps: list[Step] = []
        self.env = dict(os.environ)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def serve(self, listener: socket.socket) -> None:
        self.sel.register(listener, selectors.EVENT_READ, self._accept)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._reap)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            for key, _ in self.sel.select():
                key.data(key.fileobj)

    def _accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        if _peer_uid(conn) not in (0, os.getuid()):
            conn.close()
            return
        conn.settimeout(10)
        data = b""
        try:
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            first, _, rest = data.partition(b"\n")
            request = json.loads(first)
        except (OSError, ValueError):
            conn.close()
            return
        if request.get("attach") is not None:
            self._reattach(conn, int(request["attach"]), request.get("pty"), rest)
            return
        if request.get("release") is not None:  # salloc's shell on the login node ended: so does the job
            conn.close()
            _exit_as(int(request["release"]))
        step = Step(conn)
        self.steps.append(step)
        if request.get("pty"):
            step.final = bool(request.get("final"))
            self._start_pty(step, request, rest)
        else:
            for task in request.get("tasks", []):
                self._start(step, request, task)
        self._settle(step)

    def _start_pty(self, step: Step, request: dict, pending: bytes) -> None:
        """One task on a terminal of its own: its session and controlling terminal a new pty's,
        sized as the user's window; the connection then carries what the user types (`stdin`),
        window changes (`resize`) and nothing else; closing it hangs the terminal up."""
        import fcntl
        import termios
        task = (request.get("tasks") or [{"rank": 0}])[0]
        rank = int(task.get("rank", 0))
        step.id = int(request.get("step", 0))
        env = node_env(self.env, {**self.env, **dict(request.get("env") or {}), **dict(task.get("env") or {})})
        env.update({"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(task.get("localid", 0))})
        master, slave = os.openpty()
        _winsize(master, request["pty"])
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(master)
            os.close(slave)
            step.send({"rank": rank, "error": f"fork: {exc.strerror}"})
            step.send({"rank": rank, "exit": 2})
            return
        if pid == 0:  # pragma: no cover - the task
            try:
                _default_signals()
                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                os.closerange(3, 1 << 16)
                where = request.get("cwd") or env.get("HOME") or "/"
                try:
                    os.chdir(where)
                except OSError as exc:  # as slurmstepd does
                    os.write(2, f"slurmstepd: error: couldn't chdir to `{where}': {exc.strerror}: going to /tmp "
                                f"instead\r\n".encode())
                    os.chdir("/tmp")
                argv = list(request["argv"])
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                os.write(2, f"slurmstepd: error: execve(): {request['argv'][0]}: {exc.strerror}\r\n".encode())
            finally:
                os._exit(2)
        os.close(slave)
        step.pids[pid] = rank
        step.master = master
        step.pipes[master] = (rank, 1)
        self.sel.register(master, selectors.EVENT_READ, lambda f, s=step: self._output(s, f))
        step.conn.setblocking(False)
        step.inbox = pending
        self.sel.register(step.conn, selectors.EVENT_READ, lambda c, s=step: self._typed(s))
        if pending:
            self._typed(step, read=False)

    def _typed(self, step: Step, read: bool = True) -> None:
        """Lines from srun's side of a terminal: keystrokes and window sizes; its end, a hangup."""
        if read:
            try:
                data = step.conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # melond's connection went (not the user's, which says `hangup`): the terminal waits
                self.sel.unregister(step.conn)
                step.conn.close()
                step.conn = None
                step.inbox = b""
                return
            step.inbox += data
        while b"\n" in step.inbox:
            line, _, step.inbox = step.inbox.partition(b"\n")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if step.master is None:
                continue
            if message.get("hangup"):  # the user's terminal closed: the shell and its jobs get SIGHUP
                for pid in step.pids:
                    try:
                        os.killpg(os.getpgid(pid), signal.SIGHUP)
                    except OSError:
                        pass
            if "stdin" in message:
                try:
                    os.write(step.master, base64.b64decode(message["stdin"]))
                except OSError:
                    pass
            if "resize" in message:
                _winsize(step.master, message["resize"])

    def _reattach(self, conn: socket.socket, step_id: int, size: object, pending: bytes) -> None:
        """A new connection for a terminal whose last one went with melond: what it wrote since
        first, then on as before; its task's end, if it came meanwhile."""
        step = next((s for s in self.steps if s.id == step_id and s.master is not None and not s.attached), None)
        if step is None:
            conn.sendall(json.dumps({"error": f"no terminal of step {step_id} waits here"}).encode() + b"\n"
                         + json.dumps({"done": True}).encode() + b"\n")
            conn.close()
            return
        step.conn = conn
        if size:
            _winsize(step.master, size)
        backlog, step.backlog = bytes(step.backlog), bytearray()
        if backlog:
            step.send({"rank": 0, "fd": 1, "data": base64.b64encode(backlog).decode()})
        for message in step.ended:
            step.send(message)
        step.ended.clear()
        conn.setblocking(False)
        step.inbox = pending
        self.sel.register(conn, selectors.EVENT_READ, lambda c, s=step: self._typed(s))
        if pending:
            self._typed(step, read=False)

    def _start(self, step: Step, request: dict, task: dict) -> None:
        rank = int(task["rank"])
        env = node_env(self.env, {**dict(request.get("env") or {}), **dict(task.get("env") or {})})
        env.update({"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(task.get("localid", 0))})
        task_gpus(env, int(task.get("localid", 0)))
        ends = [os.pipe(), os.pipe()]
        try:
            pid = os.fork()
        except OSError as exc:
            step.send({"rank": rank, "error": f"fork: {exc.strerror}"})
            step.send({"rank": rank, "exit": 2})
            for r, w in ends:
                os.close(r)
                os.close(w)
            return
        if pid == 0:  # pragma: no cover - the task
            try:
                _default_signals()
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(ends[0][1], 1)
                os.dup2(ends[1][1], 2)
                os.closerange(3, 1 << 16)
                if task.get("cpus"):
                    try:
                        os.sched_setaffinity(0, task["cpus"])
                    except OSError:
                        pass
                os.chdir(request.get("cwd") or "/")
                argv = list(request["argv"])
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                os.write(2, f"slurmstepd: error: execve(): {request['argv'][0]}: {exc.strerror}\n".encode())
                os._exit(2)
            finally:
                os._exit(2)
        step.pids[pid] = rank
        for fd, (r, w) in zip((1, 2), ends):
            os.close(w)
            step.pipes[r] = (rank, fd)
            self.sel.register(r, selectors.EVENT_READ, lambda f, s=step: self._output(s, f))

    def _output(self, step: Step, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: a terminal whose every other end has closed
            data = b""
        rank, stream = step.pipes[fd]
        if data:
            step.send({"rank": rank, "fd": stream, "data": base64.b64encode(data).decode()})
            return
        self.sel.unregister(fd)
        os.close(fd)
        del step.pipes[fd]
        if fd == step.master:
            step.master = None
        self._settle(step)

    def _hang_up(self, step: Step) -> None:
        """The terminal's task ended: what it wrote last goes out, then the terminal closes (what
        it left running in the background gets SIGHUP, as when a login ends)."""
        master = step.master
        os.set_blocking(master, False)
        while step.master is not None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                break
            step.send({"rank": step.pipes[master][0], "fd": 1, "data": base64.b64encode(data).decode()})
        if step.master is not None:
            self.sel.unregister(master)
            os.close(master)
            del step.pipes[master]
            step.master = None

    def _reap(self, fd: int) -> None:
        try:
            os.read(fd, 4096)
        except OSError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for step in self.steps:
                if pid in step.pids:
                    rank = step.pids.pop(pid)
                    step.code = os.waitstatus_to_exitcode(status)
                    step.send({"rank": rank, "exit": step.code})
                    if step.master is not None and not step.pids:
                        self._hang_up(step)
                    self._settle(step)

    def _settle(self, step: Step) -> None:
        if step.done and step in self.steps:
            step.send({"done": True})
            if step.conn is not None:
                try:
                    self.sel.unregister(step.conn)  # a terminal's, read for keystrokes
                except (KeyError, ValueError):
                    pass
                step.conn.close()
            self.steps.remove(step)
            if step.final:  # an interactive allocation's shell: its end is the job's
                _exit_as(step.code if step.code is not None else 0)


def _default_signals() -> None:
    """In a task before its exec: the signals the holder ignores or catches back to their default
    (an ignore survives exec), job control's included for a terminal's."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE,
                signal.SIGTERM, signal.SIGALRM, signal.SIGQUIT, signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU):
        signal.signal(sig, signal.SIG_DFL)


def _winsize(master: int, size: object) -> None:
    import fcntl
    import termios
    try:
        rows, cols = (int(n) for n in size)  # type: ignore[union-attr]
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except (OSError, TypeError, ValueError):
        pass


def _exit_as(code: int) -> None:
    """Exit as the task did: with its code, or by its signal (the job records which)."""
    sys.stdout.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def main() -> None:
    # A part of the job, not a program of the user's: the signals scancel sends to a job's
    # processes reach the tasks; this one ends with the job (its cgroup), TERM or KILL.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGQUIT,
                signal.SIGCONT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    scope = os.environ.get("MELON_NODE_SOCKET", "@melon-jobs-").removeprefix("@melon-jobs-")
    key = run_key(os.environ.get("SLURM_JOB_ID", "0"), os.environ.get("SLURM_RESTART_COUNT", "0"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(scope, key))
    listener.listen(64)
    sys.stdout.flush()
    Holder().serve(listener)


if __name__ == "__main__":
    main()
