"""quarantine record ids, indexed

Revision ID: 0005_quarantine_record_id
Revises: 0004_grant_customers

A pushed record reusing the id of a quarantined one (or a quarantined record reusing an
applied one's id) was acknowledged silently: the id check looked in the ledger and the
cheques only. Every push now looks its ids up in the quarantine too, by this index.
"""

from __future__ import annotations

from alembic import op

revision = "0005_quarantine_record_id"
down_revision = "0004_grant_customers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_quarantine_record_id", "quarantine", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_record_id", table_name="quarantine")
