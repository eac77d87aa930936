"""The sale path on a real SQLite file: reserve, confirm, void, expiry, refund, idempotency."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent._clock import ManualClock
from agent._errors import Conflict, NotFound, TillError
from agent._models import (
    ConfirmRequest,
    IdentifierInput,
    QuoteRequest,
    RefundLine,
    RefundRequest,
    RefundResponse,
    ReserveRequest,
    SignupRequest,
    VoidRequest,
)
from agent._rulebook import install_rule_set
from agent._runtime import build_till
from agent._sales import Till
from protocol import (
    Basket,
    BasketLine,
    ChequeState,
    IdentifierRejected,
    Lot,
    RedeemRequest,
    effective_rule_set,
    parse_rule_set,
)

from .conftest import CARD, PHONE, RULES, make_settings, seed_customer

CARD_INPUT = IdentifierInput(type="card", value=CARD)
CARD_2 = "2770000000024"
"""A pre-printed card no customer has yet."""


def basket(*prices: int, category: str = "grocery") -> Basket:
    return Basket(
        lines=tuple(
            BasketLine(
                line_id=str(i),
                sku=f"sku-{i}",
                category=category,
                quantity_milli=1000,
                unit_price=price,
                total=price,
            )
            for i, price in enumerate(prices, start=1)
        )
    )


def outbox(till: Till) -> list[dict]:
    rows = till.store.db.query("SELECT * FROM outbox ORDER BY epoch, seq")
    return [dict(row, payload=json.loads(row["payload"])) for row in rows]


def sell(till: Till, cheque_id: str, redeem: int = 0, **kwargs: object) -> None:
    request = ReserveRequest(
        cheque_id=cheque_id,
        customer=kwargs.get("customer", CARD_INPUT),  # type: ignore[arg-type]
        basket=kwargs.get("basket", basket(10000, 5000)),  # type: ignore[arg-type]
        redeem=RedeemRequest(points=redeem),
    )
    till.reserve(request)
    till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document=f"FD-{cheque_id}"))


def test_identify_by_card_and_phone_shows_the_balance(till: Till) -> None:
    by_card = till.identify(CARD_INPUT)
    assert by_card.known
    assert by_card.customer_id == "c-1"
    assert by_card.balance is not None
    assert by_card.balance.available == 1000
    by_phone = till.identify(IdentifierInput(type="phone", value="8 (916) 123-45-67"))
    assert by_phone.customer_id == "c-1"
    assert by_phone.phone_only
    stored = till.store.db.execute("SELECT value FROM identifiers").fetchall()
    assert all(PHONE[1:] not in row[0] for row in stored)


def test_quote_writes_nothing(till: Till) -> None:
    quote = till.quote(QuoteRequest(customer=CARD_INPUT, basket=basket(10000)))
    assert quote.earn_points == 100  # 1 point per rouble, silver tier
    assert outbox(till) == []


def test_reserve_and_confirm_write_entries_and_document_in_seq_order(till: Till) -> None:
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="pos-1",
            customer=CARD_INPUT,
            basket=basket(100000, 50000),
            redeem=RedeemRequest(points=300),
        )
    )
    assert reserved.state is ChequeState.reserved
    assert reserved.points_held == reserved.quote.burn_points == 300
    assert sum(line.discount for line in reserved.quote.lines) == 30000
    assert till.identify(CARD_INPUT).balance.held == 300  # type: ignore[union-attr]
    confirmed = till.confirm(ConfirmRequest(cheque_id="pos-1", fiscal_document="FD-1"))
    assert confirmed.state is ChequeState.confirmed
    records = outbox(till)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    kinds = [(r["kind"], r["asset"], r["amount"]) for r in records if r["record"] == "entry"]
    assert ("burn", "points", -300) in kinds
    assert ("earn", "points", reserved.quote.earn_points) in kinds
    document = records[-1]["payload"]
    assert document["record"] == "cheque"
    assert document["state"] == "confirmed"
    assert document["fiscal_document"] == "FD-1"
    assert len(document["entry_ids"]) == len(kinds)
    view = confirmed.balance
    assert view is not None
    assert view.held == 0
    granted = sum(grant.points for grant in reserved.quote.grants)
    assert granted > 0, "the welcome bonus of the first sale"
    assert confirmed.granted_points == granted
    assert view.balance == 1000 - 300 + confirmed.earned_points + confirmed.granted_points
    assert view.pending == reserved.quote.earn_points  # the 14-day return window
    assert view.available == 1000 - 300 + granted  # a grant is active at once


def test_a_one_time_grant_is_given_once_even_before_central_knows(till: Till) -> None:
    """The welcome bonus of the first sale is not offered again by the next one, by card or
    by phone, while the till has not synced: central would only reverse the second."""
    first = till.reserve(ReserveRequest(cheque_id="g-1", customer=CARD_INPUT, basket=basket(9000)))
    assert [grant.grant_key for grant in first.quote.grants] == ["welcome:c-1"]
    again = till.quote(QuoteRequest(customer=CARD_INPUT, basket=basket(9000)))
    assert [grant.grant_key for grant in again.grants] == ["welcome:c-1"], "not given until paid"
    till.confirm(ConfirmRequest(cheque_id="g-1", fiscal_document="FD-g-1"))
    for customer in (CARD_INPUT, IdentifierInput(type="phone", value=PHONE)):
        later = till.quote(QuoteRequest(customer=customer, basket=basket(9000)))
        assert later.grants == ()
        assert later.earn_points == first.quote.earn_points
    grants = [r for r in outbox(till) if r["kind"] == "welcome"]
    assert len(grants) == 1


def test_same_request_same_answer_changed_payload_refused(till: Till) -> None:
    request = ReserveRequest(cheque_id="pos-2", customer=CARD_INPUT, basket=basket(5000))
    first = till.reserve(request)
    assert till.reserve(request) == first
    changed = request.model_copy(update={"basket": basket(5001)})
    with pytest.raises(Conflict) as caught:
        till.reserve(changed)
    assert caught.value.code == "cheque_id_reused"
    confirm = ConfirmRequest(cheque_id="pos-2", fiscal_document="FD-2")
    assert till.confirm(confirm) == till.confirm(confirm)
    with pytest.raises(Conflict):
        till.confirm(ConfirmRequest(cheque_id="pos-2", fiscal_document="FD-other"))
    assert len([r for r in outbox(till) if r["record"] == "cheque"]) == 1


def test_void_releases_the_hold_and_blocks_confirm(till: Till) -> None:
    till.reserve(
        ReserveRequest(
            cheque_id="pos-3",
            customer=CARD_INPUT,
            basket=basket(10000),
            redeem=RedeemRequest(points=200),
        )
    )
    assert till.void(VoidRequest(cheque_id="pos-3")).state is ChequeState.voided
    assert till.identify(CARD_INPUT).balance.held == 0  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        till.confirm(ConfirmRequest(cheque_id="pos-3", fiscal_document="FD-3"))
    assert till.void(VoidRequest(cheque_id="pos-3")).state is ChequeState.voided
    with pytest.raises(NotFound):
        till.void(VoidRequest(cheque_id="never"))


def test_expired_reservation_is_released_and_still_confirmable(
    till: Till, clock: ManualClock
) -> None:
    till.reserve(
        ReserveRequest(
            cheque_id="pos-4",
            customer=CARD_INPUT,
            basket=basket(100000),
            redeem=RedeemRequest(points=100),
        )
    )
    clock.advance(601)
    assert till.expire_reservations() == ["pos-4"]
    assert till.identify(CARD_INPUT).balance.held == 0  # type: ignore[union-attr]
    late = till.confirm(ConfirmRequest(cheque_id="pos-4", fiscal_document="FD-4"))
    assert late.late
    assert late.spent_points == 100
    states = [r["payload"]["state"] for r in outbox(till) if r["record"] == "cheque"]
    assert states == ["expired", "confirmed"]


def test_unknown_card_accrues_to_the_card(till: Till, clock: ManualClock) -> None:
    """It earns, and shows what it holds; nothing of it is available to spend until a
    customer has the card (the till spends only a customer's points)."""
    unknown = IdentifierInput(type="card", value="2770000000024")
    assert not till.identify(unknown).known
    sell(till, "pos-5", customer=unknown)
    earn = [r for r in outbox(till) if r["kind"] == "earn"]
    assert earn[0]["payload"]["account"] == {"type": "card", "number": "2770000000024"}
    clock.advance(30 * 86400)  # past the return window: the points are active
    balance = till.identify(unknown).balance
    assert balance is not None
    assert (balance.balance, balance.pending, balance.available) == (earn[0]["amount"], 0, 0)


def test_bank_card_is_refused_with_a_reason(till: Till) -> None:
    with pytest.raises(IdentifierRejected) as caught:
        till.identify(IdentifierInput(type="card", value="4111111111111111"))
    assert caught.value.code == "card_unknown_range"


def test_anonymous_cheque_is_reported_without_entries(till: Till) -> None:
    sell(till, "pos-6", customer=None)
    records = outbox(till)
    assert [r["record"] for r in records] == ["cheque"]
    assert records[0]["payload"]["account"] is None


def test_two_reservations_cannot_spend_more_than_the_balance(till: Till) -> None:
    first = till.reserve(
        ReserveRequest(
            cheque_id="a",
            customer=CARD_INPUT,
            basket=basket(100000),
            redeem=RedeemRequest(points=400),
        )
    )
    second = till.reserve(
        ReserveRequest(
            cheque_id="b",
            customer=CARD_INPUT,
            basket=basket(100000),
            redeem=RedeemRequest(points=400),
        )
    )
    # the customer's offline allowance on this till is 500 points
    assert first.points_held + second.points_held == 500
    assert second.redeem_note
    assert "allowance" in second.redeem_note


def test_stale_data_stops_offline_spending_but_not_earning(till: Till, clock: ManualClock) -> None:
    clock.advance(7200)
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="pos-7",
            customer=CARD_INPUT,
            basket=basket(10000),
            redeem=RedeemRequest(points=100),
        )
    )
    assert reserved.points_held == 0
    assert "2 h old" in (reserved.redeem_note or "")
    assert reserved.quote.earn_points == 100


