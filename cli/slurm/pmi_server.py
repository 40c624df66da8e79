"""srun's PMI-1 service for one step (melond.spec.pmi speaks the protocol): a TCP port on the
step's first node that every task connects to, wherever it runs (`PMI_PORT=host:port`, with
`PMI_RANK` and `PMI_SIZE`), served by one thread until the step ends.

TCP because a step's tasks on the job's other nodes must reach it, as their MPI ranks will
reach each other: nothing passes from node to node but what the MPI itself sends.
"""
from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Callable

from melond.spec.pmi import LINE_MAX, Pmi1, ProtocolError, process_mapping


def advertised_address(node: str) -> str:
    """An address of this node the step's tasks on other nodes can reach: the job's name for it
    where that resolves (names in SLURM_JOB_NODELIST resolve on a cluster's nodes), else the
    machine's own name's, else loopback (every task is here)."""
    for name in (node, socket.gethostname()):
        if not name:  # srun on the login node: no job's name for it
            continue
        try:
            return socket.gethostbyname(name)
        except OSError:
            continue
    return "127.0.0.1"


class PmiServer:
    """Serves until `close()`; `on_abort(code, message)` runs (on the server's thread) when a
    rank calls PMI_Abort, as MPI_Abort does."""

    def __init__(self, ranks_per_node: list[list[int]], kvsname: str, on_abort: Callable[[int, str], None]) -> None:
        ntasks = sum(len(ranks) for ranks in ranks_per_node)
        nodes_of_ranks = [0] * ntasks
        for node, ranks in enumerate(ranks_per_node):
            for rank in ranks:
                nodes_of_ranks[rank] = node
        self.pmi = Pmi1(size=ntasks, kvsname=kvsname, mapping=process_mapping(nodes_of_ranks))
        self.on_abort = on_abort
        self.abort_told = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("", 0))
        self.listener.listen(max(ntasks, 16))
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.clients: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytes] = {}
        self.thread = threading.Thread(target=self._serve, name="pmi", daemon=True)
        self.thread.start()

    def env(self, node: str) -> dict[str, str]:
        """What every task of the step gets (each adds its own PMI_RANK)."""
        return {"PMI_PORT": f"{advertised_address(node)}:{self.port}", "PMI_SIZE": str(self.pmi.size)}

    def close(self) -> None:
        os.write(self.wake_w, b"x")
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            while True:
                for key, _ in self.sel.select():
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj == self.wake_r:
                        return
                    else:
                        self._read(key.data)
        finally:
            for conn in self.clients.values():
                conn.close()
            self.sel.close()
            self.listener.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = conn.fileno()
        self.clients[client] = conn
        self.buffers[client] = b""
        self.sel.register(conn, selectors.EVENT_READ, client)

    def _read(self, client: int) -> None:
        conn = self.clients[client]
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        buffer = self.buffers[client] + data
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            try:
                replies = self.pmi.handle(client, raw.decode("utf-8", "replace"))
            except ProtocolError:
                self._drop(client)
                return
            for target, text in replies:
                self._send(target, text)
            if self.pmi.aborted is not None and not self.abort_told:
                self.abort_told = True
                self.on_abort(*self.pmi.aborted)
        if len(buffer) > LINE_MAX * 64:  # no line this long is PMI
            self._drop(client)
            return
        self.buffers[client] = buffer

    def _send(self, client: int, text: str) -> None:
        conn = self.clients.get(client)
        if conn is None:
            return
        try:
            conn.sendall(text.encode())
        except OSError:
            self._drop(client)

    def _drop(self, client: int) -> None:
        conn = self.clients.pop(client, None)
        self.buffers.pop(client, None)
        if conn is not None:
            self.sel.unregister(conn)
            conn.close()
