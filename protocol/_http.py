"""What every Kopilka HTTP service does the same way: bounded bodies and refusals as JSON.

Pure ASGI and stdlib only, so both the till's local API and central's use it without either
importing the other or a web framework leaking into `protocol`.
"""

from __future__ import annotations

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


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuses request bodies over `limit_bytes` with 413, whether the size
    is announced in Content-Length or only found while streaming."""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = error_body("too_large", f"request body is over {self.limit_bytes} bytes")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
