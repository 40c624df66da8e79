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

and the answer a stream of JSON lines while the tasks run: `{"rank": 4, "fd": 1, "data": BASE64}`
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
# The node's own values win over those srun sends from the first node.
NODE_LOCAL = ("SLURMD_NODENAME", "SLURM_CPUS_ON_NODE", "SLURM_TOPOLOGY_ADDR", "MELON_NODE_SOCKET", "TMPDIR",
              "HOSTNAME", "SLURM_MEM_PER_NODE")


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
        self.conn = conn
        self.pipes: dict[int, tuple[int, int]] = {}  # read end -> (rank, fd)
        self.pids: dict[int, int] = {}  # pid -> rank
        self.exits = 0

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\n"
        try:
            self.conn.setblocking(True)
            self.conn.sendall(data)
        except OSError:  # srun's side gone: the tasks run on until the step or the job ends
            pass

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
            while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            request = json.loads(data)
        except (OSError, ValueError):
            conn.close()
            return
        step = Step(conn)
        self.steps.append(step)
        for task in request.get("tasks", []):
            self._start(step, request, task)
        self._settle(step)

    def _start(self, step: Step, request: dict, task: dict) -> None:
        rank = int(task["rank"])
        env = {**dict(request.get("env") or {}), **dict(task.get("env") or {}),
               **{k: self.env[k] for k in NODE_LOCAL if k in self.env}}
        env.update({"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(task.get("localid", 0))})
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
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                            signal.SIGPIPE, signal.SIGTERM, signal.SIGALRM, signal.SIGQUIT, signal.SIGCONT):
                    signal.signal(sig, signal.SIG_DFL)
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
        except OSError:
            data = b""
        rank, stream = step.pipes[fd]
        if data:
            step.send({"rank": rank, "fd": stream, "data": base64.b64encode(data).decode()})
            return
        self.sel.unregister(fd)
        os.close(fd)
        del step.pipes[fd]
        self._settle(step)

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
                    step.send({"rank": rank, "exit": os.waitstatus_to_exitcode(status)})
                    self._settle(step)

    def _settle(self, step: Step) -> None:
        if step.done and step in self.steps:
            step.send({"done": True})
            step.conn.close()
            self.steps.remove(step)


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