def test_wall_clock_jump_does_not_make_stale_data_fresh(till: Till, clock: ManualClock) -> None:
    clock.advance(7200)
    clock.set_wall(clock.wall().replace(year=2026, month=11, day=25, hour=9))
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="pos-8",
            customer=CARD_INPUT,
            basket=basket(10000),
            redeem=RedeemRequest(points=100),
        )
    )
    assert reserved.points_held == 0


def test_phone_only_identification_has_a_smaller_offline_cap(till: Till) -> None:
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="pos-9",
            customer=IdentifierInput(type="phone", value=PHONE),
            basket=basket(100000),
            redeem=RedeemRequest(points=400),
        )
    )
    assert reserved.points_held == 100


def test_partial_refunds_add_up_to_the_full_refund(till: Till) -> None:
    sell(till, "pos-10", redeem=300, basket=basket(10000, 5000, 3333))
    first = till.refund(
        RefundRequest(
            refund_id="r-1",
            cheque_id="pos-10",
            lines=(RefundLine(line_id="1", quantity_milli=1000),),
        )
    )
    assert first.cheque_state is ChequeState.partially_refunded
    rest = till.refund(
        RefundRequest(
            refund_id="r-2",
            cheque_id="pos-10",
            lines=(
                RefundLine(line_id="2", quantity_milli=1000),
                RefundLine(line_id="3", quantity_milli=1000),
            ),
        )
    )
    assert rest.cheque_state is ChequeState.refunded
    sale = next(r for r in outbox(till) if r["record"] == "cheque")["payload"]["quote"]
    assert first.earn_reversed_points + rest.earn_reversed_points == sale["earn_points"]
    assert first.burn_returned_points + rest.burn_returned_points == sale["burn_points"]
    assert first.money_refund + rest.money_refund == sale["payable"]
    with pytest.raises(TillError) as caught:
        till.refund(
            RefundRequest(
                refund_id="r-3",
                cheque_id="pos-10",
                lines=(RefundLine(line_id="1", quantity_milli=1),),
            )
        )
    assert caught.value.code == "refund_invalid"
    view = till.identify(CARD_INPUT).balance
    assert view is not None
    welcome = sum(grant["points"] for grant in sale["grants"])
    assert view.balance == 1000 + welcome  # the welcome bonus stays; the sale is undone
    assert view.pending == 0  # granted points are active at once
    earned = next(r["record_id"] for r in outbox(till) if r["kind"] == "earn")
    reversals = [
        r["payload"] for r in outbox(till) if r["kind"] == "refund_reversal" and r["amount"] < 0
    ]
    assert [r["reverses"] for r in reversals] == [earned, earned]  # the sale's own lot
    spend = [r for r in outbox(till) if r["payload"].get("asset") == "rolling_spend"]
    (sold,) = [r["record_id"] for r in spend if r["amount"] > 0]
    taken_back = [r["payload"]["reverses"] for r in spend if r["amount"] < 0]
    assert taken_back == [sold, sold]  # central's rolling window dates them by the sale
    document = next(r for r in outbox(till) if r["record"] == "cheque")["payload"]
    expire = datetime.fromisoformat(document["quoted_at"]) + timedelta(days=365)  # base.toml
    given_back = [
        r["payload"] for r in outbox(till) if r["kind"] == "refund_reversal" and r["amount"] > 0
    ]
    assert sum(g["amount"] for g in given_back) == sale["burn_points"]
    assert [datetime.fromisoformat(g["expires_at"]) for g in given_back] == [expire, expire]
    granted = [r["payload"] for r in outbox(till) if r["kind"] == "welcome"]
    assert [(g["activates_at"], g["expires_at"]) for g in granted] == [
        (None, sale["grants"][0]["expires_at"])
    ]
    assert granted[0]["expires_at"] is not None


