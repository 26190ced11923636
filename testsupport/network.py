"""A TCP forwarder that tests use to cut the way to a real server."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpProxy:
    """A TCP forwarder on loopback in front of a real server: tests cut the way to the server and
    restore it, which is what its clients see of a server restart or a network outage.

    `down()` resets every open connection and refuses new ones until `up()` listens again on the
    same port; `cut_after(n)` lets `n` more bytes through towards the server and then goes down,
    so that a connection dies in the middle of whatever the client was sending; `swallow_replies()`
    lets everything through towards the server but nothing back, so the server acts on what the
    client sent while the client never hears of it (a lost acknowledgement).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._budget: int | None = None
        self._swallow = False
        self.port = 0
        self.up()

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            self._budget = None
            self._swallow = False
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self.port = self._listener.getsockname()[1]
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            # Shut down first: that wakes the thread blocked in accept(), which holds the port.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: the peer gets a reset, as from a server that went away.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget = n

    def swallow_replies(self) -> None:
        with self._lock:
            self._swallow = True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if upstream and not self._spend(len(chunk)):
                    allowed = max(0, self._budget or 0)
                    if allowed:
                        sink.sendall(chunk[:allowed])
                    self.down()
                    return
                if not upstream and self._swallow:
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _spend(self, n: int) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            if n > self._budget:
                return False
            self._budget -= n
            return True
