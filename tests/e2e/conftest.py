"""Real central and agent processes on loopback, with a fault proxy between them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent._demo import LIMITS, setup_central, setup_code
from agent._fleet import Agent, Central

from ..faultproxy import FaultProxy

CARD = "2770000000017"
ANNA = {"type": "card", "value": CARD}


@dataclass
class Chain:
    workdir: Path
    central: Central
    proxy: FaultProxy
    tills: list[Agent]

    def till(self, name: str, extra: dict[str, Any] | None = None) -> Agent:
        agent = Agent(self.workdir, name, self.proxy.url, setup_code(self.central), extra)
        self.tills.append(agent.start())
        return agent

    def central_db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.workdir / "central" / "central.db")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    central = Central(tmp_path / "central").start()
    setup_central(central)
    proxy = FaultProxy(central.port)
    made = Chain(tmp_path, central, proxy, [])
    try:
        yield made
    finally:
        for till in made.tills:
            till.close()
        central.close()
        proxy.close()


def line(line_id: str, price: int, category: str = "grocery") -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": f"sku-{line_id}",
        "category": category,
        "quantity_milli": 1000,
        "unit_price": price,
        "total": price,
    }


def sell(
    till: Agent, cheque: str, price: int, redeem: int = 0, category: str = "grocery"
) -> dict[str, Any]:
    body = {
        "cheque_id": cheque,
        "customer": ANNA,
        "basket": {"lines": [line("1", price, category)]},
        "redeem": {"points": redeem},
    }
    reserved = till.call("/v1/reserve", body)
    confirmed: dict[str, Any] = till.call(
        "/v1/confirm", {"cheque_id": cheque, "fiscal_document": f"FD-{cheque}"}
    )
    confirmed["hold_mode"] = reserved["hold_mode"]
    return confirmed


__all__ = ["ANNA", "LIMITS", "Chain", "line", "sell"]
