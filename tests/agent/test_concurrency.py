"""Two callers selling to one customer while a pull rewrites the cache at the same time."""

from __future__ import annotations

import threading
from pathlib import Path

from agent._cache import put_customer
from agent._clock import ManualClock
from agent._models import ConfirmRequest, IdentifierInput, ReserveRequest
from agent._runtime import build_till
from agent._store import set_meta
from protocol import Basket, BasketLine, CardIdentifier, CustomerState, OfflineLimits, RedeemRequest

from .conftest import CARD, make_settings, seed_customer

ROUNDS = 40


def test_parallel_sales_and_pull_never_overspend_or_collide(tmp_path: Path) -> None:
    clock = ManualClock()
    till = build_till(make_settings(tmp_path / "agent"), clock=clock)
    seed_customer(till, clock, points=1000)
    generous = OfflineLimits(
        customer_points_per_till_max=10**6, till_points_budget_max=10**6, data_age_max_s=86400
    )
    with till.store.write() as db:
        set_meta(db, "offline_limits", generous.model_dump_json())
    errors: list[BaseException] = []
    spent: list[int] = []
    stop = threading.Event()
    basket = Basket(
        lines=(
            BasketLine(
                line_id="1", sku="tea", quantity_milli=1000, unit_price=100000, total=100000
            ),
        )
    )

    def cashier(name: str) -> None:
        try:
            for i in range(ROUNDS):
                cheque = f"{name}-{i}"
                reserved = till.reserve(
                    ReserveRequest(
                        cheque_id=cheque,
                        customer=IdentifierInput(type="card", value=CARD),
                        basket=basket,
                        redeem=RedeemRequest(points=60),
                    )
                )
                till.confirm(ConfirmRequest(cheque_id=cheque, fiscal_document=cheque))
                spent.append(reserved.quote.burn_points)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    def pull() -> None:
        state = till.identify(IdentifierInput(type="card", value=CARD))
        assert state.customer_id == "c-1"
        customer = till.store.db.execute("SELECT state FROM customers").fetchone()[0]
        cached = CustomerState.model_validate_json(customer)
        try:
            while not stop.is_set():
                with till.store.write() as db:
                    for n in range(50):  # a page of other customers, and ours again
                        other = CustomerState(customer_id=f"x-{n}", points_balance=n)
                        put_customer(db, other, (), change_seq=n)
                    put_customer(db, cached, (CardIdentifier(number=CARD),), "Анна", 2)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    puller = threading.Thread(target=pull)
    cashiers = [threading.Thread(target=cashier, args=(name,)) for name in ("a", "b")]
    puller.start()
    for thread in cashiers:
        thread.start()
    for thread in cashiers:
        thread.join()
    stop.set()
    puller.join()
    assert errors == []
    welcome = till.store.db.execute(  # a grant is active at once: it may be spent too
        "SELECT COALESCE(SUM(amount), 0) FROM outbox WHERE kind = 'welcome'"
    ).fetchone()[0]
    assert sum(spent) <= 1000 + welcome
    assert sum(spent) >= 1000 + welcome - 60  # they did spend what there was
    seqs = [row[0] for row in till.store.db.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    view = till.identify(IdentifierInput(type="card", value=CARD)).balance
    assert view is not None
    assert view.available >= 0
