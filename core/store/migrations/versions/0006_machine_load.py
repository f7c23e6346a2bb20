"""runs.load_average, cpu_percent, cpu_count: how busy the machine was while a run trained, so that times measured
on a busy machine are not shown as facts about the method

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 22:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("load_average", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cpu_percent", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cpu_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("cpu_count")
        batch_op.drop_column("cpu_percent")
        batch_op.drop_column("load_average")
