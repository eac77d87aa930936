"""The sale path: quote, reserve, confirm, void, refund, expiry — each one transaction.

Every operation is idempotent by the POS's id: the same request returns the stored answer; a
different request under the same id is refused. Nothing here waits on the network inside a
transaction: an online hold is asked for before the write, with a short timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlite_utils

from agent import _outbox
from agent._allowance import Allowance, data_age_s, offline_allowance
from agent._balances import balance_view, counters_here, offline_spent, seen_here
from agent._cache import get_customer, limits_of, parsed, remember, utc_iso
from agent._clock import Clock
from agent._entries import (
    append_entries,
    grants_given,
    refund_movements,
    sale_entry_of,
    sale_movements,
)
from agent._errors import Conflict, HoldRefused, NotFound, TillError
from agent._identify import IdentityRules, Resolved, kept_identifier, resolve
from agent._models import (
    BalanceView,
    ConfirmRequest,
    ConfirmResponse,
    HoldMode,
    Identification,
    IdentifierInput,
    QuoteRequest,
    RefundRequest,
    RefundResponse,
    Reservation,
    ReserveRequest,
    ReserveResponse,
    SignupRequest,
    VoidRequest,
    VoidResponse,
)
from agent._rulebook import RuleBook
from agent._slip import loyalty_slip, projected, receipt_lines
from agent._store import TillStore
from drivers import LoyaltySlip
from protocol import (
    AccountRef,
    Basket,
    BasketLine,
    ChequeDocument,
    ChequeKind,
    ChequeState,
    CustomerState,
    EntryKind,
    HoldRequest,
    HoldResponse,
    IdentifierRejected,
    LedgerEntry,
    Lot,
    OfflineLimits,
    Quote,
    RedeemRequest,
    Refund,
    RefundError,
    ReturnedLine,
    RuleSet,
    Store,
    UUIDv7Generator,
    account_key,
    check_returned,
    content_hash,
    evaluate,
    refund_quote,
    returned_points_expire_at,
)

_CENTRAL_HOLDS_ALL = HoldResponse(
    hold_id="pricing-only", points=10**12, expires_at=datetime.max.replace(tzinfo=UTC)
)
"""An answer central never gives: the most it could hold, for pricing what a sale would
spend before central is asked (`Till._spends_at_most`)."""

CentralHold = Callable[[HoldRequest], HoldResponse | None]
"""Places a hold at central; None when central did not answer in time; raises
`HoldRefused` when central answered no."""
CentralAnswer = HoldResponse | HoldRefused | None


@dataclass(frozen=True)
class Priced:
    quote: Quote
    mode: HoldMode
    note: str | None
    view: BalanceView | None
    rule_set: RuleSet
    customer: CustomerState
    limits: OfflineLimits
    at: datetime
    """When the quote was evaluated."""


@dataclass(frozen=True)
class TillSettings:
    store: Store
    identity: IdentityRules


class Till:
    """One till's sale service over its SQLite file. Thread-safe: any caller, any thread."""

    def __init__(
        self,
        store: TillStore,
        settings: TillSettings,
        clock: Clock,
        rulebook: RuleBook,
        central_hold: CentralHold | None = None,
        make_id: UUIDv7Generator | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rulebook = rulebook
        self.central_hold = central_hold
        self.make_id = make_id or UUIDv7Generator(
            clock_ms=lambda: int(clock.wall().timestamp() * 1000)
        )
        self.seat = _outbox.ensure_seat(store)
        self.on_confirmed: Callable[[LoyaltySlip], None] | None = None
        self.on_central_release: Callable[[], None] | None = None
        """Called once a cheque central holds points for was voided or expired: central
        releases its hold when the cheque's document arrives, so the sync should push now."""
        """Called once per confirmed sale, after its commit, with its slip (the printer)."""

    # --- identify and quote ---------------------------------------------------------------

    def identify(self, given: IdentifierInput) -> Identification:
        with self.store.read() as db:
            resolved = resolve(db, self.settings.identity, given)
            view = self._view(db, resolved)
        customer = resolved.customer
        return Identification(
            known=customer is not None,
            customer_id=customer.state.customer_id if customer else None,
            first_name=customer.first_name if customer else "",
            tier=customer.state.tier if customer else None,
            phone_only=resolved.phone_only,
            balance=view,
        )

    def signup(self, request: SignupRequest) -> Identification:
        """A new member, provisional until central confirms; earns from this sale on."""
        from agent._signup import signup

        return signup(self, request)

    def quote(self, request: QuoteRequest) -> Quote:
        with self.store.read() as db:
            resolved = self._resolve(db, request.customer)
            spends = request.redeem.mode == "all" or request.redeem.points > 0
            hold = self._hold_expected(db, resolved) if spends else None
            return self._price(db, resolved, request.basket, request.redeem, hold).quote

    def _hold_expected(self, db: sqlite_utils.Database, resolved: Resolved | None) -> CentralAnswer:
        """What reserve can expect of central for the quote to preview it: online (the last
        sync went through) and for a customer known by more than a phone (whose spending
        online needs a code), central holds what the balance and the rules allow; otherwise
        the offline allowance applies, as it will at reserve."""
        if self.central_hold is None or resolved is None or resolved.phone_only:
            return None
        online = db.execute("SELECT value FROM meta WHERE key = 'online'").fetchone()
        return _CENTRAL_HOLDS_ALL if online is not None and online[0] == "1" else None

    # --- reserve ----------------------------------------------------------------------------

    def reserve(self, request: ReserveRequest) -> ReserveResponse:
        kept, hashes = _kept(self.settings.identity, request)
        hold: CentralAnswer = None
        resolved: Resolved | None = None
        asks_central = self._may_ask_central(request)
        if asks_central:  # before the write, never inside it
            with self.store.read() as db:
                earlier = _stored_reservation(db, request.cheque_id, hashes)
                if earlier is not None:
                    return earlier
                resolved = self._resolve(db, request.customer)
                spends = 0 if resolved is None else self._spends_at_most(db, resolved, request)
            hold = None if resolved is None else self._central_hold(request, resolved, spends)
        with self.store.write() as db:
            earlier = _stored_reservation(db, request.cheque_id, hashes)
            if earlier is not None:
                return earlier
            asked, resolved = resolved, self._resolve(db, request.customer)
            # read again in the write: a pull applied while central was asked moved the pull
            # cursor past the till's own acknowledged entries, and the customer read before
            # it does not have them yet; central's hold is kept if it is this customer's
            if asks_central and _customer_id(asked) != _customer_id(resolved):
                hold = None
            priced = self._price(db, resolved, request.basket, request.redeem, hold)
            quote = priced.quote
            slip = loyalty_slip(
                quote,
                None if resolved is None else resolved.account,
                priced.customer,
                projected(priced.view, quote),
                priced.rule_set,
                request.cheque_id,
            )
            response = ReserveResponse(
                cheque_id=request.cheque_id,
                state=ChequeState.reserved,
                quote=quote,
                hold_mode=priced.mode,
                points_held=quote.burn_points,
                redeem_note=priced.note,
                receipt=receipt_lines(slip),
            )
            ttl_s = priced.limits.reservation_ttl_s
            self._insert_cheque(db, kept, hashes[0], resolved, response, (priced.at, ttl_s))
        return response

    def _may_ask_central(self, request: ReserveRequest) -> bool:
        """Whether a hold could be asked of central: a till with central that spends points
        for an identified customer."""
        wants = request.redeem.mode == "all" or request.redeem.points > 0
        return wants and self.central_hold is not None and request.customer is not None

    def _spends_at_most(
        self, db: sqlite_utils.Database, resolved: Resolved, request: ReserveRequest
    ) -> int:
        """What this sale would spend were central to hold all it is asked: the points asked
        (or all), within the balance and the rules' limits for this cheque (its share,
        floors, the least left to pay). Central is asked to hold that, not the points asked:
        a "spend all" on a small cheque held the whole balance at every other till."""
        priced = self._price(db, resolved, request.basket, request.redeem, _CENTRAL_HOLDS_ALL)
        return priced.quote.burn_points

    def _central_hold(
        self, request: ReserveRequest, resolved: Resolved, points: int
    ) -> CentralAnswer:
        central = self.central_hold
        if central is None or not self._may_ask_central(request) or resolved.customer is None:
            return None
        customer_id = resolved.customer.state.customer_id
        if customer_id is None or points == 0:
            return None
        asked = HoldRequest(
            device_id=self.seat.device_id,
            cheque_id=request.cheque_id,
            customer_id=customer_id,
            points=points,
            phone_only=resolved.phone_only,
            confirmation_code=request.confirmation_code,
        )
        try:
            return central(asked)
        except HoldRefused as refused:
            return refused

    def _price(
        self,
        db: sqlite_utils.Database,
        resolved: Resolved | None,
        basket: Basket,
        redeem: RedeemRequest,
        hold: CentralAnswer,
    ) -> Priced:
        now = self.clock.wall()
        meta = _sale_meta(db)
        state, view = CustomerState(), None
        if resolved is not None:  # an unknown card's view: what this till's sales earned it
            cursor = int(meta.get("pull_cursor", 0))
            key = account_key(resolved.account)
            view, credit = seen_here(db, key, resolved.customer, now, cursor)
            if resolved.customer is not None:
                moved = counters_here(db, key, cursor, resolved.customer.counter_seqs)
                state = _as_seen_here(db, resolved.customer.state, view, moved, credit)
        limits = limits_of(meta.get("offline_limits"))
        allowed = self._allowed(db, resolved, redeem, view, hold, (limits, self._age(meta)))
        capped = RedeemRequest(mode="points", points=allowed.points)
        rule_set = self.rulebook.active(db, now)
        quote = evaluate(rule_set, state, basket, self.settings.store, now, capped)
        mode = HoldMode.none
        if quote.burn_points > 0:
            mode = HoldMode.central if isinstance(hold, HoldResponse) else HoldMode.offline
        # the tighter of the two limits says why: the allowance, or the rules after it
        tighter = quote.burn_points < allowed.points and quote.redeem_limited_by is not None
        note = quote.redeem_limited_by if tighter else allowed.reason or quote.redeem_limited_by
        return Priced(quote, mode, note, view, rule_set, state, limits, now)

    def _allowed(
        self,
        db: sqlite_utils.Database,
        resolved: Resolved | None,
        redeem: RedeemRequest,
        view: BalanceView | None,
        hold: CentralAnswer,
        offline: tuple[OfflineLimits, float | None],
    ) -> Allowance:
        """`offline`: HQ's limits and the data's age, for spending without central."""
        asked = redeem.points if redeem.mode == "points" else 10**12
        if asked == 0:
            return Allowance(0, None)
        if resolved is None or resolved.customer is None or view is None:
            return Allowance(0, "points can be spent only by a customer the till knows")
        available = max(view.available, 0)
        if isinstance(hold, HoldRefused):
            return Allowance(0, f"central: {hold.message}")
        if hold is not None:
            points = min(asked, hold.points, available)
            return Allowance(points, None if points == asked else "limited by the balance")
        limits, age_s = offline
        allowance = offline_allowance(
            limits,
            min(asked, available),
            offline_spent(db, account_key(resolved.account)),
            age_s,
            resolved.phone_only,
        )
        if allowance.reason is None and allowance.points < asked and redeem.mode == "points":
            return replace(allowance, reason=f"only {available} points are available")
        return allowance

    def _insert_cheque(
        self,
        db: sqlite_utils.Database,
        request: ReserveRequest,
        request_hash: str,
        resolved: Resolved | None,
        response: ReserveResponse,
        quoted: tuple[datetime, int],
    ) -> None:
        """`request` as the till keeps it (`_kept`); `quoted`: when the quote was evaluated,
        and the reservation's time to live (s)."""
        quoted_at, ttl_s = quoted
        now = self.clock.wall()
        reservation = Reservation(
            request=request,
            response=response,
            account=None if resolved is None else resolved.account,
            customer=None
            if resolved is None or resolved.customer is None
            else resolved.customer.state,
            quoted_at=quoted_at,
        )
        stored = reservation.model_dump_json()
        remember(stored, reservation)
        db.execute(
            "INSERT INTO cheques(cheque_id, state, request_hash, account_key, hold_mode,"
            " points_held, reserved_at, expires_at) VALUES (?,?,?,?,?,?,?,?)",
            [
                request.cheque_id,
                str(ChequeState.reserved),
                request_hash,
                None if resolved is None else account_key(resolved.account),
                str(response.hold_mode),
                response.points_held,
                utc_iso(now),
                utc_iso(now + timedelta(seconds=ttl_s)),
            ],
        )
        db.execute(
            "INSERT INTO reservations(cheque_id, document) VALUES (?, ?)",
            [request.cheque_id, stored],
        )

    # --- confirm, void, expire --------------------------------------------------------------

    def confirm(self, request: ConfirmRequest) -> ConfirmResponse:
        with self.store.write() as db:
            row = _cheque(db, request.cheque_id)
            state = ChequeState(row["state"])
            if state in {
                ChequeState.confirmed,
                ChequeState.partially_refunded,
                ChequeState.refunded,
            }:
                return _stored_confirmation(row, request)
            if state is ChequeState.voided:
                raise Conflict("cheque_voided", "this cheque was voided; ring it up again")
            response, slip = self._apply_confirm(
                db, row, request, late=state is ChequeState.expired
            )
        if self.on_confirmed is not None and slip is not None:
            self.on_confirmed(slip)
        return response

    def _apply_confirm(
        self, db: sqlite_utils.Database, row: dict[str, Any], request: ConfirmRequest, late: bool
    ) -> tuple[ConfirmResponse, LoyaltySlip | None]:
        reservation = parsed(Reservation, row["reservation"])
        quote = reservation.response.quote
        account = reservation.account
        offline = row["hold_mode"] == HoldMode.offline
        entries = append_entries(
            self, db, account, sale_movements(quote), quote, request.cheque_id, offline
        )
        document = self._sale_document(
            db, reservation, ChequeState.confirmed, request.fiscal_document, entries
        )
        _outbox.append(db, document, offline)
        db.execute(
            "UPDATE cheques SET state = ?, points_held = 0, fiscal_document = ? "
            "WHERE cheque_id = ?",
            [str(ChequeState.confirmed), request.fiscal_document, request.cheque_id],
        )
        view = self._account_view(db, account)
        slip = loyalty_slip(
            quote,
            account,
            _customer_of(reservation),
            view,
            self.rulebook.named(db, quote.rule_set_hash, self.clock.wall()),
            request.cheque_id,
        )
        response = ConfirmResponse(
            cheque_id=request.cheque_id,
            state=ChequeState.confirmed,
            earned_points=0 if account is None else quote.earn_points,
            spent_points=0 if account is None else quote.burn_points,
            granted_points=0 if account is None else sum(grant.points for grant in quote.grants),
            balance=view,
            late=late,
            receipt=receipt_lines(slip),
        )
        db.execute(
            "UPDATE cheques SET finished_response = ? WHERE cheque_id = ?",
            [response.model_dump_json(), request.cheque_id],
        )
        return response, slip

    def void(self, request: VoidRequest) -> VoidResponse:
        with self.store.write() as db:
            row = _cheque(db, request.cheque_id)
            state = ChequeState(row["state"])
            if state in {ChequeState.voided, ChequeState.expired}:
                return VoidResponse(cheque_id=request.cheque_id, state=state)
            if state is not ChequeState.reserved:
                raise Conflict("cheque_confirmed", "this cheque was paid; refund it instead")
            self._finish_unpaid(db, row, ChequeState.voided)
        self._central_released([row])
        return VoidResponse(cheque_id=request.cheque_id, state=ChequeState.voided)

    def expire_reservations(self) -> list[str]:
        """Release reservations neither confirmed nor voided in time; report them."""
        now = utc_iso(self.clock.wall())
        with self.store.write() as db:
            rows = list(
                db.query(
                    f"{_CHEQUE_ROWS} WHERE state = 'reserved' AND expires_at < ? "
                    "ORDER BY expires_at LIMIT 500",
                    [now],
                )
            )
            for row in rows:
                self._finish_unpaid(db, row, ChequeState.expired)
        self._central_released(rows)
        return [row["cheque_id"] for row in rows]

    def _central_released(self, rows: list[dict[str, Any]]) -> None:
        if self.on_central_release is not None and any(
            row["hold_mode"] == HoldMode.central for row in rows
        ):
            self.on_central_release()

    def _finish_unpaid(
        self, db: sqlite_utils.Database, row: dict[str, Any], state: ChequeState
    ) -> None:
        reservation = parsed(Reservation, row["reservation"])
        document = self._sale_document(db, reservation, state, None, [])
        _outbox.append(db, document, offline=row["hold_mode"] == HoldMode.offline)
        db.execute(
            "UPDATE cheques SET state = ?, points_held = 0 WHERE cheque_id = ?",
            [str(state), row["cheque_id"]],
        )

    # --- refund ------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResponse:
        """Return lines of a cheque: pro rata, cumulative, never more than was sold."""
        _, hashes = _kept(self.settings.identity, request)
        with self.store.write() as db:
            earlier = _stored_refund(db, request.refund_id, hashes)
            if earlier is not None:
                return earlier
            rows = list(db.query(f"{_CHEQUE_ROWS} WHERE cheque_id = ?", [request.cheque_id]))
            original = request.original_basket
            if rows and (original is None or _sold_here(rows[0], original)):
                response = self._refund_own(db, rows[0], request)
                original_hash = None
            else:
                original_hash = None if original is None else content_hash(original)
                response = self._refund_foreign(db, request, original_hash)
            returned = json.dumps({line.line_id: line.quantity_milli for line in request.lines})
            db.execute(
                "INSERT INTO refunds(refund_id, cheque_id, request_hash, response, returned, "
                "original_hash) VALUES (?,?,?,?,?,?)",
                [
                    request.refund_id,
                    request.cheque_id,
                    hashes[0],
                    response.model_dump_json(),
                    returned,
                    original_hash,
                ],
            )
        return response

    def _refund_own(
        self, db: sqlite_utils.Database, row: dict[str, Any], request: RefundRequest
    ) -> RefundResponse:
        if row["state"] not in _PAID:
            raise Conflict("cheque_not_paid", f"cheque {request.cheque_id} was never paid")
        reservation = parsed(Reservation, row["reservation"])
        sale = reservation.request
        quote = reservation.response.quote
        earlier = [Refund.model_validate(item) for item in json.loads(row["refunds"])]
        returned = {line.line_id: line.quantity_milli for line in request.lines}
        if len(returned) != len(request.lines):
            raise TillError("refund_invalid", "each line may appear once in a refund")
        try:
            refund = refund_quote(quote, sale.basket, returned, earlier)
        except RefundError as error:
            raise TillError("refund_invalid", str(error)) from error
        account = reservation.account
        entries = append_entries(
            self,
            db,
            account,
            refund_movements(
                refund,
                quote,
                (
                    sale_entry_of(db, account, request.cheque_id, (EntryKind.earn, "points")),
                    sale_entry_of(
                        db, account, request.cheque_id, (EntryKind.counter, "rolling_spend")
                    ),
                ),
                self._returned_expire(db, reservation, row),
            ),
            refund,
            request.refund_id,
            False,
        )
        state = ChequeState.refunded if refund.complete else ChequeState.partially_refunded
        document = self._document(
            db,
            cheque_id=request.refund_id,
            kind=ChequeKind.refund,
            state=state,
            account=account,
            customer=_customer_of(reservation),
            basket=sale.basket,
            quote=quote,
            refund=refund,
            returned=_returned(request),
            original_cheque_id=request.cheque_id,
            original_device_id=self.seat.device_id,
            entry_ids=tuple(entry.entry_id for entry in entries),
        )
        _outbox.append(db, document, offline=False)
        history = [*json.loads(row["refunds"]), refund.model_dump(mode="json")]
        db.execute(
            "UPDATE cheques SET state = ?, refunds = ? WHERE cheque_id = ?",
            [str(state), json.dumps(history), request.cheque_id],
        )
        return RefundResponse(
            refund_id=request.refund_id,
            cheque_id=request.cheque_id,
            cheque_state=state,
            earn_reversed_points=refund.earn_points,
            burn_returned_points=refund.burn_points,
            money_refund=refund.money,
        )

    def _returned_expire(
        self, db: sqlite_utils.Database, reservation: Reservation, row: dict[str, Any]
    ) -> datetime | None:
        """When the spent points this refund gives back expire: under the sale's rules, as of
        its quote (a reservation from before `quoted_at`: when it was made)."""
        quote = reservation.response.quote
        rules = self.rulebook.named(db, quote.rule_set_hash, self.clock.wall())
        quoted = reservation.quoted_at or datetime.fromisoformat(row["reserved_at"])
        return returned_points_expire_at(rules, quoted)

    def _refund_foreign(
        self, db: sqlite_utils.Database, request: RefundRequest, original_hash: str | None
    ) -> RefundResponse:
        """A cheque sold at another till: recorded from the POS's lines, reconciled at central.
        `original_hash`: its basket's, which tells it from other cheques of the same id."""
        if request.original_basket is None or original_hash is None:
            raise NotFound(
                "cheque_unknown",
                f"cheque {request.cheque_id} was not sold at this till: send original_basket",
            )
        basket = request.original_basket
        lines = {line.line_id: line for line in basket.lines}
        if len({line.line_id for line in request.lines}) != len(request.lines):
            raise TillError("refund_invalid", "each line may appear once in a refund")
        before = _returned_before(db, request.cheque_id, original_hash)
        sold = {line_id: line.quantity_milli for line_id, line in lines.items()}
        try:
            check_returned(
                sold, before, {line.line_id: line.quantity_milli for line in request.lines}
            )
        except RefundError as error:
            raise TillError("refund_invalid", str(error)) from error
        resolved = self._resolve(db, request.customer)
        document = self._document(
            db,
            cheque_id=request.refund_id,
            kind=ChequeKind.refund,
            state=ChequeState.refunded,
            account=None if resolved is None else resolved.account,
            customer=CustomerState()
            if resolved is None or resolved.customer is None
            else resolved.customer.state,
            basket=basket,
            returned=_returned(request),
            original_cheque_id=request.cheque_id,
        )
        _outbox.append(db, document, offline=False)
        money = sum(  # cumulative: the refunds of a line add up to what it cost, exactly
            _paid_share(lines[line.line_id], before.get(line.line_id, 0) + line.quantity_milli)
            - _paid_share(lines[line.line_id], before.get(line.line_id, 0))
            for line in request.lines
        )
        return RefundResponse(
            refund_id=request.refund_id,
            cheque_id=request.cheque_id,
            cheque_state=None,
            earn_reversed_points=0,
            burn_returned_points=0,
            money_refund=money,
            reconciled_at_central=True,
        )

    # --- shared pieces ----------------------------------------------------------------------

    def _sale_document(
        self,
        db: sqlite_utils.Database,
        reservation: Reservation,
        state: ChequeState,
        fiscal_document: str | None,
        entries: list[LedgerEntry],
    ) -> ChequeDocument:
        request = reservation.request
        return self._document(
            db,
            cheque_id=request.cheque_id,
            kind=ChequeKind.sale,
            state=state,
            account=reservation.account,
            customer=_customer_of(reservation),
            basket=request.basket,
            redeem=request.redeem,
            quote=reservation.response.quote,
            fiscal_document=fiscal_document,
            entry_ids=tuple(entry.entry_id for entry in entries),
            seq=entries[-1].device_seq + 1 if entries else None,
            quoted_at=reservation.quoted_at,
        )

    def _document(
        self, db: sqlite_utils.Database, seq: int | None = None, **fields: Any
    ) -> ChequeDocument:
        """The next outbox record: a cheque document of this till's current epoch (`seq`
        when the caller has just appended the records before it)."""
        return ChequeDocument(
            document_id=self.make_id(),
            device_id=self.seat.device_id,
            device_epoch=self.seat.epoch,
            device_seq=_outbox.next_seq(db, self.seat.epoch) if seq is None else seq,
            store_id=self.settings.store.store_id,
            device_time=self.clock.wall(),
            **fields,
        )

    def _account_view(
        self, db: sqlite_utils.Database, account: AccountRef | None
    ) -> BalanceView | None:
        if account is None:
            return None
        cached = None
        if account.type == "customer":
            cached = get_customer(db, account.customer_id)
        return balance_view(db, account_key(account), cached, self.clock.wall())

    def _resolve(self, db: sqlite_utils.Database, given: IdentifierInput | None) -> Resolved | None:
        return None if given is None else resolve(db, self.settings.identity, given)

    def _view(
        self, db: sqlite_utils.Database, resolved: Resolved, cursor: int | None = None
    ) -> BalanceView:
        return balance_view(
            db, account_key(resolved.account), resolved.customer, self.clock.wall(), cursor
        )

    def data_age_s(self, db: sqlite_utils.Database) -> float | None:
        """Seconds since the last successful pull by the boot clock; None when unknown."""
        pulled = db.execute(
            "SELECT key, value FROM meta WHERE key IN ('last_pull_boottime_s', 'last_pull_boot_id')"
        ).fetchall()
        return self._age(dict(pulled))

    def _age(self, pulled: dict[str, str]) -> float | None:
        pulled_at = pulled.get("last_pull_boottime_s")
        return data_age_s(
            pulled.get("last_pull_boot_id"),
            None if pulled_at is None else float(pulled_at),
            self.clock.boot_id(),
            self.clock.boottime_s(),
        )


_SALE_META = ("pull_cursor", "offline_limits", "last_pull_boottime_s", "last_pull_boot_id")


def _sale_meta(db: sqlite_utils.Database) -> dict[str, str]:
    """What of the till's meta a sale reads (pull cursor, HQ's limits, pull time), at once."""
    rows = db.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)", _SALE_META)
    return dict(rows.fetchall())


