"""runs.resumed_at, timing_step, timing_at: a resume keeps the first start time, and the time left is estimated from
the steps this training process has timed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 21:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resumed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("timing_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("timing_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("timing_at")
        batch_op.drop_column("timing_step")
        batch_op.drop_column("resumed_at")
