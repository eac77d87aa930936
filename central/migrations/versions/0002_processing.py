"""processing jobs, holds, confirmation codes, contacts, audit

Revision ID: 0002_processing
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_processing"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "conflicts", sa.Column("status", sa.String(16), server_default="open", nullable=False)
    )
    op.add_column("conflicts", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("conflicts", sa.Column("resolved_ms", sa.BigInteger(), nullable=True))
    op.add_column(
        "quarantine", sa.Column("status", sa.String(16), server_default="open", nullable=False)
    )
    op.add_column("lots", sa.Column("activated_ms", sa.BigInteger(), nullable=True))
    op.add_column("lots", sa.Column("expired_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_lots_activates", "lots", ["activates_ms"])
    op.create_index("ix_lots_expires", "lots", ["expires_ms"])
    op.add_column("debts", sa.Column("reported_ms", sa.BigInteger(), nullable=True))
    op.add_column("cheques", sa.Column("result", sa.Text(), nullable=True))
    op.create_index("ix_cheques_cheque_id", "cheques", ["cheque_id"])
    op.create_index("ix_cheques_recomputed", "cheques", ["recomputed"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("acquired_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "job_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("last_holder", sa.String(128), nullable=True),
        sa.Column("last_started_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_finished_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_ok_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("items_last", sa.BigInteger(), nullable=False),
        sa.Column("items_total", sa.BigInteger(), nullable=False),
        sa.Column("lag_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_state")),
    )
    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("cheque_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("account_key", sa.String(80), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("hold_id", name=op.f("pk_holds")),
        sa.UniqueConstraint("device_id", "cheque_id", name="uq_holds_cheque"),
    )
    op.create_index("ix_holds_account", "holds", ["account_key", "state"])
    op.create_table(
        "confirmation_codes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("cheque_id", sa.String(64), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmation_codes")),
    )
    op.create_index(
        "ix_confirmation_codes_cheque", "confirmation_codes", ["device_id", "cheque_id"]
    )
    op.create_table(
        "contacts",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("phone_e164", sa.String(20), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_contacts_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )


def downgrade() -> None:
    for table in ("audit_log", "contacts", "confirmation_codes", "holds", "job_state", "leases"):
        op.drop_table(table)
    op.drop_index("ix_cheques_recomputed", "cheques")
    op.drop_index("ix_cheques_cheque_id", "cheques")
    op.drop_index("ix_lots_expires", "lots")
    op.drop_index("ix_lots_activates", "lots")
    with op.batch_alter_table("cheques") as batch:
        batch.drop_column("result")
    with op.batch_alter_table("debts") as batch:
        batch.drop_column("reported_ms")
    with op.batch_alter_table("lots") as batch:
        batch.drop_column("expired_ms")
        batch.drop_column("activated_ms")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("conflicts") as batch:
        for column in ("resolved_ms", "detail", "status"):
            batch.drop_column(column)