_CHEQUE_ROWS = (
    "SELECT cheques.*, reservations.document AS reservation "
    "FROM cheques JOIN reservations USING (cheque_id)"
)
"""A cheque's row with its reservation document (`reservation`)."""

_PAID = {
    str(ChequeState.confirmed),
    str(ChequeState.partially_refunded),
    str(ChequeState.refunded),
}


def _sold_here(row: dict[str, Any], original: Basket) -> bool:
    """Whether this till's cheque `row` is the one the POS names by `original`: POS cheque
    numbers repeat across tills, and a cheque of another till may share this one's id."""
    sold = parsed(Reservation, row["reservation"]).request.basket
    return content_hash(sold) == content_hash(original)


def _returned_before(
    db: sqlite_utils.Database, cheque_id: str, original_hash: str
) -> dict[str, int]:
    """What the refunds made here of another till's cheque `cheque_id` with the basket of
    `original_hash` returned, by line."""
    total: dict[str, int] = {}
    for (returned,) in db.execute(
        "SELECT returned FROM refunds WHERE cheque_id = ? AND original_hash = ?",
        [cheque_id, original_hash],
    ).fetchall():
        for line_id, quantity_milli in json.loads(returned).items():
            total[line_id] = total.get(line_id, 0) + int(quantity_milli)
    return total


