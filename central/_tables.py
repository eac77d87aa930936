"""Central's schema (SQLAlchemy Core). The same tables on SQLite and PostgreSQL.

Times are integer milliseconds since the Unix epoch (`*_ms`), money and points are integers,
payloads are the exact bytes a till sent, with their SHA-256. Alembic migrations in
`central/migrations/` create these tables; a test checks the two never drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An auto-incrementing key: BIGINT on PostgreSQL, the rowid alias on SQLite."""


def _id(length: int = 64) -> sa.String:
    return sa.String(length)


counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", _id(), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
"""Named counters. `change_seq` is taken inside every transaction that writes the change log
(the row lock orders them); `change_floor` is the oldest cursor still served by pull."""

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", _id(), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
"""Chain-wide settings as JSON text: phone-hash key, card ranges, offline limits."""

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("store_id", _id(), primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("timezone", _id(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

enrollment_codes = sa.Table(
    "enrollment_codes",
    metadata,
    sa.Column("code_sha256", sa.String(64), primary_key=True),
    sa.Column("store_id", _id(), sa.ForeignKey("stores.store_id"), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("used_ms", sa.BigInteger, nullable=True),
    sa.Column("used_by", _id(), nullable=True),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", _id(), primary_key=True),
    sa.Column("store_id", _id(), sa.ForeignKey("stores.store_id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("current_epoch", sa.Integer, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=True, unique=True),
    sa.Column("hostname", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_ms", sa.BigInteger, nullable=True),
    sa.Column("last_push_ms", sa.BigInteger, nullable=True),
    sa.Column("clock_skew_ms", sa.BigInteger, nullable=True),
)
"""Tills, and central's own pseudo-device. `status` is `enrolled` or `revoked`."""

device_epochs = sa.Table(
    "device_epochs",
    metadata,
    sa.Column("device_id", _id(), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("acked_seq", sa.BigInteger, nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
)
"""One row per device epoch: its highest accepted seq. Push locks this row (FOR UPDATE), so
the batches of one device are applied one after another."""

admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_ms", sa.BigInteger, nullable=True),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", _id(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("tier", _id(), nullable=True),
    sa.Column("birthday", sa.String(10), nullable=True),
    sa.Column("first_name", sa.String(64), nullable=False, server_default=""),
    sa.Column("language", sa.String(2), nullable=False, server_default="ru"),
    sa.Column("consent_marketing", sa.Boolean, nullable=False),
    sa.Column("consent_data", sa.Boolean, nullable=False),
    sa.Column("referred_by", _id(), nullable=True),
    sa.Column("merged_into", _id(), nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
"""`status`: active, blocked, merged, erased, provisional."""

identifiers = sa.Table(
    "identifiers",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("value", _id(), primary_key=True),
    sa.Column("customer_id", _id(), sa.ForeignKey("customers.customer_id"), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_identifiers_customer", "customer_id"),
)
"""`kind`: card, phone_hash, qr. Phones are stored only as the chain's keyed hash."""

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entry_id", sa.String(36), nullable=False, unique=True),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("device_epoch", sa.Integer, nullable=False),
    sa.Column("device_seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("account_key", sa.String(80), nullable=False),
    sa.Column("asset", _id(), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("grant_key", _id(), nullable=True),
    sa.Column("cheque_id", _id(), nullable=True),
    sa.Column("reverses", sa.String(36), nullable=True),
    sa.Column("device_time_ms", sa.BigInteger, nullable=False),
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("device_id", "device_epoch", "device_seq", name="uq_ledger_device_seq"),
    sa.Index("ix_ledger_account", "account_key", "asset"),
    sa.Index(
        "ix_ledger_spend_time",
        "device_time_ms",
        sqlite_where=sa.text("asset = 'rolling_spend'"),
        postgresql_where=sa.text("asset = 'rolling_spend'"),
    ),
)
"""Append-only. Never updated, never deleted."""

cheques = sa.Table(
    "cheques",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("document_id", sa.String(36), nullable=False, unique=True),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("device_epoch", sa.Integer, nullable=False),
    sa.Column("device_seq", sa.BigInteger, nullable=False),
    sa.Column("cheque_id", _id(), nullable=False),
    sa.Column("store_id", _id(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("account_key", sa.String(80), nullable=True),
    sa.Column("device_time_ms", sa.BigInteger, nullable=False),
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.Column("recomputed", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("device_id", "device_epoch", "device_seq", name="uq_cheques_device_seq"),
    sa.Index("ix_cheques_cheque", "device_id", "cheque_id"),
    sa.Index("ix_cheques_cheque_id", "cheque_id"),
    sa.Index("ix_cheques_recomputed", "recomputed"),
)
"""Cheque documents as the tills evaluated them. `recomputed` is the recomputation job's
verdict (pending, ok, mismatch, unknown_rules, foreign, reconciled, unmatched, skipped,
scrubbed); `result` its JSON detail (for a reconciled foreign refund, the Refund central
computed)."""

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("device_epoch", sa.Integer, nullable=False),
    sa.Column("device_seq", sa.BigInteger, nullable=False),
    sa.Column("record_id", sa.String(36), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.Column("resolved_ms", sa.BigInteger, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.UniqueConstraint("device_id", "device_epoch", "device_seq", name="uq_quarantine_device_seq"),
    sa.Index("ix_quarantine_record_id", "record_id"),
)
"""Records central acknowledged but could not apply; they hold the device's seq."""

conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("device_epoch", sa.Integer, nullable=False),
    sa.Column("device_seq", sa.BigInteger, nullable=False),
    sa.Column("record_id", sa.String(36), nullable=True),
    sa.Column("stored_sha256", sa.String(64), nullable=True),
    sa.Column("incoming_sha256", sa.String(64), nullable=False),
    sa.Column("incoming_payload", sa.LargeBinary, nullable=False),
    sa.Column("first_ms", sa.BigInteger, nullable=False),
    sa.Column("last_ms", sa.BigInteger, nullable=False),
    sa.Column("times", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("resolved_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint(
        "device_id", "device_epoch", "device_seq", "incoming_sha256", name="uq_conflicts_item"
    ),
)
"""Alarms for HQ: a known seq or id pushed again with a different payload (refused), an
overspend that left a debt, a cheque whose recomputation differs. `status`: open, reviewed,
written_off, adjusted; every action on one is in `audit_log`."""

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_key", sa.String(80), primary_key=True),
    sa.Column("asset", _id(), primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("entries", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
"""Balance and entry count of each asset of each account, kept in the entries' transaction."""

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("grant_key", _id(), primary_key=True),
    sa.Column("entry_id", sa.String(36), nullable=False),
    sa.Column("customer_id", _id(), nullable=True),
    sa.Index("ix_grants_customer_id", "customer_id"),
)
"""One-time grants: the first entry with a grant key wins; later ones are reversed.
`customer_id`: whose the grant is (`_changes.grant_customer` of the key), for the customer's
state; none for a key of no known form."""

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("lot_id", sa.String(36), primary_key=True),
    sa.Column("account_key", sa.String(80), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("earned_ms", sa.BigInteger, nullable=False),
    sa.Column("activates_ms", sa.BigInteger, nullable=True),
    sa.Column("expires_ms", sa.BigInteger, nullable=True),
    sa.Column("activated_ms", sa.BigInteger, nullable=True),
    sa.Column("expired_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_lots_account", "account_key"),
    sa.Index("ix_lots_activates", "activates_ms"),
    sa.Index("ix_lots_expires", "expires_ms"),
)
"""An index of lots: one row per positive points entry that may activate or expire. What is
left of a lot is folded from the ledger (`central._lots`); `activated_ms` and `expired_ms`
say that the jobs have written its activation and expiry entries."""

lot_states = sa.Table(
    "lot_states",
    metadata,
    sa.Column("account_key", sa.String(80), primary_key=True),
    sa.Column("debt", sa.BigInteger, nullable=False),
    sa.Column("lots", sa.Text, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
"""The fold of each account's points entries, kept in the entries' transaction
(`central._lot_state`): its debt, and its lots with points left as JSON
`[[lot_id, left, activates_ms, expires_ms], ...]` in fold order."""

debts = sa.Table(
    "debts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_key", sa.String(80), nullable=False),
    sa.Column("asset", _id(), nullable=False),
    sa.Column("entry_id", sa.String(36), nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("reported_ms", sa.BigInteger, nullable=True),
)
"""Each batch that left a balance negative: HQ sees every case (the debts job files a
conflict for each and sets `reported_ms`)."""

rule_sets = sa.Table(
    "rule_sets",
    metadata,
    sa.Column("rule_set_id", _id(), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("effective_from_ms", sa.BigInteger, nullable=False),
    sa.Column("effective_from", sa.String(40), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("published_ms", sa.BigInteger, nullable=False),
)
"""Published rule-set versions; immutable."""

CUSTOMER_ROWS = "kind IN ('customer', 'mixed')"
"""The change-log rows that may carry customers (an erasure scrubs them): a partial index
holds only these, not the balances of every push."""

change_log = sa.Table(
    "change_log",
    metadata,
    sa.Column("change_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index(
        "ix_change_log_customers",
        "change_seq",
        sqlite_where=sa.text(CUSTOMER_ROWS),
        postgresql_where=sa.text(CUSTOMER_ROWS),
    ),
)
"""What pull serves. One row per writing transaction: the changes numbered
`first_seq..change_seq`, as a JSON list of changes without their `change_seq`; `kind` is the
changes' one type, or `mixed`."""


leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", _id(), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("acquired_ms", sa.BigInteger, nullable=False),
)
"""Who runs a job now: taken with one atomic UPDATE where the lease has expired."""

job_state = sa.Table(
    "job_state",
    metadata,
    sa.Column("name", _id(), primary_key=True),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("last_holder", sa.String(128), nullable=True),
    sa.Column("last_started_ms", sa.BigInteger, nullable=True),
    sa.Column("last_finished_ms", sa.BigInteger, nullable=True),
    sa.Column("last_ok_ms", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("items_last", sa.BigInteger, nullable=False),
    sa.Column("items_total", sa.BigInteger, nullable=False),
    sa.Column("lag_ms", sa.BigInteger, nullable=True),
)
"""What each job did last and how far behind it is: HQ watches this."""

job_cursors = sa.Table(
    "job_cursors",
    metadata,
    sa.Column("name", _id(), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
"""How far a job that walks the ledger got (the rolling-spend job: its window's edge in ms and
the last ledger id it read), so that its next run reads only what is new."""

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("hold_id", sa.String(36), primary_key=True),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("cheque_id", _id(), nullable=False),
    sa.Column("customer_id", _id(), nullable=False),
    sa.Column("account_key", sa.String(80), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("closed_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("device_id", "cheque_id", name="uq_holds_cheque"),
    sa.Index("ix_holds_account", "account_key", "state"),
)
"""Online redemption holds. `state`: held, confirmed, released, expired."""

confirmation_codes = sa.Table(
    "confirmation_codes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("customer_id", _id(), nullable=False),
    sa.Column("device_id", _id(), nullable=False),
    sa.Column("cheque_id", _id(), nullable=False),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("used_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_confirmation_codes_cheque", "device_id", "cheque_id"),
)
"""One-time codes sent to a customer's phone for phone-only redemption; stored hashed."""

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("customer_id", _id(), sa.ForeignKey("customers.customer_id"), primary_key=True),
    sa.Column("phone_e164", sa.String(20), nullable=False),
)
"""Where central may send a customer a message. Personal data: erased with the customer."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
"""Every HQ action that changes money or a customer: who, what, on what, when."""
