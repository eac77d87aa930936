"""Which rule set a sale is evaluated with: the newest one whose `effective_from` has come.

Rule sets arrive by pull (canonical JSON, named by content hash) and switch at their
`effective_from`; parsed sets are kept in memory by hash. A till that has no rule set yet
(never synced, no bootstrap file) evaluates with the built-in empty set: sales go on and
earn nothing, and the cheque still names a known, hashed rule set.
"""

from __future__ import annotations

import threading
from datetime import datetime

import sqlite_utils

from agent._cache import put_rule_set, utc_iso
from protocol import RuleSet, canonical_json, rule_set_from_data

EMPTY_RULE_SET = rule_set_from_data(
    {
        "rule_set_id": "empty",
        "name": "No rules yet: sales earn nothing until central sends a rule set",
        "effective_from": "2000-01-01T00:00:00+00:00",
        "redemption": {"enabled": False},
    },
    source="built-in empty rule set",
)


class RuleBook:
    def __init__(self) -> None:
        self._parsed: dict[str, RuleSet] = {}
        self._lock = threading.Lock()
        self._empty = EMPTY_RULE_SET

    def active(self, db: sqlite_utils.Database, now: datetime) -> RuleSet:
        row = db.execute(
            "SELECT content_hash FROM rule_sets WHERE effective_from <= ? "
            "ORDER BY effective_from DESC, rule_set_id DESC LIMIT 1",  # as effective_rule_set
            [utc_iso(now)],
        ).fetchone()
        if row is None:
            return self._empty
        return self._load(db, row[0])

    def named(self, db: sqlite_utils.Database, content_hash: str, now: datetime) -> RuleSet:
        """The rule set with this content hash (one a quote was evaluated with); the active
        one should the till not hold it."""
        if content_hash == self._empty.content_hash:
            return self._empty
        with self._lock:
            found = self._parsed.get(content_hash)
        if found is not None:
            return found
        known = db.execute(
            "SELECT 1 FROM rule_sets WHERE content_hash = ?", [content_hash]
        ).fetchone()
        return self._load(db, content_hash) if known else self.active(db, now)

    def _load(self, db: sqlite_utils.Database, content_hash: str) -> RuleSet:
        with self._lock:
            found = self._parsed.get(content_hash)
        if found is not None:
            return found
        document = db.execute(
            "SELECT document FROM rule_sets WHERE content_hash = ?", [content_hash]
        ).fetchone()[0]
        parsed = RuleSet.model_validate_json(document)
        with self._lock:
            self._parsed[content_hash] = parsed
        return parsed


def install_rule_set(db: sqlite_utils.Database, rule_set: RuleSet) -> None:
    """Inside a write: keep `rule_set` (from a pull, or a bootstrap file)."""
    put_rule_set(
        db,
        rule_set.rule_set_id,
        rule_set.content_hash,
        rule_set.effective_from,
        canonical_json(rule_set).decode("utf-8"),
    )