def _paid_share(sold: BasketLine, quantity_milli: int) -> int:
    """What `quantity_milli` of a line sold elsewhere cost after the POS's own discount, pro
    rata, rounded half up (the loyalty discount of that cheque is known at central only)."""
    paid = sold.total - sold.pos_discount
    return (2 * paid * quantity_milli + sold.quantity_milli) // (2 * sold.quantity_milli)


def _returned(request: RefundRequest) -> tuple[ReturnedLine, ...]:
    return tuple(
        ReturnedLine(line_id=line.line_id, quantity_milli=line.quantity_milli)
        for line in request.lines
    )


def _stored_refund(
    db: sqlite_utils.Database, refund_id: str, hashes: tuple[str, ...]
) -> RefundResponse | None:
    row = db.execute(
        "SELECT request_hash, response FROM refunds WHERE refund_id = ?", [refund_id]
    ).fetchone()
    if row is None:
        return None
    if row[0] not in hashes:
        raise Conflict(
            "refund_id_reused",
            f"refund {refund_id} was already made with different lines; use a new refund id",
        )
    return RefundResponse.model_validate_json(row[1])


def _cheque(db: sqlite_utils.Database, cheque_id: str) -> dict[str, Any]:
    cursor = db.execute(f"{_CHEQUE_ROWS} WHERE cheque_id = ?", [cheque_id])
    row = cursor.fetchone()
    if row is None:
        raise NotFound("cheque_unknown", f"no reservation for cheque {cheque_id} on this till")
    return dict(zip((column[0] for column in cursor.description), row, strict=True))


