"""Request bodies that trickle, for tests of what a slow client may hold of a real server: many raw
connections on 127.0.0.1, each a request head (and perhaps a first part of its body sent at once),
then a few bytes every ``every_s``, never silent long enough for the server's body timeout. One thread
drips on all of them and reads what the server answers."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def chunk(data: bytes) -> bytes:
    """One piece of a ``Transfer-Encoding: chunked`` body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@dataclass
class _Conn:
    sock: socket.socket
    drip: bytes
    reply: bytes = b""
    closed: bool = False  # the server closed the connection (after its answer, or without one)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def status(self) -> int | None:
        return int(self.reply.split(b" ", 2)[1]) if self.reply.startswith(b"HTTP/1.1 ") else None


class Trickler:
    """Trickling requests to ``port``, dripped by one thread every ``every_s`` until :meth:`stop_dripping`
    (then they fall silent, and the server's body timeout answers them) or :meth:`close`; bounded by
    ``limit_s`` in all."""

    def __init__(self, port: int, every_s: float = 0.5, limit_s: float = 180.0) -> None:
        self.port = port
        self.every_s = every_s
        self.conns: list[_Conn] = []
        self._dripping = threading.Event()
        self._dripping.set()
        self._stop = threading.Event()
        self._end = time.monotonic() + limit_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def open(self, head: bytes, first: bytes = b"", drip: bytes = b"x") -> _Conn:
        """A connection that sends ``head`` + ``first`` now and ``drip`` every ``every_s`` after."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.sendall(head + first)
        conn = _Conn(sock, drip)
        self.conns.append(conn)
        return conn

    def unread(self) -> int:
        """Bytes sent on these connections that the server has not read yet: the receive queues of the
        server's ends, from the kernel (``/proc/net/tcp``). A client's ``sendall`` returns once its bytes
        are in the kernel's buffers (several MiB on loopback), not once the server has them."""
        ends = {(self.port, conn.sock.getsockname()[1]) for conn in self.conns if not conn.closed}
        unread = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) in ends:
                unread += int(queues.split(":")[1], 16)
        return unread

    def statuses(self) -> list[int | None]:
        return [conn.status for conn in self.conns]

    def all_answered(self) -> bool:
        self._read_all()
        return all(conn.closed or conn.status is not None for conn in self.conns)

    def stop_dripping(self) -> None:
        self._dripping.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for conn in self.conns:
            conn.sock.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s) and time.monotonic() < self._end:
            if self._dripping.is_set():
                for conn in list(self.conns):
                    if not conn.closed and conn.status is None:
                        try:
                            conn.sock.sendall(conn.drip)
                        except OSError:
                            conn.closed = True
            self._read_all()

    def _read_all(self) -> None:
        for conn in list(self.conns):
            with conn.lock:
                while not conn.closed:
                    try:
                        ready, _, _ = select.select([conn.sock], [], [], 0)
                        if not ready:
                            break
                        data = conn.sock.recv(65536)
                    except (OSError, ValueError):
                        conn.closed = True
                        break
                    if not data:
                        conn.closed = True
                    conn.reply += data
