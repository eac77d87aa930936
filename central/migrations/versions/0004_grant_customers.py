"""grant customers: whose each one-time grant is, indexed

Revision ID: 0004_grant_customers
Revises: 0003_lot_states

A customer's state carries the grants they received. They were found by the grant key's
form (`welcome:<c>`, `referral:<c>`, `birthday:<c>:<year>`), a `LIKE` per customer for the
birthdays that no index serves: a push granting to a hundred customers read the whole table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_grant_customers"
down_revision = "0003_lot_states"
branch_labels = None
depends_on = None

_rows_per_update = 1000


def upgrade() -> None:
    op.add_column("grants", sa.Column("customer_id", sa.String(64), nullable=True))
    op.create_index("ix_grants_customer_id", "grants", ["customer_id"])
    from central._changes import grant_customer

    conn = op.get_bind()
    grants = sa.table("grants", sa.column("grant_key"), sa.column("customer_id"))
    keys = conn.execute(sa.select(grants.c.grant_key)).scalars().all()
    named = [(key, grant_customer(key)) for key in keys]
    rows = [{"key": key, "customer": customer} for key, customer in named if customer]
    update = (
        sa.update(grants)
        .where(grants.c.grant_key == sa.bindparam("key"))
        .values(customer_id=sa.bindparam("customer"))
    )
    for start in range(0, len(rows), _rows_per_update):
        conn.execute(update, rows[start : start + _rows_per_update])


def downgrade() -> None:
    op.drop_index("ix_grants_customer_id", table_name="grants")
    op.drop_column("grants", "customer_id")
