"""The fault proxy itself, against a tiny counting HTTP server on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .faultproxy import Fault, FaultProxy


class _Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(body)  # type: ignore[attr-defined]
        reply = b"got " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def proxy(server: ThreadingHTTPServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.server_address[1]) as fault_proxy:
        yield fault_proxy


def _post(proxy: FaultProxy, body: bytes) -> httpx.Response:
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        return client.post("/x", content=body)


def test_passes_requests_through_on_one_connection(
    server: ThreadingHTTPServer, proxy: FaultProxy
) -> None:
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        replies = [client.post("/x", content=f"n{i}".encode()).text for i in range(3)]
    assert replies == ["got n0", "got n1", "got n2"]
    assert server.seen == [b"n0", b"n1", b"n2"]  # type: ignore[attr-defined]


def test_drop_reaches_nobody(server: ThreadingHTTPServer, proxy: FaultProxy) -> None:
    proxy.inject(Fault.drop)
    with pytest.raises(httpx.TransportError):
        _post(proxy, b"a")
    assert server.seen == []  # type: ignore[attr-defined]
    assert _post(proxy, b"b").text == "got b"


def test_delay_holds_the_request(server: ThreadingHTTPServer, proxy: FaultProxy) -> None:
    proxy.delay_s = 0.3
    proxy.inject(Fault.delay)
    started = time.monotonic()
    assert _post(proxy, b"slow").text == "got slow"
    assert time.monotonic() - started >= 0.3


def test_duplicate_sends_twice_and_answers_once(
    server: ThreadingHTTPServer, proxy: FaultProxy
) -> None:
    proxy.inject(Fault.duplicate)
    assert _post(proxy, b"twice").text == "got twice"
    assert server.seen == [b"twice", b"twice"]  # type: ignore[attr-defined]


def test_lose_reply_lets_the_request_through(
    server: ThreadingHTTPServer, proxy: FaultProxy
) -> None:
    proxy.inject(Fault.lose_reply)
    with pytest.raises(httpx.TransportError):
        _post(proxy, b"lost")
    assert server.seen == [b"lost"]  # type: ignore[attr-defined]
    assert proxy.applied == [Fault.lose_reply]
