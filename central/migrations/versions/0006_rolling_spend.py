"""rolling spend: spend entries by time, and job cursors

Revision ID: 0006_rolling_spend
Revises: 0005_quarantine_record_id

A customer's rolling spend (for tiers) is their spend over the rule set's
`rolling_spend_days`; it only ever grew. The `rolling` job now takes out spend that left the
window. It finds the accounts whose spend crossed the window's edge by this partial index, and
keeps how far it got in `job_cursors`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rolling_spend"
down_revision = "0005_quarantine_record_id"
branch_labels = None
depends_on = None

_SPEND = "asset = 'rolling_spend'"


def upgrade() -> None:
    op.create_index(
        "ix_ledger_spend_time",
        "ledger",
        ["device_time_ms"],
        sqlite_where=sa.text(_SPEND),
        postgresql_where=sa.text(_SPEND),
    )
    op.create_table(
        "job_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_cursors")
    op.drop_index("ix_ledger_spend_time", table_name="ledger")