def _stored_reservation(
    db: sqlite_utils.Database, cheque_id: str, hashes: tuple[str, ...]
) -> ReserveResponse | None:
    row = db.execute(
        "SELECT request_hash, document FROM cheques JOIN reservations USING (cheque_id) "
        "WHERE cheque_id = ?",
        [cheque_id],
    ).fetchone()
    if row is None:
        return None
    if row[0] not in hashes:
        raise Conflict(
            "cheque_id_reused",
            f"cheque {cheque_id} was already reserved with different contents; use a new cheque id",
        )
    return parsed(Reservation, row[1]).response


_Kept = TypeVar("_Kept", ReserveRequest, RefundRequest)


def _kept(rules: IdentityRules, request: _Kept) -> tuple[_Kept, tuple[str, ...]]:
    """`request` as the till stores it, a typed phone as its keyed hash (`kept_identifier`;
    one that is no phone left out: identifying refuses it anyway), and the hashes a stored
    request that is the same may carry: of that, and of the request itself, as an agent
    from before took it."""
    try:
        customer = kept_identifier(rules, request.customer)
    except IdentifierRejected:
        customer = None
    if customer is request.customer:
        return request, (content_hash(request),)
    kept = request.model_copy(update={"customer": customer})
    return kept, (content_hash(kept), content_hash(request))


