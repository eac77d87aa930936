"""The fast lane for the sale routes answers exactly as FastAPI's full stack does."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import _api
from agent._clock import ManualClock
from agent._runtime import build_till

from .conftest import CARD, make_settings, seed_customer

TOKEN = "t" * 32
LINE = {"line_id": "1", "sku": "milk", "quantity_milli": 2000, "unit_price": 9950, "total": 19900}
SALE = {"customer": {"type": "card", "value": CARD}, "basket": {"lines": [LINE]}}

# (method, path, body, with the token?) in order: the till's state carries from one to the next
SCRIPT: list[tuple[str, str, Any, bool]] = [
    ("POST", "/v1/identify", {"type": "card", "value": CARD}, True),
    ("POST", "/v1/identify", {"type": "card", "value": "12345"}, True),
    ("POST", "/v1/quote", SALE, True),
    ("POST", "/v1/quote", {**SALE, "basket": {"lines": [{**LINE, "unit_price": 99.5}]}}, True),
    ("POST", "/v1/quote", b'{"basket": ', True),
    ("POST", "/v1/quote", {**SALE, "surprise": 1}, True),
    ("POST", "/v1/reserve", {"cheque_id": "a", **SALE, "redeem": {"points": 100}}, True),
    ("POST", "/v1/reserve", {"cheque_id": "a", **SALE, "redeem": {"points": 100}}, True),
    ("POST", "/v1/reserve", {"cheque_id": "a", **SALE}, True),
    ("POST", "/v1/reserve", {"cheque_id": "b", **SALE}, False),
    ("POST", "/v1/confirm", {"cheque_id": "a", "fiscal_document": "FD-1"}, True),
    ("POST", "/v1/confirm", {"cheque_id": "a", "fiscal_document": "FD-2"}, True),
    ("POST", "/v1/confirm", {"cheque_id": "nobody", "fiscal_document": "FD-3"}, True),
    ("POST", "/v1/void", {"cheque_id": "a"}, True),
    ("POST", "/v1/refund", {"refund_id": "r", "cheque_id": "a", "lines": []}, True),
    ("POST", "/v1/quote", {"basket": {"lines": [LINE] * 10_000}}, True),
    ("GET", "/v1/quote", None, True),
    ("POST", "/v1/nowhere", {}, True),
]


def _answers(tmp_path: Path, name: str) -> list[tuple[int, Any]]:
    clock = ManualClock()
    till = build_till(make_settings(tmp_path / name), clock=clock)
    seed_customer(till, clock)
    app = _api.create_app(till, TOKEN, dict, request_body_bytes_max=64 * 1024)
    return asyncio.run(_run_script(app))


async def _run_script(app: Any) -> list[tuple[int, Any]]:
    answers = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://till") as client:
        for method, path, body, authorised in SCRIPT:
            headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
            if isinstance(body, bytes):
                headers["content-type"] = "application/json"
                answer = await client.request(method, path, content=body, headers=headers)
            else:
                answer = await client.request(method, path, json=body, headers=headers)
            answers.append((answer.status_code, answer.json()))
    return answers


def test_sale_routes_take_the_fast_lane(tmp_path: Path) -> None:
    clock = ManualClock()
    till = build_till(make_settings(tmp_path / "till"), clock=clock)
    app = _api.create_app(till, TOKEN, dict)
    guard = app.front
    assert isinstance(guard, _api.TokenGuard)  # first: nothing answers before the token check
    lane = guard.app.app  # type: ignore[attr-defined]  # behind the body limit
    assert isinstance(lane, _api.FastLane)
    sale = {"/v1/identify", "/v1/signup", "/v1/quote", "/v1/reserve", "/v1/confirm", "/v1/void"}
    assert sale | {"/v1/refund"} == set(lane.lanes)


def test_fast_lane_answers_as_the_full_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _answers(tmp_path, "fast")
    monkeypatch.setattr(_api, "lean_lanes", lambda router: {})
    full = _answers(tmp_path, "full")
    assert [status for status, _ in fast] == [
        *(200, 422),  # identify: known card, malformed card
        *(200, 422, 422, 422),  # quote: fine, a float price, broken JSON, an unknown field
        *(200, 200, 409, 401),  # reserve: new, retried, changed under the same id, no token
        *(200, 409, 404),  # confirm: paid, again with another fiscal document, unknown cheque
        *(409, 422, 413),  # void of a paid cheque, refund of no lines, a body too large
        *(405, 404),  # a wrong verb and no such route: not the lane's, answered as before
    ]
    assert fast == full


def test_a_damaged_database_or_a_bug_is_still_a_json_answer(tmp_path: Path) -> None:
    """A damaged database file is 503 `storage_unavailable` with what to do; any other
    failure is 500 `internal_error`, JSON as every refusal, on the fast lane and off it."""
    clock = ManualClock()
    till = build_till(make_settings(tmp_path / "till"), clock=clock)
    seed_customer(till, clock)
    till.store.close()
    with sqlite3.connect(till.store.path) as raw:  # everything into the file, then damage it
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        roots = dict(raw.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'"))
        page_bytes = raw.execute("PRAGMA page_size").fetchone()[0]
    raw.close()
    with till.store.path.open("r+b") as damaged:
        for table in ("customers", "identifiers"):
            damaged.seek((roots[table] - 1) * page_bytes)
            damaged.write(b"\xff" * page_bytes)
    reopened = build_till(make_settings(tmp_path / "till"), clock=clock)

    def broken() -> Any:
        raise RuntimeError("a bug")

    app = _api.create_app(reopened, TOKEN, broken)

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://till") as client:
            return [
                await client.post("/v1/quote", json=SALE, headers=headers),
                await client.get("/v1/status", headers=headers),
            ]

    quote, status = asyncio.run(ask())
    assert (quote.status_code, quote.json()["code"]) == (503, "storage_unavailable")
    assert "damaged" in quote.json()["message"]
    assert (status.status_code, status.json()["code"]) == (500, "internal_error")
    reopened.store.close()
