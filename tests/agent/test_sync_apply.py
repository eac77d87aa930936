"""Applying pull pages to the till's cache (`agent._sync.apply_changes`) on a real SQLite file."""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from agent._cache import get_customer
from agent._clock import ManualClock
from agent._errors import HoldRefused
from agent._runtime import build_till
from agent._sales import Till
from agent._sync import Credential, SyncClient, apply_changes, parse_page
from protocol import (
    BalanceChange,
    CardIdentifier,
    Change,
    CustomerAccount,
    CustomerState,
    HoldRequest,
    Lot,
    PullResponse,
)
from protocol._sync import CustomerChange, ErasureChange, pull_page_changes_max

from .conftest import make_settings, seed_customer

EARNED = datetime(2026, 11, 20, tzinfo=UTC)


def _balance(seq: int, customer: str, asset: str, balance: int, lots: int = 0) -> BalanceChange:
    return BalanceChange(
        change_seq=seq,
        account=CustomerAccount(customer_id=customer),
        asset=asset,
        balance=balance,
        lots=tuple(
            Lot(lot_id=f"d{n}", points=lots, earned_at=EARNED, activates_at=EARNED)
            for n in range(1 if lots else 0)
        ),
    )


def _apply(till: Till, changes: list[Change]) -> None:
    with till.store.write() as db:
        apply_changes(db, tuple(changes))


def _state(till: Till, customer: str) -> CustomerState:
    cached = get_customer(till.store.db, customer)
    assert cached is not None
    return cached.state


def test_a_customer_change_keeps_the_cached_balances(till: Till, tmp_path: Path) -> None:
    """Central's customer change carries the profile only: a profile edit at HQ must not
    zero the till's view of the balance until the customer's next balance change."""
    profile = CustomerChange(
        change_seq=5,
        state=CustomerState(customer_id="c-1", consent_data=True, tier="gold"),
        identifiers=(CardIdentifier(number="2770000000017"),),
        first_name="Анна",
    )
    _apply(
        till,
        [
            _balance(3, "c-1", "points", 120, lots=120),
            _balance(4, "c-1", "purchases", 7),
            profile,
        ],
    )
    state = _state(till, "c-1")
    assert (state.points_balance, state.counters, state.tier) == (120, {"purchases": 7}, "gold")
    assert [lot.points for lot in state.lots] == [120]
    _apply(till, [_balance(6, "c-1", "points", 90, lots=90)])
    assert (_state(till, "c-1").points_balance, _state(till, "c-1").tier) == (90, "gold")


def test_a_new_customer_starts_at_zero_until_its_balance_arrives(till: Till) -> None:
    fresh = CustomerChange(change_seq=7, state=CustomerState(customer_id="c-9"))
    _apply(till, [fresh])
    assert _state(till, "c-9").points_balance == 0
    _apply(till, [_balance(8, "c-9", "points", 40, lots=40)])
    assert _state(till, "c-9").points_balance == 40


# --- a page applied at once equals the changes applied one by one -----------------------

CUSTOMERS = ("c-1", "c-2", "c-3")
ASSETS = ("points", "purchases", "rolling_spend", "stamps:coffee")


@st.composite
def changes(draw: st.DrawFn) -> list[Change]:
    found: list[Change] = []
    for seq in range(10, 10 + draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["balance"] * 6 + ["customer", "erasure"]))
        customer = draw(st.sampled_from((*CUSTOMERS, "unknown")))
        if kind == "balance":
            amount = draw(st.integers(-50, 500))
            asset = draw(st.sampled_from(ASSETS))
            lots = max(amount, 0) if asset == "points" and draw(st.booleans()) else 0
            found.append(_balance(seq, customer, asset, amount, lots=lots))
        elif kind == "customer":
            tier = draw(st.sampled_from([None, "gold"]))
            state = CustomerState(customer_id=customer, tier=tier, consent_data=True)
            found.append(CustomerChange(change_seq=seq, state=state))
        else:
            found.append(ErasureChange(change_seq=seq, customer_id=customer))
    return found


def _reference(start: dict[str, dict[str, Any]], sequence: list[Change]) -> dict[str, Any]:
    """The cache as plain dicts, one change at a time, written from the protocol's words:
    a balance change sets one asset of a known customer, a customer change sets the profile
    and keeps the balances, an erasure leaves an erased, empty customer."""
    cache = {key: dict(value) for key, value in start.items()}
    balances = ("points_balance", "lots", "counters", "rolling_spend")
    for change in sequence:
        if change.type == "customer":
            profile = change.state.model_dump(mode="json")
            old = cache.get(profile["customer_id"])
            if old is not None:
                profile.update({key: old[key] for key in balances})
            cache[profile["customer_id"]] = profile
        elif change.type == "erasure":
            if change.customer_id in cache:
                erased = CustomerState(customer_id=change.customer_id, status="erased")
                cache[change.customer_id] = erased.model_dump(mode="json")
        elif change.type == "balance" and change.account.type == "customer":
            state = cache.get(change.account.customer_id)
            if state is None:
                continue
            if change.asset == "points":
                state["points_balance"] = change.balance
                state["lots"] = [lot.model_dump(mode="json") for lot in change.lots]
            elif change.asset == "rolling_spend":
                state["rolling_spend"] = max(change.balance, 0)
            else:
                state["counters"] = {**state["counters"], change.asset: max(change.balance, 0)}
    return cache


