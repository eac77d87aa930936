"""lot states: each account's fold of points entries, kept in the entries' transaction

Revision ID: 0003_lot_states
Revises: 0002_processing
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0003_lot_states"
down_revision = "0002_processing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lot_states",
        sa.Column("account_key", sa.String(80), nullable=False),
        sa.Column("debt", sa.BigInteger(), nullable=False),
        sa.Column("lots", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_key", name=op.f("pk_lot_states")),
    )
    # Fill it from the ledger already there (the same fold push keeps up from now on).
    from central._lot_state import rebuild

    rebuild(op.get_bind(), time.time_ns() // 1_000_000)


def downgrade() -> None:
    op.drop_table("lot_states")
