"""Sales and refunds a test till records the way the agent does: entries, then the cheque
document naming them, evaluated with the example chain's rule set."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from protocol import (
    Basket,
    ChequeDocument,
    ChequeKind,
    ChequeState,
    CustomerAccount,
    CustomerState,
    EntryKind,
    LedgerEntry,
    PushItem,
    Quote,
    RedeemRequest,
    Refund,
    ReturnedLine,
    RuleSetRef,
    Store,
    canonical_json,
    evaluate,
    new_entry_id,
    parse_rule_set,
    refund_quote,
    sha256_hex,
)

from .tills import NOW, Hq, Till

ROOT = Path(__file__).resolve().parents[2]
RULES_TOML = (ROOT / "examples" / "rules" / "base.toml").read_text("utf-8")
RULES = parse_rule_set(RULES_TOML)
BASKET = Basket.model_validate_json((ROOT / "examples" / "basket.json").read_bytes())
STORE = Store(store_id="s1", name="Store s1")


def publish_rules(hq: Hq) -> None:
    response = hq.client.post(
        "/admin/rule-sets/publish",
        content=RULES_TOML.encode(),
        headers={**hq.headers, "content-type": "text/plain"},
    )
    assert response.status_code == 200, response.text


def quote_for(
    customer_id: str | None,
    balance: int = 0,
    redeem: int = 0,
    now: datetime = NOW,
    basket: Basket = BASKET,
) -> Quote:
    state = CustomerState(customer_id=customer_id, points_balance=balance)
    return evaluate(RULES, state, basket, STORE, now, RedeemRequest(points=redeem))


def _entry(till: Till, customer_id: str, cheque_id: str, quote: Quote, **fields: Any) -> PushItem:
    rules = RuleSetRef(
        rule_set_id=quote.rule_set_id,
        rule_set_hash=quote.rule_set_hash,
        evaluator_version=quote.evaluator_version,
    )
    entry = LedgerEntry(
        entry_id=new_entry_id(),
        device_id=till.device_id,
        device_epoch=till.enrolled.device_epoch,
        device_seq=till.next_seq,
        account=CustomerAccount(customer_id=customer_id),
        cheque_id=cheque_id,
        rules=rules,
        device_time=NOW,
        **fields,
    )
    return till.store_record(canonical_json(entry))


def sale_document(till: Till, customer_id: str, **fields: Any) -> ChequeDocument:
    """A confirmed sale's document from `till` to `customer_id`, numbered next unless
    `fields` say otherwise (a customer state, a quote, a time…)."""
    made: dict[str, Any] = {
        "document_id": new_entry_id(),
        "device_id": till.device_id,
        "device_epoch": till.enrolled.device_epoch,
        "device_seq": till.next_seq,
        "cheque_id": f"ch-{till.next_seq}",
        "kind": ChequeKind.sale,
        "state": ChequeState.confirmed,
        "store_id": "s1",
        "account": CustomerAccount(customer_id=customer_id),
        "customer": CustomerState(customer_id=customer_id),
        "basket": BASKET,
        "device_time": NOW,
    }
    return ChequeDocument(**(made | fields))


def sale(
    till: Till,
    customer_id: str,
    cheque_id: str,
    quote: Quote,
    *,
    earn_entry: int | None = None,
    state: ChequeState = ChequeState.confirmed,
    document_first: bool = False,
    basket: Basket = BASKET,
    with_spend: bool = False,
) -> list[PushItem]:
    """The sale's entries (burn, earn; `earn_entry` overrides what the earn entry says; its
    rolling spend too `with_spend`) and its document (first in seq order when
    `document_first`, as a reordered outbox would)."""
    document_seq = till.next_seq
    if document_first:
        till.next_seq += 1
    items = []
    if quote.burn_points and state is ChequeState.confirmed:
        items.append(
            _entry(
                till, customer_id, cheque_id, quote, kind=EntryKind.burn, amount=-quote.burn_points
            )
        )
    earned = quote.earn_points if earn_entry is None else earn_entry
    if earned and state is ChequeState.confirmed:
        items.append(
            _entry(
                till,
                customer_id,
                cheque_id,
                quote,
                kind=EntryKind.earn,
                amount=earned,
                activates_at=quote.earn_activates_at,
                expires_at=quote.earn_expires_at,
            )
        )
    if with_spend and quote.rolling_spend_delta and state is ChequeState.confirmed:
        spend = {"kind": EntryKind.counter, "asset": "rolling_spend"}
        items.append(
            _entry(till, customer_id, cheque_id, quote, **spend, amount=quote.rolling_spend_delta)
        )
    ids = [LedgerEntry.model_validate_json(item.payload).entry_id for item in items]
    document = sale_document(
        till,
        customer_id,
        device_seq=document_seq if document_first else till.next_seq,
        cheque_id=cheque_id,
        state=state,
        redeem=RedeemRequest(points=quote.burn_points),
        quote=quote,
        entry_ids=tuple(ids),
        basket=basket,
    )
    if not document_first:
        items.append(till.store_record(canonical_json(document)))
        return items
    payload = canonical_json(document)
    first = PushItem(seq=document_seq, payload=payload.decode(), payload_sha256=sha256_hex(payload))
    till.outbox.insert(0, first)
    return [first, *items]


def foreign_refund(
    till: Till,
    refund_id: str,
    original_cheque_id: str,
    returned: dict[str, int],
    original_device_id: str | None = None,
    basket: Basket = BASKET,
) -> PushItem:
    """A refund of a cheque sold at another till: the POS's lines (`basket`), no quote."""
    document = ChequeDocument(
        document_id=new_entry_id(),
        device_id=till.device_id,
        device_epoch=till.enrolled.device_epoch,
        device_seq=till.next_seq,
        cheque_id=refund_id,
        kind=ChequeKind.refund,
        state=ChequeState.refunded,
        store_id="s1",
        customer=CustomerState(),
        basket=basket,
        returned=tuple(ReturnedLine(line_id=k, quantity_milli=v) for k, v in returned.items()),
        original_cheque_id=original_cheque_id,
        original_device_id=original_device_id,
        device_time=NOW,
    )
    return till.store_record(canonical_json(document))