def _cache(till: Till) -> dict[str, Any]:
    rows = till.store.db.execute("SELECT customer_id FROM customers").fetchall()
    found = {}
    for (customer,) in rows:
        cached = get_customer(till.store.db, customer)
        assert cached is not None
        found[customer] = cached.state.model_dump(mode="json")
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=changes(), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_pages_applied_at_once_equal_the_changes_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[Change], cuts: list[int]
) -> None:
    clock = ManualClock()
    till = build_till(make_settings(tmp_path_factory.mktemp("agent")), clock=clock)
    seed_customer(till, clock)
    start = _cache(till)
    bounds = [0, *sorted(cut for cut in cuts if cut < len(sequence)), len(sequence)]
    for first, last in itertools.pairwise(bounds):
        _apply(till, sequence[first:last])
    assert _cache(till) == _reference(start, sequence)
    till.store.close()


# --- parsing a page in slices -------------------------------------------------------------


def test_a_page_parsed_in_slices_equals_one_parse() -> None:
    changes = [_balance(seq, f"c-{seq % 7}", "points", seq, lots=seq) for seq in range(1, 251)]
    page = PullResponse(
        changes=tuple(changes), next_cursor=250, more=True, server_time=EARNED
    ).model_dump_json()
    whole = PullResponse.model_validate_json(page)
    assert parse_page(PullResponse, page.encode(), slice_changes=100) == whole
    assert parse_page(PullResponse, page.encode(), slice_changes=7) == whole
    assert parse_page(PullResponse, page.encode()) == whole


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"changes": {}, "next_cursor": 1, "more": false, "server_time": "2026-11-25T00:00:00Z"}',
        b'{"changes": [{"type": "balance"}], "next_cursor": 1, "more": false,'
        b' "server_time": "2026-11-25T00:00:00Z"}',
        b'{"changes": [], "next_cursor": 1, "more": "yes", "server_time": "2026-11-25T00:00:00Z"}',
        b'{"changes": [], "next_cursor": 1, "more": false, "server_time": "2026-11-25T00:00:00Z",'
        b' "extra": 1}',
    ],
)
@pytest.mark.parametrize("slice_changes", [None, 100])
def test_a_bad_page_is_a_validation_error(raw: bytes, slice_changes: int | None) -> None:
    """What the sync job reports as a failed sync (`tick` catches ValidationError)."""
    with pytest.raises(ValidationError):
        parse_page(PullResponse, raw, slice_changes)


def test_a_page_longer_than_central_may_send_is_refused() -> None:
    too_many = [_balance(seq, "c-1", "points", 1) for seq in range(1, pull_page_changes_max + 2)]
    raw = PullResponse.model_construct(
        changes=tuple(too_many), next_cursor=1, more=False, server_time=EARNED
    ).model_dump_json()
    for slice_changes in (None, 100):
        with pytest.raises(ValidationError):
            parse_page(PullResponse, raw.encode(), slice_changes)


# --- the backoff ends when central answers a hold ------------------------------------------


def _client(till: Till, tmp_path: Path, answer: httpx.Response | None) -> SyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if answer is None:
            raise httpx.ConnectError("no route to central", request=request)
        return answer

    credential = Credential("http://central", "d-1", 1, "s" * 40)
    settings = make_settings(tmp_path / "sync-settings")
    return SyncClient(till, credential, settings, transport=httpx.MockTransport(handler))


HOLD = HoldRequest(device_id="d-1", cheque_id="q-1", customer_id="c-1", points=10)
GRANTED = {"hold_id": "h-1", "points": 10, "expires_at": "2026-11-25T12:00:00Z"}
REFUSED = {"code": "not_enough_points", "message": "no"}


@pytest.mark.parametrize(
    ("answer", "ends_backoff"),
    [
        (httpx.Response(200, json=GRANTED), True),
        (httpx.Response(409, json=REFUSED), True),
        (httpx.Response(503, json=REFUSED), False),
        (httpx.Response(401, json=REFUSED), False),
        (None, False),
    ],
)
def test_an_answer_to_a_hold_ends_the_sync_backoff(
    till: Till, tmp_path: Path, answer: httpx.Response | None, ends_backoff: bool
) -> None:
    """A till back from a week offline syncs at its next tick once central answers a sale's
    hold, instead of waiting out up to `sync_backoff_s_max` (300 s by default)."""
    sync = _client(till, tmp_path, answer)
    sync.next_attempt_s = till.clock.boottime_s() + 300
    with contextlib.suppress(HoldRefused):
        sync.hold(HOLD)
    assert (sync.next_attempt_s == 0.0) is ends_backoff
    sync.close()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(429, text="<html>too many requests</html>"),
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.Response(409, json=["not", "central's"]),
    ],
)
def test_a_hold_answer_that_is_not_central_s_is_as_if_none_came(
    till: Till, tmp_path: Path, answer: httpx.Response
) -> None:
    """A proxy's page in place of central's answer: the sale goes on offline (it raised out
    of reserve), and the sync's backoff is not ended by it."""
    sync = _client(till, tmp_path, answer)
    sync.next_attempt_s = till.clock.boottime_s() + 300
    assert sync.hold(HOLD) is None
    assert sync.next_attempt_s > till.clock.boottime_s()