def test_refund_of_a_cheque_sold_elsewhere_is_recorded_for_central(till: Till) -> None:
    response = till.refund(
        RefundRequest(
            refund_id="r-9",
            cheque_id="other-till-77",
            lines=(RefundLine(line_id="1", quantity_milli=1000),),
            original_basket=basket(2500, 100),
            customer=CARD_INPUT,
        )
    )
    assert response.reconciled_at_central
    assert response.money_refund == 2500
    document = outbox(till)[-1]["payload"]
    assert document["kind"] == "refund"
    assert document["original_cheque_id"] == "other-till-77"
    assert document["returned"] == [{"line_id": "1", "quantity_milli": 1000}]


def test_the_database_is_the_record(till: Till, tmp_path) -> None:
    sell(till, "pos-11")
    with sqlite3.connect(till.store.path) as raw:
        state = raw.execute("SELECT state FROM cheques WHERE cheque_id = 'pos-11'").fetchone()
    assert state == ("confirmed",)


def test_signup_offline_makes_a_provisional_member_who_earns(till: Till) -> None:
    request = SignupRequest(
        signup_id="s-1",
        phone="+7 903 555 12 34",
        consent_data=True,
        card="2770000000024",
        first_name="Борис",
    )
    joined = till.signup(request)
    assert joined.known
    assert joined.customer_id is not None
    assert joined.customer_id.startswith("p-")
    assert till.signup(request) == joined  # retried by the POS: same answer
    with pytest.raises(Conflict) as caught:
        till.signup(request.model_copy(update={"signup_id": "s-2"}))
    assert caught.value.code == "card_taken"
    card = IdentifierInput(type="card", value="2770000000024")
    assert till.identify(card).customer_id == joined.customer_id
    sell(till, "pos-20", customer=card)
    records = outbox(till)
    assert records[0]["record"] == "signup"
    assert "79035551234" not in json.dumps(records[0]["payload"])
    earn = next(r for r in records if r["kind"] == "earn")
    assert earn["payload"]["account"] == {"type": "card", "number": "2770000000024"}


