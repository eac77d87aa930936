"""lot states folded in time: spending takes only the lots valid when it was made

Revision ID: 0008_spending_in_time
Revises: 0007_change_log_customers

The fold let a negative entry take from any lot, the expiring ones first, so spending after
an expiry (before the expiry job, which waits the offline window) took the expired lot and
left the valid points standing; it now takes the lots active when it was made, then those
in their return window, never an expired one (`central._lot_state`). Each account's kept
fold is made again, and what the new fold leaves in lots the job wrote off already is
written off now (`central._lots.write_off_left`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op

revision = "0008_spending_in_time"
down_revision = "0007_change_log_customers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from central._clock import to_ms
    from central._lot_state import rebuild
    from central._lots import write_off_left

    now = datetime.now(UTC)
    rebuild(op.get_bind(), to_ms(now))
    write_off_left(op.get_bind(), now)


def downgrade() -> None:
    """The entries written off stay: they are in the ledger, as every entry is."""
