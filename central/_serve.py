"""The central commands behind `kopilka-central`: serve, migrate, enroll-code, admin-token,
restored."""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import signal
import socket
import threading

import sqlalchemy as sa
from fastapi import FastAPI

from central import _changes, _csv_cli, _db, _directory, _jobs_cli
from central._app import Settings, create_app
from central._clock import from_ms, system_clock, to_ms
from central._process import die_with_parent
from protocol import Store

DEFAULT_DB = "sqlite:///var/central.db"
DB_ENV = "KOPILKA_CENTRAL_DB"
GATEWAY_ENV = "KOPILKA_CENTRAL_GATEWAY"


def app_from_environment() -> FastAPI:
    """The app of one `serve --workers N` worker process (the database is migrated already;
    the jobs run in the parent process, under their leases)."""
    settings = Settings(
        db_url=os.environ[DB_ENV],
        message_gateway=os.environ.get(GATEWAY_ENV, "log"),
        push_lane=True,
    )
    app = create_app(settings)
    settle_garbage_collector()
    return app


worker_stop_timeout_s = 15.0
listen_backlog = 2048


def serve_processes(count: int, host: str, port: int, log_level: str) -> int:
    """`serve --workers N`: N processes, each listening on the same port with a socket of
    its own (SO_REUSEPORT), so the kernel spreads connections across them. With one shared
    socket (uvicorn's `workers`), whichever process woke first accepted every connection
    waiting: fifty tills connecting at once all landed on one process and the others idled.
    Runs until SIGTERM or SIGINT, or until a worker exits; stops the others then."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker, args=(os.getpid(), host, port, log_level), name=f"central-{n}"
        )
        for n in range(count)
    ]
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        for worker in workers:
            worker.start()
        while not stop.wait(0.2):
            if not all(worker.is_alive() for worker in workers):
                break
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn finishes the requests it holds
        for worker in workers:
            worker.join(worker_stop_timeout_s)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stop.is_set() else 1


def _worker(parent_pid: int, host: str, port: int, log_level: str) -> None:
    die_with_parent(parent_pid)  # a worker dies with `serve`, however `serve` dies
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(listen_backlog)  # connections wait here while the app loads
    import uvicorn

    config = uvicorn.Config(
        "central._serve:app_from_environment",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
    )
    uvicorn.Server(config).run(sockets=[listener])


gc_young_objects_max = 50_000


def settle_garbage_collector() -> None:
    """Once the app is built: move what startup made (modules, models, schema) out of the
    collector's sight, and collect the young generation every `gc_young_objects_max`
    allocations instead of every 700. A push batch allocates tens of thousands of short-lived
    objects; with the defaults the collector ran dozens of times per batch and rescanned
    every long-lived object on each full pass."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(gc_young_objects_max, middle, old)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="run the sync and admin HTTP service")
    serve.add_argument("--db", default=DEFAULT_DB, help="database URL (SQLite file by default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--log-level", default="warning")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes on one port (on SQLite they write one at a time)",
    )
    serve.add_argument(
        "--no-jobs",
        action="store_true",
        help="do not run the processing jobs (they run in a child process at lower priority)",
    )
    serve.add_argument(
        "--message-gateway", default="log", help="confirmation codes: `log` or `file:PATH`"
    )
    _jobs_cli.add_command(commands)
    _csv_cli.add_commands(commands)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--db", default=DEFAULT_DB)
    code = commands.add_parser("enroll-code", help="issue a one-time enrollment code for a till")
    code.add_argument("--db", default=DEFAULT_DB)
    code.add_argument("--store", required=True, help="store id; created when new")
    code.add_argument("--name", default=None, help="store name (for a new store)")
    code.add_argument("--timezone", default="Europe/Moscow", help="store time zone (new store)")
    restored = commands.add_parser(
        "restored",
        help="after restoring a backup: every till reads a snapshot at its next pull",
    )
    restored.add_argument("--db", default=DEFAULT_DB)
    token = commands.add_parser("admin-token", help="create (or revoke) admin tokens for HQ")
    token.add_argument("--db", default=DEFAULT_DB)
    token.add_argument("--label", default="admin", help="who holds it; shown in the audit log")
    token.add_argument(
        "--revoke", action="store_true", help="revoke every live token of --label instead"
    )


def prepare(db_url: str) -> sa.Engine:
    """An engine on a migrated database."""
    engine = _db.make_engine(db_url)
    _db.migrate(engine)
    return engine


def run(args: argparse.Namespace) -> int:
    engine = prepare(args.db)
    try:
        return _run(engine, args)
    finally:
        engine.dispose()  # a command run in a longer process leaves no connection open


def _run(engine: sa.Engine, args: argparse.Namespace) -> int:
    if args.command == "migrate":
        print(f"database {_db.normalize_url(args.db).split('@')[-1]} is at the newest schema")
        return 0
    now_ms = to_ms(system_clock())
    if args.command == "enroll-code":
        with engine.begin() as conn:
            if _directory.store(conn, args.store) is None:
                shop = Store(
                    store_id=args.store, name=args.name or args.store, timezone=args.timezone
                )
                _directory.put_store(conn, shop, now_ms)
            code, expires_ms = _directory.issue_enrollment_code(conn, args.store, now_ms)
        print(f"enrollment code for store {args.store}: {code} (valid until {from_ms(expires_ms)})")
        return 0
    if args.command == "restored":
        with engine.begin() as conn:
            floor = _changes.renumber_after_restore(conn, now_ms)
        print(f"changes are numbered from {floor + 1} on: every till reads a snapshot next")
        return 0
    if args.command == "admin-token" and args.revoke:
        with engine.begin() as conn:
            revoked = _directory.revoke_admin_tokens(conn, args.label, now_ms)
        print(f"revoked {revoked} admin token(s) labelled {args.label!r}")
        return 0 if revoked else 1
    if args.command == "admin-token":
        with engine.begin() as conn:
            token = _directory.issue_admin_token(conn, args.label, now_ms)
        print(token)
        return 0
    if args.command == "serve":
        import uvicorn

        jobs = None if args.no_jobs else _jobs_cli.JobsProcess(args.db).start()
        try:
            if args.workers > 1:
                os.environ[DB_ENV] = args.db
                os.environ[GATEWAY_ENV] = args.message_gateway
                return serve_processes(args.workers, args.host, args.port, args.log_level)
            settings = Settings(db_url=args.db, message_gateway=args.message_gateway)
            app = create_app(settings, engine=engine)
            settle_garbage_collector()
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
            return 0
        finally:
            if jobs is not None:
                jobs.stop()
    if args.command == "jobs":
        return _jobs_cli.run(engine, args)
    if args.command in {"import", "export"}:
        return _csv_cli.run(engine, args)
    return 2