def test_a_member_who_just_joined_earns_but_gets_no_one_time_grant_yet(till: Till) -> None:
    """Their sales go to the card until central confirms them, and a grant needs central's
    customer: none is offered, so the receipt promises only what the till writes."""
    joining = SignupRequest(signup_id="s-1", phone="+79035551234", consent_data=True, card=CARD_2)
    till.signup(joining)
    card = IdentifierInput(type="card", value=CARD_2)
    for cheque_id in ("pos-21", "pos-22"):
        reserved = till.reserve(
            ReserveRequest(cheque_id=cheque_id, customer=card, basket=basket(10000))
        )
        assert reserved.quote.grants == ()
        done = till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document="FD"))
        assert done.granted_points == 0
        assert done.earned_points > 0
        assert done.balance is not None
    assert done.balance.balance == 2 * done.earned_points
    assert {r["kind"] for r in outbox(till) if r["record"] == "entry"} <= {"earn", "counter"}


def test_signup_needs_consent(till: Till) -> None:
    with pytest.raises(TillError) as caught:
        till.signup(SignupRequest(signup_id="s-3", phone="+79035551234", consent_data=False))
    assert caught.value.code == "consent_required"


def test_a_reservation_made_before_the_upgrade_is_confirmed_after_it(
    till: Till, clock: ManualClock
) -> None:
    """Schema 6 keeps reservation documents in a table of their own; a cheque reserved by
    the agent before it (the document in `cheques.reservation`) is still confirmed."""
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="pos-old",
            customer=CARD_INPUT,
            basket=basket(10000),
            redeem=RedeemRequest(points=100),
        )
    )
    path = till.store.path
    till.store.close()
    with sqlite3.connect(path, isolation_level=None) as raw:  # back to schema 5's layout
        raw.executescript(
            "BEGIN; DROP TABLE signup_identifiers;"  # schema 14 undone (13 changes rows)
            "ALTER TABLE refunds DROP COLUMN original_hash;"  # schema 12 undone
            "ALTER TABLE customers DROP COLUMN counter_seqs;"  # schema 11 undone
            "ALTER TABLE customers DROP COLUMN points_seq;"  # schema 10 undone
            "DROP INDEX outbox_counters;"  # schema 9 undone
            "DROP INDEX refunds_by_cheque; ALTER TABLE refunds DROP COLUMN returned;"
            "DROP TRIGGER offline_burn_made; DROP TRIGGER offline_burn_settled;"
            "DROP TABLE offline_burns;"  # schemas 8 and 7 undone
            "ALTER TABLE cheques ADD COLUMN reservation TEXT NOT NULL DEFAULT '';"
            "UPDATE cheques SET reservation = (SELECT document FROM reservations"
            " WHERE reservations.cheque_id = cheques.cheque_id);"
            "DROP TABLE reservations; PRAGMA user_version=5; COMMIT;"
        )
    raw.close()
    upgraded = build_till(make_settings(path.parent), clock=clock)
    done = upgraded.confirm(ConfirmRequest(cheque_id="pos-old", fiscal_document="FD-old"))
    assert reserved.points_held > 0
    assert done.spent_points == reserved.points_held
    assert done.balance is not None
    assert done.balance.held == 0


