"""One valid instance of every wire model, for tests that walk them all."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel

from protocol import (
    Basket,
    BasketLine,
    CardIdentifier,
    ChequeDocument,
    ChequeKind,
    ChequeState,
    CustomerAccount,
    CustomerState,
    EnrollRequest,
    EnrollResponse,
    EntryKind,
    ErrorBody,
    HoldRequest,
    HoldResponse,
    LedgerEntry,
    Lot,
    OfflineLimits,
    PullResponse,
    PushItem,
    PushRequest,
    PushResponse,
    PushResult,
    Quote,
    RedeemRequest,
    Refund,
    RuleSet,
    RuleSetRef,
    SnapshotPage,
    SnapshotRequired,
    Store,
    UUIDv7Generator,
    evaluate,
    parse_rule_set,
    refund_quote,
)
from protocol._ledger import SignupRecord
from protocol._sale import FiscalLine, QuoteLine
from protocol._sync import BalanceChange, CustomerChange, ItemOutcome, OfflineLimitsChange

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ids = UUIDv7Generator(clock_ms=lambda: 1_790_000_000_000)
HASH = "a" * 64

STORE = Store(store_id="msk-001", name="Москва, Тверская 1", timezone="Europe/Moscow")
BASKET = Basket(
    lines=(
        BasketLine(
            line_id="1",
            sku="milk-1l",
            name="Молоко 1 л",
            category="dairy",
            labels=("local",),
            quantity_milli=2000,
            unit_price=8990,
            total=17980,
        ),
        BasketLine(
            line_id="2",
            sku="cheese",
            category="dairy",
            quantity_milli=350,
            unit_price=99900,
            total=34965,
            pos_discount=965,
        ),
    ),
    promo_codes=("AUTUMN",),
)
CUSTOMER = CustomerState(
    customer_id="c-1",
    tier="silver",
    birthday=date(1990, 5, 17),
    consent_marketing=True,
    consent_data=True,
    points_balance=1200,
    lots=(Lot(lot_id="l-1", points=1200, earned_at=NOW, activates_at=NOW, expires_at=NOW),),
    counters={"purchases": 4, "stamps:coffee": 2},
    rolling_spend=1_500_000,
)
QUOTE = Quote(
    rule_set_id="base-2026",
    rule_set_hash=HASH,
    evaluator_version="1",
    lines=(
        QuoteLine(
            line_id="1",
            earn_points=17,
            discount=0,
            burn_points=0,
            fiscal=(
                FiscalLine(
                    line_id="1", quantity_milli=2000, unit_price=8990, total=17980, discount=0
                ),
            ),
        ),
    ),
    total=17980,
    discount=0,
    payable=17980,
    earn_points=17,
    burn_points=0,
)
RULES = parse_rule_set(
    (Path(__file__).resolve().parents[2] / "examples" / "rules" / "base.toml").read_text(),
    source="base.toml",
)
EVALUATED = evaluate(RULES, CUSTOMER, BASKET, STORE, NOW, RedeemRequest(points=100))
REFUND = refund_quote(EVALUATED, BASKET, {"1": 1000})
ENTRY = LedgerEntry(
    entry_id=ids(),
    device_id="till-1",
    device_epoch=1,
    device_seq=1,
    kind=EntryKind.earn,
    account=CustomerAccount(customer_id="c-1"),
    amount=17,
    cheque_id="pos-42",
    rules=RuleSetRef(rule_set_id="base-2026", rule_set_hash=HASH, evaluator_version="1"),
    activates_at=NOW,
    expires_at=NOW,
    device_time=NOW,
)
CHEQUE = ChequeDocument(
    document_id=ids(),
    device_id="till-1",
    device_epoch=1,
    device_seq=2,
    cheque_id="pos-42",
    kind=ChequeKind.sale,
    state=ChequeState.confirmed,
    store_id="msk-001",
    account=CardIdentifier(number="2770000000017"),
    customer=CUSTOMER,
    basket=BASKET,
    redeem=RedeemRequest(points=100),
    quote=QUOTE,
    fiscal_document="FD-000123",
    entry_ids=(ENTRY.entry_id,),
    device_time=NOW,
)

SIGNUP = SignupRecord(
    signup_id=ids(),
    device_id="till-1",
    device_epoch=1,
    device_seq=3,
    store_id="msk-001",
    provisional_customer_id="p-1",
    identifiers=(CardIdentifier(number="2770000000017"),),
    consent_marketing=False,
    consent_data=True,
    first_name="Анна",
    device_time=NOW,
)

SAMPLES: dict[type[BaseModel], BaseModel] = {
    SignupRecord: SIGNUP,
    Store: STORE,
    Basket: BASKET,
    CustomerState: CUSTOMER,
    RedeemRequest: RedeemRequest(points=500),
    Quote: EVALUATED,
    Refund: REFUND,
    RuleSet: RULES,
    LedgerEntry: ENTRY,
    ChequeDocument: CHEQUE,
    ErrorBody: ErrorBody(code="gap", message="expected seq 7", details={"expected_seq": 7}),
    EnrollRequest: EnrollRequest(code="ABCD-EFGH-1234", hostname="till-1"),
    EnrollResponse: EnrollResponse(
        device_id="till-1",
        device_epoch=1,
        secret="s" * 43,
        store=STORE,
        phone_hash_key_hex="0" * 64,
    ),
    PushRequest: PushRequest(
        device_id="till-1",
        device_epoch=1,
        items=(PushItem(seq=1, payload="{}", payload_sha256=HASH),),
        device_time=NOW,
    ),
    PushResponse: PushResponse(
        acked_through=1,
        results=(PushResult(seq=1, outcome=ItemOutcome.applied),),
        server_time=NOW,
        change_seq=7,
        balance_seqs={"customer:c-1 points": 6},
    ),
    PullResponse: PullResponse(
        changes=(
            CustomerChange(
                change_seq=1, state=CUSTOMER, identifiers=(CardIdentifier(number="2770000000017"),)
            ),
            OfflineLimitsChange(change_seq=2, limits=OfflineLimits()),
        ),
        next_cursor=2,
        more=False,
        server_time=NOW,
    ),
    SnapshotRequired: SnapshotRequired(oldest_cursor=10, message="cursor too old"),
    SnapshotPage: SnapshotPage(
        changes=(
            BalanceChange(
                change_seq=7, account=CustomerAccount(customer_id="c-1"), balance=-5, entries=2
            ),
        ),
        as_of=7,
        next_page="customer:c-1",
        server_time=NOW,
    ),
    OfflineLimits: OfflineLimits(),
    HoldRequest: HoldRequest(device_id="till-1", cheque_id="pos-42", customer_id="c-1", points=9),
    HoldResponse: HoldResponse(hold_id="h-1", points=9, expires_at=NOW),
}