def own_refund(
    till: Till,
    customer_id: str,
    refund_id: str,
    original_cheque_id: str,
    quote: Quote,
    returned: dict[str, int],
    earn_reversed: int | None = None,
    earlier: list[Refund] | None = None,
) -> list[PushItem]:
    """A refund of a cheque this till sold: the reversal entries, then the document with the
    original quote and the refund the till computed (`earn_reversed` overrides the entry)."""
    refund = refund_quote(quote, BASKET, returned, earlier or [])
    items = []
    taken = refund.earn_points if earn_reversed is None else earn_reversed
    if taken:
        items.append(
            _entry(
                till, customer_id, refund_id, quote, kind=EntryKind.refund_reversal, amount=-taken
            )
        )
    ids = [LedgerEntry.model_validate_json(item.payload).entry_id for item in items]
    document = ChequeDocument(
        document_id=new_entry_id(),
        device_id=till.device_id,
        device_epoch=till.enrolled.device_epoch,
        device_seq=till.next_seq,
        cheque_id=refund_id,
        kind=ChequeKind.refund,
        state=ChequeState.partially_refunded,
        store_id="s1",
        account=CustomerAccount(customer_id=customer_id),
        customer=CustomerState(customer_id=customer_id),
        basket=BASKET,
        quote=quote,
        refund=refund,
        returned=tuple(ReturnedLine(line_id=k, quantity_milli=v) for k, v in returned.items()),
        original_cheque_id=original_cheque_id,
        original_device_id=till.device_id,
        entry_ids=tuple(ids),
        device_time=NOW,
    )
    items.append(till.store_record(canonical_json(document)))
    return items