def _with_counters(till: Till, counters: dict[str, int]) -> None:
    """Central's last word on c-1 now includes these counters (as a pull leaves them)."""
    with till.store.write() as db:
        db.execute(
            "UPDATE customers SET state = json_set(state, '$.counters', json(?)) "
            "WHERE customer_id = 'c-1'",
            [json.dumps(counters)],
        )


def _rewarded(till: Till, cheque_id: str, rule_id: str, line: BasketLine) -> int:
    """The discount `rule_id` gave in a sale of `line` (reserved and confirmed)."""
    reserved = till.reserve(
        ReserveRequest(cheque_id=cheque_id, customer=CARD_INPUT, basket=Basket(lines=(line,)))
    )
    till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document=f"FD-{cheque_id}"))
    return sum(item.kopecks for item in reserved.quote.explanation if item.rule_id == rule_id)


def test_a_stamp_card_reward_is_given_once_between_pulls(till: Till) -> None:
    """Six stamps pay for one free cup: the next cups, sold before any pull, are paid (the
    till used to evaluate them with central's count of six every time)."""
    _with_counters(till, {"stamps:coffee": 6})
    cup = BasketLine(
        line_id="1", sku="coffee-cup", category="coffee", quantity_milli=1000,
        unit_price=20000, total=20000,
    )  # fmt: skip
    free = [_rewarded(till, f"cup-{n}", "coffee-card", cup) for n in range(1, 4)]
    assert free == [20000, 0, 0]


