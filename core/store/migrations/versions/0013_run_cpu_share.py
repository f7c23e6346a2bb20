"""runs.cpu_share: the share of the time its threads were ready to run that a run's training process got a CPU, so
that a run timed while other work held it back calibrates the estimates by what it would take alone

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 23:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("cpu_share", sa.Float(), nullable=True))  # in place on SQLite too


def downgrade() -> None:
    op.drop_column("runs", "cpu_share")  # in place on SQLite 3.35 and later: the runs table is not copied
