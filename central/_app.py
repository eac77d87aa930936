"""The central HTTP service: sync endpoints for tills, a small admin API for HQ."""

from __future__ import annotations

import contextlib
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from central import _admin, _changes, _db, _directory, _errors, _holds, _push
from central import _hq as _hq
from central import _hq_conflicts as _hq_conflicts
from central import _hq_ops as _hq_ops
from central._clock import Clock, system_clock, to_ms
from central._credentials import bearer
from central._directory import Device, Refused
from central._gateway import MessageGateway, gateway_from
from central._group import GroupCommit, push_group_batches_max
from protocol import EnrollRequest, EnrollResponse, PullResponse, PushRequest, SnapshotPage
from protocol._base import seq_max
from protocol._sync import pull_page_changes_max

request_bytes_max_default = 16 * 1024 * 1024
PUBLIC_ROUTES = frozenset({"/health", "/sync/enroll", "/openapi.json", "/docs"})
"""Routes that answer without a credential; a test walks the route table against this."""


@dataclass(frozen=True)
class Settings:
    db_url: str = "sqlite:///var/central.db"
    request_bytes_max: int = request_bytes_max_default
    message_gateway: str = "log"
    """Where confirmation codes go: `log`, or `file:PATH` (one JSON line per message)."""
    push_lane: bool = False
    """One push at a time in this process (`Central.lane`): for the processes of
    `serve --workers N`."""


class Central:
    """What the routes share: the engine, the clock, and on SQLite one writer at a time
    (`_db.Writer`, across the processes of `serve --workers N` too)."""

    def __init__(self, engine: sa.Engine, clock: Clock, push_lane: bool = False) -> None:
        self.engine = engine
        self.clock = clock
        self.reader = _db.reading(engine)
        self._writer = _db.writer(engine)
        self.lane: AbstractContextManager[Any] = (
            threading.Lock() if push_lane else contextlib.nullcontext()
        )
        """With `push_lane`, one thread at a time in this process reads a batch or writes a
        group. Python runs one thread at a time: a batch read in another thread while this
        process holds the writer lock (or account row locks) makes the writer wait for its
        turn after every call into the database, and every other writer waits with it;
        several processes (`serve --workers N`) read in one while another writes. A single
        process is better off without it: the next batch is read while the commit waits for
        the disk."""
        self.log_rows = _changes.ParsedRows()
        """Change-log rows parsed for pulls, kept for the next page and the next till."""
        self.pushes = GroupCommit(self._write_group, push_group_batches_max)
        """Batches waiting for the writer, written together (`central._group`). On
        PostgreSQL a group first locks the rows of all its batches in one global order
        (`_push._lock_group`)."""

    def _write_group(self, batches: list[_push.Batch]) -> None:
        with self.lane:
            _push.push_group(self.engine, batches, self.clock, self.writing)

    def writing(self) -> AbstractContextManager[None]:
        """The writer lock on SQLite (`self._writer`, kept here so that the jobs of this
        process find the same one), nothing on PostgreSQL."""
        return _db.writing(self.engine)


def _central(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


def device(request: Request) -> Device:
    """The device whose secret is in `Authorization: Bearer`; 401 otherwise."""
    token = bearer(request.headers.get("authorization"))
    central = _central(request)
    if token is not None:
        with central.reader.connect() as conn:
            found = _directory.device_by_secret(conn, token)
        if found is not None:
            return found
    raise Refused(401, "unauthorized", "a valid device credential is required")


DeviceAuth = Annotated[Device, Depends(device)]


def create_app(
    settings: Settings | None = None,
    *,
    engine: sa.Engine | None = None,
    clock: Clock = system_clock,
    gateway: MessageGateway | None = None,
) -> FastAPI:
    """The ASGI app. Give `engine` to share one (tests), else one is made from settings.
    The schema must be migrated already (`kopilka-central migrate`; `serve` does it)."""
    settings = settings or Settings()
    engine = engine or _db.make_engine(settings.db_url)
    app = FastAPI(
        title="Kopilka central",
        version="1",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.central = Central(engine, clock, settings.push_lane)
    app.state.gateway = gateway or gateway_from(settings.message_gateway)
    _errors.install(app)
    app.add_middleware(_errors.BodyLimit, limit_bytes=settings.request_bytes_max)
    _sync_routes(app)
    _holds.install(app)
    _admin.install(app)  # with HQ's routes: _hq, _hq_ops, _hq_conflicts register on import
    return app


def _sync_routes(app: FastAPI) -> None:
    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        central = _central(request)
        with central.reader.connect() as conn:
            conn.execute(sa.text("select 1"))
        return {"status": "ok", "server_time": central.clock().isoformat()}

    @app.post("/sync/enroll", response_model=EnrollResponse)
    def enroll(request: Request, body: EnrollRequest) -> EnrollResponse:
        central = _central(request)
        with central.writing(), central.engine.begin() as conn:
            return _directory.enroll(conn, body, to_ms(central.clock()))

    @app.post(
        "/sync/push",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PushRequest.model_json_schema()}},
            }
        },
    )
    async def push(request: Request, me: DeviceAuth) -> Response:
        raw = await request.body()
        central = _central(request)

        def work() -> Response:
            with central.lane:
                body = PushRequest.model_validate_json(raw)
                if body.device_id != me.device_id:
                    raise Refused(403, "wrong_device", "device_id is not the authenticated device")
                items = _push.read_items(me.device_id, body)  # before the writer lock
            done = central.pushes.push(_push.Batch(me.device_id, body, items))
            return Response(done.json(), media_type="application/json")

        return await run_in_threadpool(work)

    @app.get("/sync/pull", response_model=PullResponse)
    def pull(
        request: Request,
        me: DeviceAuth,
        since: Annotated[int, Query(ge=0, le=seq_max)],
        limit: Annotated[int, Query(ge=1, le=pull_page_changes_max)] = 500,
    ) -> Any:
        central = _central(request)
        with central.reader.begin() as conn:
            page = _changes.pull(conn, since, limit, central.clock(), central.log_rows)
        if isinstance(page, bytes):
            return Response(page, media_type="application/json")
        return JSONResponse(page.model_dump(mode="json"), status_code=410)

    @app.get("/sync/snapshot", response_model=SnapshotPage)
    def snapshot(
        request: Request,
        me: DeviceAuth,
        page: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=pull_page_changes_max)] = 500,
    ) -> SnapshotPage:
        central = _central(request)
        with central.reader.begin() as conn:
            limits = _directory.offline_limits(conn)
            try:
                return _changes.snapshot(conn, page, limit, central.clock(), limits)
            except ValueError as error:
                raise Refused(422, "bad_page", f"page token is not valid: {error}") from None
