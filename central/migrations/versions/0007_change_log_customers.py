"""change log: an index of the rows that carry customers

Revision ID: 0007_change_log_customers
Revises: 0006_rolling_spend

An erasure scrubs the customer's past changes out of the change log. It read every row,
every push's balances included, inside its write transaction; this partial index holds only
the rows whose changes may be customers, so it reads those alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_change_log_customers"
down_revision = "0006_rolling_spend"
branch_labels = None
depends_on = None

_CUSTOMER_ROWS = "kind IN ('customer', 'mixed')"


def upgrade() -> None:
    op.create_index(
        "ix_change_log_customers",
        "change_log",
        ["change_seq"],
        sqlite_where=sa.text(_CUSTOMER_ROWS),
        postgresql_where=sa.text(_CUSTOMER_ROWS),
    )


def downgrade() -> None:
    op.drop_index("ix_change_log_customers", table_name="change_log")
