"""Building a till from its settings: the database, the rules, the identity rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent._clock import Clock, SystemClock
from agent._config import AgentSettings, ConfigError
from agent._identify import IdentityRules
from agent._rulebook import RuleBook, install_rule_set
from agent._sales import CentralHold, Till, TillSettings
from agent._store import TillStore
from protocol import CardRange, PhoneHasher, RuleSetError, Store, parse_rule_set

PHONE_KEY_FILE = "phone-hash.key"
CHAIN_FILE = "chain.json"
"""The store and card ranges central gave at enrollment; they win over the config file."""


def chain_settings(settings: AgentSettings) -> tuple[Store, tuple[CardRange, ...]]:
    path = settings.data_dir / CHAIN_FILE
    if not path.exists():
        return settings.store, settings.card_ranges
    chain = json.loads(path.read_text(encoding="utf-8"))
    ranges = tuple(CardRange.model_validate(item) for item in chain["card_ranges"])
    return Store.model_validate(chain["store"]), ranges or settings.card_ranges


def phone_hasher(data_dir: Path) -> PhoneHasher | None:
    """The chain's phone-hash key, kept beside (never inside) the database; None before
    enrollment has delivered it."""
    path = data_dir / PHONE_KEY_FILE
    if not path.exists():
        return None
    return PhoneHasher(bytes.fromhex(path.read_text().strip()))


def _bootstrap_rules(store: TillStore, rules_file: Path) -> None:
    try:
        rule_set = parse_rule_set(rules_file.read_text(encoding="utf-8"), source=str(rules_file))
    except (OSError, RuleSetError) as error:
        raise ConfigError(f"rules_file: {error}") from error
    with store.write() as db:
        install_rule_set(db, rule_set)


def enrolled_settings(current: TillSettings, settings: AgentSettings) -> TillSettings:
    """The till's settings once enrollment has brought the store, card ranges and key."""
    store_info, card_ranges = chain_settings(settings)
    identity = replace(
        current.identity, card_ranges=card_ranges, phone_hasher=phone_hasher(settings.data_dir)
    )
    return TillSettings(store=store_info, identity=identity)


def build_till(
    settings: AgentSettings,
    clock: Clock | None = None,
    central_hold: CentralHold | None = None,
    commit_hook: Callable[[str], None] | None = None,
) -> Till:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TillStore(settings.db_path, commit_hook=commit_hook)
    if settings.rules_file is not None:
        _bootstrap_rules(store, settings.rules_file)
    store_info, card_ranges = chain_settings(settings)
    identity = IdentityRules(
        card_ranges=card_ranges,
        phone_region=settings.phone_region,
        phone_hasher=phone_hasher(settings.data_dir),
    )
    return Till(
        store,
        TillSettings(store=store_info, identity=identity),
        clock or SystemClock(),
        RuleBook(),
        central_hold=central_hold,
    )
