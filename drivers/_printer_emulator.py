"""A network receipt printer that is not there: a TCP server on loopback that keeps the bytes.

It answers the real-time status queries a printer answers (`DLE EOT 1…4`), can be switched
off and on (connections refused while off, on the same port after), can run out of paper, and
can vanish in the middle of a receipt (`vanish_after(n)`: after n more bytes it drops every
connection and switches itself off). `view()` decodes what it received with the receipt
viewer, the way a person would read the paper.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from drivers._escpos_view import ReceiptView, view_escpos

_DLE_EOT = b"\x10\x04"
_ONLINE, _PAPER_OK, _PAPER_OUT, _NO_ERROR = 0x16, 0x12, 0x72, 0x12
received_bytes_max = 64 * 1024 * 1024


class NetworkPrinterEmulator:
    """Listens on 127.0.0.1; `port` is fixed after the first `start()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.paper_out = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._connections: list[bytearray] = []
        self._vanish_after: int | None = None
        self._dead: set[int] = set()  # id() of connection buffers lost in a power cut

    # -- power --------------------------------------------------------------------------------

    def start(self) -> NetworkPrinterEmulator:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    power_on = start

    def power_off(self) -> None:
        """Refuse connections and drop the open ones, as a printer switched off does."""
        with self._lock:
            listener, self._listener = self._listener, None
            clients, self._clients = self._clients, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            listener.close()
        for client in clients:
            _drop(client)

    close = power_off

    def power_cut(self) -> None:
        """Lose power and come back at once, without a word on the wire: the connections
        open before are dead (nothing that arrives on them is printed) and nothing tells
        their other end, as after a real power cut, where the old connection learns of it
        only from a reset that comes much later. New connections print."""
        with self._lock:
            self._dead.update(id(buffer) for buffer in self._connections)

    @property
    def powered(self) -> bool:
        with self._lock:
            return self._listener is not None

    def __enter__(self) -> NetworkPrinterEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def vanish_after(self, size: int) -> None:
        """After `size` more bytes, drop every connection and switch off (cable pulled)."""
        with self._lock:
            self._vanish_after = size

    # -- what it received ---------------------------------------------------------------------

    @property
    def connections(self) -> list[bytes]:
        """The bytes of each connection so far, oldest first."""
        with self._lock:
            return [bytes(c) for c in self._connections]

    @property
    def received(self) -> bytes:
        return b"".join(self.connections)

    def view(self) -> ReceiptView:
        return view_escpos(self.received)

    def wait_until(self, done: Callable[[bytes], bool], timeout_s: float = 5.0) -> bool:
        """Wait until `done(received)` holds; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not done(b"".join(self._connections)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.05))
        return True

    # -- the server -----------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # switched off
            with self._lock:
                if self._listener is not listener:
                    _drop(client)
                    return
                self._clients.append(client)
                buffer = bytearray()
                self._connections.append(buffer)
            threading.Thread(target=self._serve, args=(client, buffer), daemon=True).start()

    def _serve(self, client: socket.socket, buffer: bytearray) -> None:
        while True:
            try:
                chunk = client.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            if self._take(chunk, buffer):
                self.power_off()
                return
            try:
                self._answer_queries(client, buffer, len(chunk))
            except OSError:
                return

    def _take(self, chunk: bytes, buffer: bytearray) -> bool:
        """Keep the chunk (or its part before vanishing); True if the printer vanishes now."""
        with self._changed:
            if id(buffer) in self._dead:
                return False
            vanish = self._vanish_after is not None and len(chunk) >= self._vanish_after
            if vanish and self._vanish_after is not None:
                chunk = chunk[: self._vanish_after]
                self._vanish_after = None
            elif self._vanish_after is not None:
                self._vanish_after -= len(chunk)
            if len(buffer) + len(chunk) <= received_bytes_max:
                buffer += chunk
            self._changed.notify_all()
        return vanish

    def _answer_queries(self, client: socket.socket, buffer: bytearray, new: int) -> None:
        start = max(0, len(buffer) - new - 2)
        while True:
            found = buffer.find(_DLE_EOT, start)
            if found < 0 or found + 2 >= len(buffer):
                return
            kind = buffer[found + 2]
            start = found + 3
            if kind == 1:
                client.sendall(bytes([_ONLINE]))
            elif kind == 4:
                client.sendall(bytes([_PAPER_OUT if self.paper_out else _PAPER_OK]))
            elif kind in (2, 3):
                client.sendall(bytes([_NO_ERROR]))


def _drop(client: socket.socket) -> None:
    """Close with a reset, as a printer that loses power does."""
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
    except OSError:
        client.close()