def test_every_tenth_purchase_counts_this_tills_own_sales(till: Till) -> None:
    _with_counters(till, {"purchases": 9})
    milk = BasketLine(
        line_id="1", sku="milk", category="dairy", quantity_milli=1000,
        unit_price=20000, total=20000,
    )  # fmt: skip
    rewarded = [_rewarded(till, f"milk-{n}", "every-10th", milk) for n in range(1, 4)]
    assert rewarded == [1000, 0, 0]  # 5% of the 10th purchase only


def test_expired_points_are_not_available_while_central_still_keeps_their_lot(
    till: Till, clock: ManualClock
) -> None:
    """Central keeps an expired lot for the offline window: the cashier is not shown its
    points as spendable, and what identify calls available is what reserve spends."""
    now = clock.wall()
    day = timedelta(days=1)
    lots = (
        Lot(lot_id="old", points=800, earned_at=now - 400 * day, activates_at=now - 386 * day,
            expires_at=now - day),
        Lot(lot_id="new", points=200, earned_at=now - 30 * day, activates_at=now - 16 * day,
            expires_at=now + 300 * day),
    )  # fmt: skip
    with till.store.write() as db:
        db.execute(
            "UPDATE customers SET state = json_set(state, '$.lots', json(?)) "
            "WHERE customer_id = 'c-1'",
            [json.dumps([lot.model_dump(mode="json") for lot in lots])],
        )
    shown = till.identify(CARD_INPUT).balance
    assert shown is not None
    assert (shown.balance, shown.available) == (1000, 200)
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="x-1",
            customer=CARD_INPUT,
            basket=basket(200000),
            redeem=RedeemRequest(points=shown.available),
        )
    )
    assert reserved.quote.burn_points == 200


def test_the_redeem_note_names_the_limit_that_applied(till: Till) -> None:
    """800 points asked on a 100-rouble cheque: the offline allowance would allow 500, but
    points pay at most half of a cheque, so 50 are spent and the note says that."""
    reserved = till.reserve(
        ReserveRequest(
            cheque_id="n-1", customer=CARD_INPUT, basket=basket(10000),
            redeem=RedeemRequest(points=800),
        )
    )  # fmt: skip
    assert reserved.quote.burn_points == 50
    assert reserved.redeem_note == reserved.quote.redeem_limited_by is not None
    assert "500" not in reserved.redeem_note
    till.void(VoidRequest(cheque_id="n-1"))  # its 50 points held no longer count
    allowance = till.reserve(
        ReserveRequest(
            cheque_id="n-2", customer=CARD_INPUT, basket=basket(200000),
            redeem=RedeemRequest(points=800),
        )
    )  # fmt: skip
    assert allowance.quote.burn_points == 500
    assert allowance.redeem_note is not None
    assert "allowance" in allowance.redeem_note


def test_refunds_of_a_cheque_sold_elsewhere_add_up_to_what_was_paid(till: Till) -> None:
    """The till has only its own refunds of that cheque: a line twice, or refunds beyond what
    the line sold, are refused; the money is what was paid after the POS's own discount."""
    sold = Basket(
        lines=(
            BasketLine(
                line_id="1", sku="tea", quantity_milli=3000, unit_price=1001, total=3003,
                pos_discount=1000,
            ),
        )
    )  # fmt: skip

    def refund(refund_id: str, *quantities: int) -> int:
        lines = tuple(RefundLine(line_id="1", quantity_milli=q) for q in quantities)
        request = RefundRequest(
            refund_id=refund_id, cheque_id="other-till-5", lines=lines, original_basket=sold
        )
        return till.refund(request).money_refund

    with pytest.raises(TillError) as twice:
        refund("rf-0", 1000, 1000)
    assert twice.value.code == "refund_invalid"
    paid = [refund("rf-1", 1000), refund("rf-2", 1000), refund("rf-3", 1000)]
    assert sum(paid) == 3003 - 1000
    assert max(paid) - min(paid) <= 1
    with pytest.raises(TillError) as part:
        refund("rf-4", 1)  # a thousandth of a packet of tea: refused as at the till that sold it
    assert "sold by the unit: return whole units" in part.value.message
    with pytest.raises(TillError) as beyond:
        refund("rf-4", 1000)
    assert beyond.value.code == "refund_invalid"
    assert "only 0 of 3000 are left to return" in beyond.value.message
    assert refund("rf-1", 1000) == paid[0]  # a retry: the same answer, nothing counted again


