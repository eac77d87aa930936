"""The `Quote` built from the evaluator's plain data, without validating it a second time.

Validating the quote's hundred-odd nested models (`Quote.model_validate`) cost a third of an
evaluation, and found nothing: every value comes from validated inputs (basket, rule set,
customer) through integer arithmetic. So the models are built here directly, the way
pydantic's `model_construct` builds them but without its per-field lookups: every field in
declaration order and all of them set (as when the quote is read back from its JSON), enums
as enums, tuples as tuples, ints as ints.

Two things arithmetic could still push outside the wire contract are checked (`fits`): the
cheque's totals (money and points) against their bounds, and the lengths of counter
changes and grant keys. A quote that does not fit is validated the slow way, and raises the
`ValidationError` it always raised. `tests/protocol/test_quote_build.py` holds that a built
quote equals `Quote.model_validate(quote.model_dump())`, types and field sets alike, over
random inputs.
"""

from __future__ import annotations

from datetime import datetime
from operator import le
from typing import Any, TypeVar

from pydantic import BaseModel

from protocol._base import id_chars_max, kopecks_max, points_max
from protocol._sale import (
    CounterChange,
    ExplanationItem,
    FiscalLine,
    GrantAward,
    GrantKind,
    Quote,
    QuoteLine,
    ReceiptMessage,
    counter_changes_max,
)

_Model = TypeVar(
    "_Model",
    CounterChange,
    ExplanationItem,
    FiscalLine,
    GrantAward,
    Quote,
    QuoteLine,
    ReceiptMessage,
)
_new = object.__new__

_slots = BaseModel.__dict__
_set_dict = _slots["__dict__"].__set__
_set_fields_set = _slots["__pydantic_fields_set__"].__set__
_set_extra = _slots["__pydantic_extra__"].__set__
_set_private = _slots["__pydantic_private__"].__set__
_MODELS: tuple[type[BaseModel], ...] = (
    CounterChange,
    ExplanationItem,
    FiscalLine,
    GrantAward,
    Quote,
    QuoteLine,
    ReceiptMessage,
)
_fields = {cls: frozenset(cls.model_fields) for cls in _MODELS}
for _cls in _MODELS:
    if _cls.__pydantic_post_init__ or _cls.__private_attributes__:
        raise RuntimeError(f"{_cls.__name__} needs more than its fields to be built here")


def _built(cls: type[_Model], values: dict[str, Any]) -> _Model:
    """An instance of `cls` holding `values`: every field, in declaration order."""
    model = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, set(_fields[cls]))
    _set_extra(model, None)
    _set_private(model, None)
    return model


_FISCAL_LINE = _fields[FiscalLine]
_QUOTE_LINE = _fields[QuoteLine]
_ITEM = _fields[ExplanationItem]
# The three below are most of a quote's models: `_built` written out, one call fewer each.


def fiscal_line(
    line_id: str, quantity_milli: int, unit_price: int, total: int, discount: int
) -> FiscalLine:
    model = _new(FiscalLine)
    _set_dict(
        model,
        {
            "line_id": line_id,
            "quantity_milli": quantity_milli,
            "unit_price": unit_price,
            "total": total,
            "discount": discount,
        },
    )
    _set_fields_set(model, set(_FISCAL_LINE))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def quote_line(
    line_id: str,
    earn_points: int,
    discount: int,
    burn_points: int,
    fiscal: tuple[FiscalLine, ...],
) -> QuoteLine:
    model = _new(QuoteLine)
    _set_dict(
        model,
        {
            "line_id": line_id,
            "earn_points": earn_points,
            "discount": discount,
            "burn_points": burn_points,
            "fiscal": fiscal,
        },
    )
    _set_fields_set(model, set(_QUOTE_LINE))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def rule_item(
    rule_id: str,
    kind: str,
    points: int,
    kopecks: int,
    lines: tuple[tuple[str, int, int], ...],
) -> ExplanationItem:
    """What one rule gave, line by line."""
    model = _new(ExplanationItem)
    _set_dict(
        model,
        {
            "rule_id": rule_id,
            "kind": kind,
            "points": points,
            "kopecks": kopecks,
            "lines": lines,
            "text": "",
        },
    )
    _set_fields_set(model, set(_ITEM))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def grant_item(rule_id: str, kind: str, points: int) -> ExplanationItem:
    """A cheque-level item: a grant, without lines."""
    return _built(
        ExplanationItem,
        {"rule_id": rule_id, "kind": kind, "points": points, "kopecks": 0, "lines": (), "text": ""},
    )


