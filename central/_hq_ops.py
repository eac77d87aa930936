"""HQ's admin API for rule sets (TOML: validate, diff, publish), offline limits, stores and
device sync health, jobs, and CSV import and export."""

from __future__ import annotations

import difflib
import json
import tempfile
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from central import _csvio, _db, _directory, _jobs
from central import _tables as t
from central._admin import _route
from central._audit import _central, actor, audit
from central._clock import to_ms
from central._directory import Refused
from protocol import RuleSetError, parse_rule_set

# --- rule sets ----------------------------------------------------------------------------

TomlText = Annotated[str, Body(media_type="text/plain", max_length=4 * 1024 * 1024)]


def _parse(text: str) -> Any:
    try:
        return parse_rule_set(text, source="upload")
    except RuleSetError as error:
        raise Refused(422, "invalid_rule_set", str(error)) from None


@_route("POST", "/rule-sets/validate", tags=["rule sets"])
def validate_rule_set(request: Request, text: TomlText) -> dict[str, Any]:
    """Check a TOML rule set without publishing it: 422 with the first error, else its id and
    content hash."""
    rules = _parse(text)
    return {"valid": True, "rule_set_id": rules.rule_set_id, "content_hash": rules.content_hash}


@_route("POST", "/rule-sets/diff", tags=["rule sets"])
def diff_rule_set(request: Request, text: TomlText) -> dict[str, Any]:
    """A unified diff of the uploaded rule set against the one in force now."""
    rules = _parse(text)
    central = _central(request)
    with central.reader.begin() as conn:
        current = _directory.rule_set_in_force(conn, central.clock())
    new = json.dumps(rules.model_dump(mode="json"), indent=1, sort_keys=True).splitlines()
    old = (
        []
        if current is None
        else json.dumps(json.loads(current.document), indent=1, sort_keys=True).splitlines()
    )
    lines = list(
        difflib.unified_diff(
            old,
            new,
            "current" if current is None else current.rule_set_id,
            rules.rule_set_id,
            lineterm="",
        )
    )
    return {
        "current": None if current is None else current.rule_set_id,
        "candidate": rules.rule_set_id,
        "same": current is not None and current.content_hash == rules.content_hash,
        "diff": lines,
    }


@_route("POST", "/rule-sets/publish", tags=["rule sets"])
def publish_toml(
    request: Request,
    text: TomlText,
    effective_from: Annotated[AwareDatetime | None, Query()] = None,
) -> dict[str, Any]:
    """Publish a TOML rule set (immutable); `effective_from` replaces the one in the file.
    Tills receive it in the pull stream as a RuleSetChange."""
    rules = _parse(text)
    if effective_from is not None:
        rules = rules.model_copy(update={"effective_from": effective_from})
    document = rules.model_dump(mode="json")
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        digest = _directory.publish_rule_set(
            conn,
            rules.rule_set_id,
            rules.effective_from.isoformat(),
            to_ms(rules.effective_from),
            document,
            now_ms,
        )
        audit(conn, who, "publish_rule_set", rules.rule_set_id, {"hash": digest}, now_ms)
    return {
        "rule_set_id": rules.rule_set_id,
        "content_hash": digest,
        "effective_from": rules.effective_from.isoformat(),
    }


@_route("GET", "/rule-sets", tags=["rule sets"])
def list_rule_sets(request: Request) -> dict[str, Any]:
    central = _central(request)
    with central.reader.begin() as conn:
        rows = conn.execute(
            sa.select(
                t.rule_sets.c.rule_set_id,
                t.rule_sets.c.content_hash,
                t.rule_sets.c.effective_from,
                t.rule_sets.c.published_ms,
            ).order_by(t.rule_sets.c.effective_from_ms)
        ).all()
        current = _directory.rule_set_in_force(conn, central.clock())
    return {
        "current": None if current is None else current.rule_set_id,
        "rule_sets": [dict(r._mapping) for r in rows],
    }


# --- offline limits, stores, devices ------------------------------------------------------


@_route("GET", "/offline-limits", tags=["devices"])
def get_offline_limits(request: Request) -> dict[str, Any]:
    with _central(request).reader.begin() as conn:
        return _directory.offline_limits(conn).model_dump(mode="json")


