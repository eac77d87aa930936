"""Every refusal is JSON with `code` and `message`: handlers and the request size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from central._directory import Refused
from protocol import BodyLimit, ErrorBody, describe_validation

__all__ = ["BodyLimit", "error_response", "install", "validation_response"]

details_max = 20
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


def install(app: FastAPI) -> None:
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