def counter_change(counter: str, delta: int, rule_id: str, line_id: str | None) -> CounterChange:
    return _built(
        CounterChange,
        {"counter": counter, "delta": delta, "rule_id": rule_id, "line_id": line_id},
    )


def grant_award(data: dict[str, Any]) -> GrantAward:
    """A grant from `_grants.one_time_grants` data (with `expires_at` when it expires)."""
    return _built(
        GrantAward,
        {
            "kind": GrantKind(data["kind"]),
            "grant_key": data["grant_key"],
            "points": data["points"],
            "rule_id": data["rule_id"],
            "customer_id": data["customer_id"],
            "expires_at": data.get("expires_at"),
        },
    )


def receipt_message(data: dict[str, Any]) -> ReceiptMessage:
    return _built(ReceiptMessage, {"rule_id": data["rule_id"], "text": data["text"]})


def fits(
    total: int,
    earn_points: int,
    burn_points: int,
    counter_changes: int,
    grants: list[dict[str, Any]],
    lines: tuple[list[int], list[int], list[int], list[int]],
) -> bool:
    """Does a quote with these totals keep within the wire contract's bounds? `lines` are
    the lines' points earned, points spent, money before and money after loyalty: when each
    is non-negative and no line costs more after than before, every amount in the quote is
    a non-negative part of `total`, `earn_points` or `burn_points`, which bound them all."""
    earned, burned, before, after = lines
    return (
        total <= kopecks_max
        and earn_points <= points_max
        and burn_points <= points_max
        and counter_changes <= counter_changes_max
        and all(len(grant["grant_key"]) <= id_chars_max for grant in grants)
        and min(earned) >= 0
        and min(burned) >= 0
        and min(after) >= 0
        and all(map(le, after, before))
    )


def full_quote(
    *,
    rule_set_id: str,
    rule_set_hash: str,
    evaluator_version: str,
    currency: str,
    lines: tuple[QuoteLine, ...],
    total: int,
    discount: int,
    payable: int,
    earn_points: int,
    burn_points: int,
    tier: str | None,
    redeem_requested: int,
    redeem_limited_by: str | None,
    earn_activates_at: datetime | None,
    earn_expires_at: datetime | None,
    counter_changes: tuple[CounterChange, ...],
    rolling_spend_delta: int,
    grants: tuple[GrantAward, ...],
    messages: tuple[ReceiptMessage, ...],
    explanation: tuple[ExplanationItem, ...],
) -> Quote:
    return _built(
        Quote,
        {
            "rule_set_id": rule_set_id,
            "rule_set_hash": rule_set_hash,
            "evaluator_version": evaluator_version,
            "currency": currency,
            "lines": lines,
            "total": total,
            "discount": discount,
            "payable": payable,
            "earn_points": earn_points,
            "burn_points": burn_points,
            "tier": tier,
            "redeem_requested": redeem_requested,
            "redeem_limited_by": redeem_limited_by,
            "earn_activates_at": earn_activates_at,
            "earn_expires_at": earn_expires_at,
            "counter_changes": counter_changes,
            "rolling_spend_delta": rolling_spend_delta,
            "grants": grants,
            "messages": messages,
            "explanation": explanation,
        },
    )
