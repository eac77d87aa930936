"""Every refusal is JSON with `code` and `message`: handlers and the request size limit."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from central._directory import Refused
from protocol import BodyLimit, ErrorBody, describe_validation

__all__ = ["BodyLimit", "error_response", "install", "storage_problem", "validation_response"]

log = logging.getLogger("kopilka.central.storage")

details_max = 20
storage_retry_after_s = 30
"""`Retry-After` of a refusal for want of storage: a till retries on its own back-off anyway."""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_response(
    status: int, code: str, message: str, details: dict[str, int | str | None] | None = None
) -> JSONResponse:
    body = ErrorBody(code=code, message=message[:500], details=details or {})
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def validation_response(errors: list[Any]) -> JSONResponse:
    """422 naming each bad field by its path, e.g. `items.0.seq: Input should be ...`."""
    message, details = describe_validation(errors)
    return error_response(422, "invalid_request", message, details)


_KEEP = "The tills keep their records and push them again once it is fixed."
_FULL = f"central's database has no disk space left: free space on its disk. {_KEEP}"
_READ_ONLY = f"central's database is read-only: make it writable again. {_KEEP}"
_BUSY = (
    "central's database is busy: another process (central's jobs, a command, a backup) held its"
    f" lock too long; it is tried again. {_KEEP}"
)
_FILE = f"central cannot read or write its database file: check its disk and the file. {_KEEP}"
_UNREACHABLE = (
    f"central cannot reach its database: is PostgreSQL running, taking connections? {_KEEP}"
)
_FAILED = f"central's database failed (central's log says how). {_KEEP}"


def storage_problem(error: sa.exc.DBAPIError) -> str | None:
    """The sentence an operator acts on when central's database cannot do its work (answered
    503; the driver's own words go to the log only, not to whoever asked), or None when
    `error` is not about storage but a bug (answered 500)."""
    original = error.orig
    state = str(getattr(original, "sqlstate", None) or "")
    name = str(getattr(original, "sqlite_errorname", None) or "")
    if state == "53100" or name == "SQLITE_FULL":
        return _FULL
    if state == "25006" or name.startswith("SQLITE_READONLY"):
        return _READ_ONLY
    if state == "55P03" or name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return _BUSY
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return _FILE
    if name or not isinstance(error, sa.exc.OperationalError):
        return None  # SQLite says SQLITE_ERROR for a bad statement too: a bug
    if not state or state.startswith(("08", "57P", "53")):
        return _UNREACHABLE
    return _FAILED


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def install(app: FastAPI) -> None:
    @app.exception_handler(sa.exc.DBAPIError)
    async def _storage(request: Request, error: sa.exc.DBAPIError) -> JSONResponse:
        problem = storage_problem(error)
        if problem is None:
            raise error  # a bug: the handler of `Exception` answers, the server logs it
        said = _first_line(error.orig)
        log.error("%s %s: %s (%s)", request.method, request.url.path, problem, said)
        refused = error_response(503, "storage_unavailable", problem)
        refused.headers["Retry-After"] = str(storage_retry_after_s)
        return refused

    @app.exception_handler(Refused)
    async def _refused(_request: Request, error: Refused) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(list(error.errors()))

    @app.exception_handler(ValidationError)
    async def _invalid_body(_request: Request, error: ValidationError) -> JSONResponse:
        return validation_response(list(error.errors()))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, error: Exception) -> JSONResponse:
        # Programmer errors and lost databases: logged by the server, answered as JSON.
        return error_response(500, "internal", f"central failed: {type(error).__name__}")

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))
