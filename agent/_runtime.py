"""Building a till from its settings: the database, the rules, the identity rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent._clock import Clock, SystemClock
from agent._config import AgentSettings, ConfigError
from agent._identify import IdentityRules
from agent._rulebook import RuleBook, install_rule_set
from agent._sales import CentralHold, Till, TillSettings
from agent._store import TillStore
from protocol import PhoneHasher, RuleSetError, parse_rule_set

PHONE_KEY_FILE = "phone-hash.key"


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
    identity = IdentityRules(
        card_ranges=settings.card_ranges,
        phone_region=settings.phone_region,
        phone_hasher=phone_hasher(settings.data_dir),
    )
    return Till(
        store,
        TillSettings(store=settings.store, identity=identity),
        clock or SystemClock(),
        RuleBook(),
        central_hold=central_hold,
    )