@_route("GET", "/stores", tags=["devices"])
def list_stores(request: Request) -> list[dict[str, Any]]:
    with _central(request).reader.begin() as conn:
        rows = conn.execute(sa.select(t.stores).order_by(t.stores.c.store_id)).all()
    return [dict(r._mapping) for r in rows]


@_route("GET", "/devices/health", tags=["devices"])
def device_health(request: Request) -> list[dict[str, Any]]:
    """Each till: last seen, last acknowledged seq, outbox lag (how old the newest record it
    pushed was when it arrived), clock skew (its clock minus central's at the last push)."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    with central.reader.begin() as conn:
        devices = _directory.list_devices(conn)
        for device in devices:
            last = conn.execute(
                sa.select(t.ledger.c.device_time_ms, t.ledger.c.received_ms)
                .where(
                    t.ledger.c.device_id == device["device_id"],
                    t.ledger.c.device_epoch == device["epoch"],
                )
                .order_by(t.ledger.c.device_seq.desc())
                .limit(1)
            ).first()
            seen = device["last_push_ms"]
            device["last_seen_ago_s"] = None if seen is None else (now_ms - int(str(seen))) // 1000
            device["outbox_lag_ms"] = (
                None if last is None else max(last.received_ms - last.device_time_ms, 0)
            )
    return devices


# --- jobs ---------------------------------------------------------------------------------


@_route("GET", "/jobs", tags=["jobs"])
def job_states(request: Request) -> list[dict[str, Any]]:
    """Each job: runs, last start/finish/success, last error, items, lag, lease holder."""
    central = _central(request)
    with central.reader.begin() as conn:
        return _jobs.states(conn, to_ms(central.clock()))


@_route("POST", "/jobs/{name}/run", tags=["jobs"])
def run_job(request: Request, name: str) -> dict[str, Any]:
    """Run one job now (under its lease, like the scheduler)."""
    job = _jobs.BY_NAME.get(name)
    if job is None:
        raise Refused(404, "unknown_job", f"no job {name!r}; jobs: {sorted(_jobs.BY_NAME)}")
    central = _central(request)
    outcome = _jobs.run(central.engine, job, central.clock(), _jobs.holder_name())
    return outcome.__dict__


# --- CSV import and export ----------------------------------------------------------------

spool_memory_bytes = 8 * 1024 * 1024
_importers = {"customers": _csvio.import_customers, "history": _csvio.import_history}
_exporters = {
    "customers": _csvio.export_customers,
    "balances": _csvio.export_balances,
    "ledger": _csvio.export_ledger,
}


@_route("POST", "/import/{kind}", tags=["import and export"])
async def import_csv(request: Request, kind: Literal["customers", "history"]) -> Any:
    """Import a CSV (UTF-8, header row) streamed in the body. `customers`: customer_id,
    first_name, phone, card, birthday, tier, language, consent_marketing, consent_data, points,
    points_expire_at. `history`: customer_id, purchase_id, purchased_at, total_kopecks.
    Answers with the report: rows, imported, unchanged, entries, rejected (line, reason)."""
    central = _central(request)
    who = actor(request)
    spool = tempfile.SpooledTemporaryFile(max_size=spool_memory_bytes)  # noqa: SIM115
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)

    def work() -> _csvio.Report:
        try:
            with central.writing():
                now = central.clock()
                try:
                    report = _importers[kind](central.engine, _csvio.utf8_lines(spool), now)
                except _csvio.BadRow as error:
                    raise Refused(422, "bad_csv", str(error)) from None
                with central.engine.begin() as conn:
                    summary = {k: v for k, v in report.__dict__.items() if k != "rejected"}
                    audit(conn, who, f"import_{kind}", kind, summary, to_ms(now))
            return report
        finally:
            spool.close()

    report = await run_in_threadpool(work)
    return report.__dict__


@_route("GET", "/export/{kind}.csv", tags=["import and export"])
def export_csv(
    request: Request, kind: Literal["customers", "balances", "ledger"]
) -> StreamingResponse:
    """Stream customers, balances or the whole ledger as CSV, a page at a time."""
    engine = _db.reading(_central(request).engine)
    return StreamingResponse(
        _exporters[kind](engine),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'},
    )
