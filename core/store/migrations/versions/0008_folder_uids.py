"""runs.uid and datasets.uid: folders named so that they cannot repeat when a data folder outlives its database

Rows recorded before this version keep uid NULL: their folders are named by id alone, as before, and keep working.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 22:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "datasets"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in ("runs", "datasets"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("uid")