def test_a_refund_names_its_cheque_by_its_lines_when_cheque_ids_repeat(till: Till) -> None:
    """POS cheque numbers repeat across tills: a refund of another till's cheque 77 at a till
    that sold its own 77 goes to central, not to this till's customer; the two tills' 77s
    are returned up to what each sold."""
    sell(till, "77", basket=basket(10000, 5000))
    entries_before = len(outbox(till))
    theirs = basket(2500, 100)

    def refund(refund_id: str, original: Basket | None, line: str = "1") -> RefundResponse:
        lines = (RefundLine(line_id=line, quantity_milli=1000),)
        return till.refund(
            RefundRequest(
                refund_id=refund_id, cheque_id="77", lines=lines, original_basket=original
            )
        )

    elsewhere = refund("rf-1", theirs)
    assert elsewhere.reconciled_at_central
    assert elsewhere.money_refund == 2500
    assert [row["kind"] for row in outbox(till)[entries_before:]] == ["refund"]
    assert outbox(till)[-1]["payload"]["basket"]["lines"][0]["total"] == 2500
    with pytest.raises(TillError) as again:  # that cheque's line 1 is all returned
        refund("rf-2", theirs)
    assert again.value.code == "refund_invalid"
    here = refund("rf-3", basket(10000, 5000))  # its own lines: this till's cheque
    assert not here.reconciled_at_central
    assert here.earn_reversed_points > 0
    assert here.cheque_state == ChequeState.partially_refunded
    assert not refund("rf-4", None, line="2").reconciled_at_central


def test_the_fiscal_receipt_of_an_unknown_card_shows_what_it_will_hold(till: Till) -> None:
    """The loyalty lines reserve gives for the fiscal receipt (printed before confirm) show
    the balance after the sale, as the slip after confirm does: for a card the till does not
    know too (it showed 0 there), and with a welcome bonus that is not pending."""
    unknown = IdentifierInput(type="card", value="2770000000024")
    for who in (CARD_INPUT, unknown, unknown):
        cheque_id = f"r-{len(outbox(till))}"
        reserved = till.reserve(
            ReserveRequest(cheque_id=cheque_id, customer=who, basket=basket(10000))
        )
        confirmed = till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document="FD"))
        for width in ("columns_32", "columns_42", "columns_48"):
            assert getattr(reserved.receipt, width) == getattr(confirmed.receipt, width)
    assert confirmed.balance is not None
    assert confirmed.balance.balance == 2 * confirmed.earned_points > 0


def test_the_sale_document_says_when_its_quote_was_evaluated(
    till: Till, clock: ManualClock
) -> None:
    """At reserve; the document itself is made at confirm. Central recomputes as of the
    quote: a rule of certain hours may have begun in between."""
    reserved_at = clock.wall()
    till.reserve(ReserveRequest(cheque_id="q-1", customer=CARD_INPUT, basket=basket(10000)))
    clock.advance(20)
    till.confirm(ConfirmRequest(cheque_id="q-1", fiscal_document="FD-q-1"))
    document = next(r["payload"] for r in outbox(till) if r["record"] == "cheque")
    assert datetime.fromisoformat(document["quoted_at"]) == reserved_at
    assert datetime.fromisoformat(document["device_time"]) == reserved_at + timedelta(seconds=20)


def test_receipt_messages_longer_than_a_slip_prints_do_not_stop_the_sale(
    tmp_path, clock: ManualClock
) -> None:
    """A message may hold 500 characters and a sale prints several: the slip cuts what it
    cannot hold (reserve refused every identified sale with a 422 about a field the POS never
    sent). A tier name longer than the slip's line is cut too."""
    text = (RULES.read_text(encoding="utf-8") + LONG_MESSAGE).replace(
        'rule_set_id = "base-2026"', 'rule_set_id = "long-messages"'
    )
    (tmp_path / "rules.toml").write_text(text, encoding="utf-8")
    settings = make_settings(tmp_path / "agent").model_copy(
        update={"rules_file": tmp_path / "rules.toml"}
    )
    long_till = build_till(settings, clock=clock)
    seed_customer(long_till, clock)
    reserved = long_till.reserve(
        ReserveRequest(cheque_id="m-1", customer=CARD_INPUT, basket=basket(10000))
    )
    assert len(reserved.quote.messages) == 2
    assert sum(len(message.text) for message in reserved.quote.messages) > 500
    assert reserved.receipt is not None
    printed = " ".join(reserved.receipt.columns_48)
    assert "Начислено баллов" in printed
    assert "..." in printed  # the ellipsis, in the printer's code page
    confirmed = long_till.confirm(ConfirmRequest(cheque_id="m-1", fiscal_document="FD-m"))
    assert confirmed.receipt == reserved.receipt