def _stored_confirmation(row: dict[str, Any], request: ConfirmRequest) -> ConfirmResponse:
    if row["fiscal_document"] != request.fiscal_document:
        raise Conflict(
            "cheque_confirmed",
            f"cheque {request.cheque_id} was confirmed with fiscal document "
            f"{row['fiscal_document']}",
        )
    return ConfirmResponse.model_validate_json(row["finished_response"])


def _as_seen_here(
    db: sqlite_utils.Database,
    cached: CustomerState,
    view: BalanceView,
    moved: dict[str, int],
    credit: Lot | None = None,
) -> CustomerState:
    """Central's last word on the customer plus what this till did since: the balance of
    the view, the points its own entries made active (`credit`, a lot), the counters and
    rolling spend its own entries `moved`, and the one-time grants this till gave (central's
    state may not have them)."""
    given = grants_given(db, cached.customer_id) if cached.customer_id else set()
    update: dict[str, Any] = {"points_balance": view.balance}
    if credit is not None:
        update["lots"] = (*cached.lots, credit)
    if not given <= set(cached.grants_received):
        update["grants_received"] = tuple(sorted(given | set(cached.grants_received)))
    spend = moved.pop("rolling_spend", 0)
    if spend:
        update["rolling_spend"] = max(cached.rolling_spend + spend, 0)
    if moved:
        counters = dict(cached.counters)
        for name, delta in moved.items():
            counters[name] = max(counters.get(name, 0) + delta, 0)
        update["counters"] = counters
    return cached.model_copy(update=update)


def _customer_id(resolved: Resolved | None) -> str | None:
    customer = None if resolved is None else resolved.customer
    return None if customer is None else customer.state.customer_id


def _customer_of(reservation: Reservation) -> CustomerState:
    return reservation.customer or CustomerState()


__all__ = ["CentralHold", "Till", "TillError", "TillSettings"]
