"""A TCP proxy on loopback that breaks HTTP exchanges on purpose.

It sits between a client and a server and handles one HTTP/1.1 request at a time (bodies
framed by Content-Length, as httpx and uvicorn send them). Each request takes the next fault
from a queue, or passes through when the queue is empty:

- `Fault.drop`: close the client's connection before anything reaches the server;
- `Fault.delay`: hold the request for `delay_s` before forwarding it;
- `Fault.duplicate`: send the request to the server twice; the client sees the second reply;
- `Fault.lose_reply`: forward the request, wait for the server's whole reply, then cut the
  client's connection, so the request went through and the reply is lost.

Setting `partitioned` cuts every connection until it is cleared: the network is down.

Threads, not asyncio, so synchronous tests can drive it directly. Every loop is bounded by
socket time-outs; `close()` stops it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from enum import StrEnum

io_timeout_s = 30.0
header_bytes_max = 64 * 1024


class Fault(StrEnum):
    drop = "drop"
    delay = "delay"
    duplicate = "duplicate"
    lose_reply = "lose_reply"


class _Closed(Exception):
    pass


def _read_message(sock: socket.socket, buffer: bytearray) -> bytes:
    """One HTTP message (head + Content-Length body) from `sock`; leftovers stay in buffer."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > header_bytes_max:
            raise _Closed("header too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed("peer closed")
        buffer.extend(chunk)
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise _Closed("chunked bodies are not supported by the fault proxy")
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed("peer closed mid-body")
        buffer.extend(chunk)
    message = bytes(buffer[: head_end + length])
    del buffer[: head_end + length]
    return message


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.5
        self.faults: deque[Fault] = deque()
        self.requests = 0
        self.applied: list[Fault] = []
        self.partitioned = False
        """While True every connection is cut at once: the network is down."""
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def close(self) -> None:
        self._stopping.set()
        self._accepter.join(timeout=5)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self.requests += 1
            fault = self.faults.popleft() if self.faults else None
            if fault is not None:
                self.applied.append(fault)
            return fault

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(io_timeout_s)
        buffer = bytearray()
        try:
            while not self._stopping.is_set() and not self.partitioned:
                request = _read_message(client, buffer)
                if self.partitioned:
                    return
                fault = self._next_fault()
                if fault is Fault.drop:
                    return
                if fault is Fault.delay:
                    time.sleep(self.delay_s)
                if fault is Fault.duplicate:
                    self._exchange(request)
                reply = self._exchange(request)
                if fault is Fault.lose_reply:
                    return
                client.sendall(reply)
        except (_Closed, OSError):
            return
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def _exchange(self, request: bytes) -> bytes:
        """Send one request on a fresh upstream connection and read the whole reply."""
        with socket.create_connection(self.target, timeout=io_timeout_s) as upstream:
            upstream.sendall(request)
            return _read_message(upstream, bytearray())


class ProxyProcess:
    """A `FaultProxy` in a process of its own (`python -m tests.faultproxy PORT`), for a
    benchmark that must not time its own requests against the proxy's threads: the relay's
    Python work would hold the measuring process's interpreter lock. `partitioned` is set by
    a line on its standard input ("partition" or "heal"), answered "ok"."""

    def __init__(self, target_port: int) -> None:
        import subprocess
        import sys

        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.faultproxy", str(target_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        self._partitioned = False

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    @partitioned.setter
    def partitioned(self, value: bool) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("partition\n" if value else "heal\n")
        self._process.stdin.flush()
        if self._process.stdout.readline().strip() != "ok":
            raise RuntimeError("the proxy process did not answer")
        self._partitioned = value

    def close(self) -> None:
        self._process.kill()
        self._process.wait()


def _main(argv: list[str]) -> int:
    """`python -m tests.faultproxy PORT`: print the proxy's port, then obey "partition",
    "heal" and "quit" lines on standard input until it closes."""
    import sys

    with FaultProxy(int(argv[0])) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            proxy.partitioned = command == "partition"
            print("ok", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
