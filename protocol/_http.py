"""What every Kopilka HTTP service does the same way: bounded bodies and refusals as JSON.

Pure ASGI and stdlib only, so both the till's local API and central's use it without either
importing the other or a web framework leaking into `protocol`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

details_max = 20
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(
    code: str, message: str, details: Mapping[str, int | str | None] | None = None
) -> bytes:
    """The JSON bytes of an `ErrorBody`: a stable code, a sentence, optional details."""
    body = {"code": code, "message": message[:500], "details": dict(details or {})}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def describe_validation(
    errors: Iterable[Mapping[str, Any]],
) -> tuple[str, dict[str, int | str | None]]:
    """A pydantic error list as one sentence naming each bad field by its path
    (`items.0.seq: Input should be a valid integer`), and the same as details."""
    lines = []
    details: dict[str, int | str | None] = {}
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
        if len(details) < details_max:
            details[where or "body"] = str(error.get("msg", "invalid"))[:200]
    return "; ".join(lines), details


class BodyLimit:
    """ASGI middleware: reads the whole request body, up to `limit_bytes`, before the app sees
    any of it, and answers 413 past that, whether the size was announced in Content-Length or
    only found while streaming. (Raising from inside the app's own read does not work: a web
    framework may turn that into a 400.)"""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before it finished sending
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await refuse(send, 413, "too_large", f"request body is over {self.limit_bytes} bytes")


async def refuse(send: Send, status: int, code: str, message: str) -> None:
    """Answer an ASGI request with an `ErrorBody`, from middleware that has no framework."""
    body = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def freeze_startup_heap() -> None:
    """Take what start-up made (modules, validators, schemas, phone metadata: some 80,000
    objects) out of the garbage collector's sight. A full collection walked all of them: 25 to
    75 ms, landing inside whichever request happened to trigger it. Call once, just before
    serving; objects made later are collected as usual."""
    gc.collect()
    gc.freeze()