LONG_MESSAGE = f"""
[[messages]]
id = "long"
marketing = false
text = {{ ru = "{"Очень длинное сообщение. " * 19}конец" }}
"""


def test_two_rule_sets_from_the_same_moment_resolve_as_central_resolves_them(
    till: Till, clock: ManualClock
) -> None:
    """Ties on `effective_from` go to the greater `rule_set_id`, whatever order they came
    in: the till took whichever SQLite found first, central and the evaluator the greater."""
    text = RULES.read_text(encoding="utf-8")
    later, earlier = (
        parse_rule_set(text.replace('rule_set_id = "base-2026"', f'rule_set_id = "{name}"'))
        for name in ("spring-b", "spring-a")
    )
    assert later.effective_from == earlier.effective_from <= clock.wall()
    with till.store.write() as db:
        for rule_set in (later, earlier):  # b arrives first, a second
            install_rule_set(db, rule_set)
    with till.store.read() as db:
        chosen = till.rulebook.active(db, clock.wall())
    assert chosen.rule_set_id == "spring-b"
    evaluators = effective_rule_set([earlier, later], clock.wall())
    assert evaluators is not None
    assert (evaluators.rule_set_id, evaluators.content_hash) == ("spring-b", chosen.content_hash)


def test_a_welcome_bonus_can_be_spent_at_once_before_the_next_pull(
    tmp_path: Path, clock: ManualClock
) -> None:
    """docs/rules.md: granted points are active at once. The till's own grant is not in
    central's lots until the next pull; it is spendable here all the same."""
    till = build_till(make_settings(tmp_path / "agent"), clock=clock)
    seed_customer(till, clock, points=300)
    first = till.reserve(ReserveRequest(cheque_id="w-1", customer=CARD_INPUT, basket=basket(10000)))
    assert [grant.points for grant in first.quote.grants] == [100]
    done = till.confirm(ConfirmRequest(cheque_id="w-1", fiscal_document="FD-w-1"))
    assert done.balance is not None
    assert done.balance.available == 300 + 100
    spend = RedeemRequest(points=400)
    second = till.reserve(
        ReserveRequest(cheque_id="w-2", customer=CARD_INPUT, basket=basket(100000), redeem=spend)
    )
    assert second.quote.burn_points == 400


def test_spent_points_a_late_refund_gives_back_already_expired_are_not_available(
    till: Till, clock: ManualClock
) -> None:
    """Points spent on a sale and given back by its refund expire as they would have (a year
    after the sale): given back after that, the till's own entry holds them, but none of
    them is available, as at central."""
    spend = RedeemRequest(points=300)
    sold = till.reserve(
        ReserveRequest(cheque_id="old", customer=CARD_INPUT, basket=basket(100000), redeem=spend)
    )
    assert sold.quote.burn_points == 300
    till.confirm(ConfirmRequest(cheque_id="old", fiscal_document="FD-old"))
    clock.advance(400 * 86400)  # past the 365 days the points would have lived
    lines = (RefundLine(line_id="1", quantity_milli=1000),)
    done = till.refund(RefundRequest(refund_id="r-old", cheque_id="old", lines=lines))
    assert done.burn_returned_points == 300
    after = till.identify(CARD_INPUT).balance
    assert after is not None
    # the customer's 1,000 of central's, which never expire, and nothing of this till's own:
    # the sale's welcome bonus, its earn and the points given back all ended on day 365
    assert (after.balance, after.available) == (1000 + 100, 1000)
