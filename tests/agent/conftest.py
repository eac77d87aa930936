"""A till on a real SQLite file with the example rules and one cached customer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent._cache import put_customer
from agent._clock import ManualClock
from agent._config import AgentSettings
from agent._runtime import PHONE_KEY_FILE, build_till
from agent._sales import Till
from agent._store import set_meta
from protocol import (
    CardIdentifier,
    CustomerState,
    Lot,
    OfflineLimits,
    PhoneHasher,
    PhoneHashIdentifier,
)

if TYPE_CHECKING:
    from .agent_process import AgentProcess

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "rules" / "base.toml"
PHONE_KEY = "ab" * 32
CARD = "2770000000017"
PHONE = "+79161234567"
LIMITS = OfflineLimits(
    customer_points_per_till_max=500,
    till_points_budget_max=800,
    phone_only_points_max=100,
    data_age_max_s=3600,
    reservation_ttl_s=600,
)


def make_settings(data_dir: Path) -> AgentSettings:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PHONE_KEY_FILE).write_text(PHONE_KEY)
    return AgentSettings(data_dir=data_dir, rules_file=RULES, api_token="t" * 32)


def seed_customer(till: Till, clock: ManualClock, points: int = 1000) -> None:
    """What a pull would have left: one customer, fresh data, HQ's offline limits."""
    earned = clock.wall()
    state = CustomerState(
        customer_id="c-1",
        consent_marketing=True,
        points_balance=points,
        lots=(Lot(lot_id="l-1", points=points, earned_at=earned, activates_at=earned),),
    )
    phone_hash = PhoneHasher(bytes.fromhex(PHONE_KEY))(PHONE)
    identifiers = (CardIdentifier(number=CARD), PhoneHashIdentifier(phone_hash=phone_hash))
    with till.store.write() as db:
        put_customer(db, state, identifiers, first_name="Анна", change_seq=1)
        set_meta(db, "offline_limits", LIMITS.model_dump_json())
        set_meta(db, "last_pull_boot_id", clock.boot_id())
        set_meta(db, "last_pull_boottime_s", str(clock.boottime_s()))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def till(tmp_path: Path, clock: ManualClock) -> Till:
    made = build_till(make_settings(tmp_path / "agent"), clock=clock)
    seed_customer(made, clock)
    return made


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One real agent process per test worker, on loopback, over a seeded database."""
    from .agent_process import running_agent  # not at the top: till_worker imports this file

    with running_agent(tmp_path_factory.mktemp("agent-process") / "agent") as process:
        yield process
