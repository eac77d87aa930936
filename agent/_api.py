"""The local POS API: HTTP/JSON on loopback, a token in a header, OpenAPI at /docs.

Every refusal is JSON `{"code", "message", "details"}` with a status that says whose move it
is: 401 token, 404 unknown cheque, 409 a changed request under a used id, 413 too large,
422 bad input (naming the field), 503 the till cannot write its database.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import sqlite3
import typing
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from agent._errors import TillError
from agent._models import (
    ConfirmRequest,
    ConfirmResponse,
    Identification,
    IdentifierInput,
    QuoteRequest,
    RefundRequest,
    RefundResponse,
    ReserveRequest,
    ReserveResponse,
    SignupRequest,
    VoidRequest,
    VoidResponse,
)
from agent._sales import Till
from protocol import (
    BodyLimit,
    EvaluationError,
    IdentifierRejected,
    Quote,
    describe_validation,
    refuse,
)

log = logging.getLogger(__name__)

PUBLIC_ROUTES = frozenset({"/health", "/docs", "/openapi.json"})
"""The only routes that answer without the POS token; a test walks the route table."""

StatusSource = Callable[[], dict[str, Any]]


def _json_error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = {"code": code, "message": message[:500], "details": details or {}}
    return JSONResponse(body, status_code=status)


def storage_problem(error: sqlite3.Error) -> str:
    text = str(error)
    if "malformed" in text or "not a database" in text:
        return "the till's database file is damaged: sell without loyalty and call support"
    if "full" in text:
        return "the till's disk is full: free space; nothing already recorded is lost"
    if "readonly" in text or "read-only" in text:
        return "the till's database is read-only: check the data folder's permissions"
    if "unable to open" in text:
        return "cannot open the database file: is the data folder there, writable, not read-only?"
    return f"the till cannot write its database ({text})"


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(TillError)
    async def _till(_: Request, error: TillError) -> JSONResponse:
        return _json_error(error.status, error.code, error.message)

    @app.exception_handler(IdentifierRejected)
    async def _identifier(_: Request, error: IdentifierRejected) -> JSONResponse:
        return _json_error(422, error.code, error.reason)

    @app.exception_handler(EvaluationError)
    async def _evaluation(_: Request, error: EvaluationError) -> JSONResponse:
        return _json_error(422, "cannot_evaluate", str(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, details = describe_validation(error.errors())
        return _json_error(422, "invalid_request", message, details)

    @app.exception_handler(ValidationError)
    async def _invalid_model(_: Request, error: ValidationError) -> JSONResponse:
        message, details = describe_validation(error.errors())
        return _json_error(422, "invalid_request", message, details)

    @app.exception_handler(sqlite3.DatabaseError)
    async def _storage(_: Request, error: sqlite3.DatabaseError) -> JSONResponse:
        return _json_error(503, "storage_unavailable", storage_problem(error))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _json_error(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def _failed(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        message = "the agent failed on this request (logged): retry once, then call support"
        return _json_error(500, "internal_error", message)


def _token_valid(expected: bytes, authorization: str | None, x_kopilka_token: str | None) -> bool:
    given = x_kopilka_token
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), expected)


def _token_check(token: str) -> Callable[..., None]:
    """The token as a dependency: it puts the headers in the OpenAPI description."""
    expected = token.encode()

    def check(
        authorization: Annotated[str | None, Header()] = None,
        x_kopilka_token: Annotated[str | None, Header()] = None,
    ) -> None:
        if not _token_valid(expected, authorization, x_kopilka_token):
            raise TillError.unauthorized()

    return check


class TokenGuard:
    """ASGI middleware: every path but `PUBLIC_ROUTES` needs the token, checked before the
    body is read (so a caller without it learns nothing, not even what a valid body is), and
    whatever routes are added later."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_ROUTES:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        authorization = headers.get(b"authorization")
        x_token = headers.get(b"x-kopilka-token")
        if _token_valid(
            self.expected,
            None if authorization is None else authorization.decode("latin-1"),
            None if x_token is None else x_token.decode("latin-1"),
        ):
            await self.app(scope, receive, send)
            return
        error = TillError.unauthorized()
        await refuse(send, error.status, error.code, error.message)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _body_model(endpoint: Callable[..., Any]) -> type[BaseModel] | None:
    """The model of an endpoint whose one parameter is `body: SomeModel`, else None."""
    try:
        hints = typing.get_type_hints(endpoint)
    except NameError:  # annotations this module cannot resolve: serve it the usual way
        return None
    parameters = list(inspect.signature(endpoint).parameters)
    model = hints.get("body")
    if parameters != ["body"] or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return model


def parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """`raw` as `model`, by pydantic's own JSON parser (no dict in between); a refusal names
    each field under `body.`, as FastAPI's would."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        located = [{**item, "loc": ("body", *item["loc"])} for item in error.errors()]
        raise RequestValidationError(located) from None


lane_writer_threads = 4
"""Threads that run the sale routes' writes (an fsync each, perhaps a hold asked of central):
SQLite takes one writer at a time, so a few are plenty for the POS of one till."""
_writers = ThreadPoolExecutor(lane_writer_threads, thread_name_prefix="pos-write")


class LeanRoute(APIRoute):
    """A route whose endpoint takes one `body` model and returns a model: the body is parsed
    straight from its bytes and the answer serialised once, without FastAPI's dependency
    machinery and second validation of the answer (a third of a small request's cost). The
    OpenAPI description is FastAPI's, from the same signature. The token is checked by
    `TokenGuard` before any route runs; routes of another shape are served as usual."""

    def get_route_handler(self) -> Handler:
        model = _body_model(self.endpoint)
        if model is None:
            return super().get_route_handler()
        endpoint = self.endpoint
        inline = inspect.iscoroutinefunction(endpoint)

        async def handle(request: Request) -> Response:
            body = parse_body(model, await request.body())
            if inline:
                answer = await endpoint(body)
            else:
                # the event loop's own executor, not AnyIO's thread pool: the same work in
                # the thread for less of the agent's CPU (docs/benchmarks.md)
                answer = await asyncio.get_running_loop().run_in_executor(_writers, endpoint, body)
            return Response(answer.model_dump_json(), media_type="application/json")

        return handle


class FastLane:
    """ASGI middleware, inside `TokenGuard` and `BodyLimit`, in front of FastAPI (`PosApp`): a
    POST to a `LeanRoute` path goes straight to its handler, past FastAPI's middleware, route
    matching and exception middleware, and a refusal is answered by the app's own exception
    handlers. Any other request goes the usual way."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, lanes: dict[str, Handler]) -> None:
        self.app = app
        self.handlers = fastapi.exception_handlers
        self.handled: tuple[type[Exception], ...] = tuple(
            kind for kind in self.handlers if isinstance(kind, type) and issubclass(kind, Exception)
        )
        self.lanes = lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handle = None
        if scope["type"] == "http" and scope["method"] == "POST":
            handle = self.lanes.get(scope["path"])
        if handle is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handle(request)
        except self.handled as error:
            response = await self._refusal(request, error)
        await response(scope, receive, send)

    async def _refusal(self, request: Request, error: Exception) -> Response:
        handler = next(self.handlers[kind] for kind in type(error).__mro__ if kind in self.handlers)
        answer = handler(request, error)
        return await answer if inspect.isawaitable(answer) else answer


def lean_lanes(router: APIRouter) -> dict[str, Handler]:
    """The POST paths of `router` that `LeanRoute` serves from their body model alone."""
    lanes = {}
    for route in router.routes:
        if not isinstance(route, LeanRoute) or "POST" not in (route.methods or ()):
            continue
        if _body_model(route.endpoint) is not None:
            lanes[route.path] = route.get_route_handler()
    return lanes


def _sale_routes(router: APIRouter, till: Till) -> None:
    # identify and quote only read (WAL readers never wait for a writer) and take well under
    # a millisecond: they run on the event loop, not through the thread pool, whose hand-over
    # would cost more than the work. Writes (fsync) stay in the pool.
    @router.post("/identify", response_model=Identification)
    async def identify(body: IdentifierInput) -> Identification:
        """Who is this? By card, scanned barcode, phone or wallet QR; with their balance."""
        return till.identify(body)

    @router.post("/signup", response_model=Identification)
    def signup(body: SignupRequest) -> Identification:
        """A new member by phone and consent (optionally activating a card); works offline."""
        return till.signup(body)

    @router.post("/quote", response_model=Quote)
    async def quote(body: QuoteRequest) -> Quote:
        """Preview points and discounts; writes nothing."""
        return till.quote(body)

    @router.post("/reserve", response_model=ReserveResponse)
    def reserve(body: ReserveRequest) -> ReserveResponse:
        """Before payment: record the cheque and hold the points to spend. Idempotent."""
        return till.reserve(body)

    @router.post("/confirm", response_model=ConfirmResponse)
    def confirm(body: ConfirmRequest) -> ConfirmResponse:
        """After the fiscal receipt: earn. Never refused for a reserved cheque. Idempotent."""
        return till.confirm(body)

    @router.post("/void", response_model=VoidResponse)
    def void(body: VoidRequest) -> VoidResponse:
        """Payment failed: release the reservation. Idempotent."""
        return till.void(body)

    @router.post("/refund", response_model=RefundResponse)
    def refund(body: RefundRequest) -> RefundResponse:
        """Return lines of a cheque (of this till or another). Idempotent by refund_id."""
        return till.refund(body)


class PosApp(FastAPI):
    """FastAPI with the token check, the body limit and `FastLane` in front of FastAPI's own
    middleware (its server-error page, telemetry and body limit), so that a sale request
    reaches its handler past them (about 4% of the agent's CPU per sale over HTTP on FastAPI
    0.165, docs/benchmarks.md). Any other request goes on into FastAPI as before, guarded the
    same way; an error in a sale route is answered by the app's handlers, 500 `internal_error`
    for one they do not name."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            raise RuntimeError("PosApp is served through create_app")
        await self.front(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself, behind the front."""
        await super().__call__(scope, receive, send)


def create_app(
    till: Till,
    token: str,
    status: StatusSource,
    request_body_bytes_max: int = 256 * 1024,
    extra_routes: Callable[[APIRouter], None] | None = None,
) -> FastAPI:
    """The POS API over `till`. `status` reports online state, outbox depth and devices."""
    app = PosApp(
        title="Kopilka till agent",
        version="1",
        description="Local POS API of the Kopilka till agent. See docs/pos-api.md.",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    _install_errors(app)
    router = APIRouter(
        prefix="/v1", dependencies=[Depends(_token_check(token))], route_class=LeanRoute
    )
    _sale_routes(router, till)

    @router.get("/status")
    def agent_status() -> dict[str, Any]:
        """Online?, last sync, outbox depth, data age, rule set, devices and printer."""
        return status()

    if extra_routes is not None:
        extra_routes(router)
    app.include_router(router)
    lane = FastLane(app.behind, fastapi=app, lanes=lean_lanes(router))
    app.front = TokenGuard(BodyLimit(lane, limit_bytes=request_body_bytes_max), token=token)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness for the service manager and the POS; no token needed."""
        return {"status": "ok"}

    return app
