"""label_jobs.heartbeat_at: a label job whose worker was killed is seen as ended, as a run is

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 01:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("label_jobs", sa.Column("heartbeat_at", sa.DateTime(), nullable=True))  # in place on SQLite too


def downgrade() -> None:
    with op.batch_alter_table("label_jobs") as batch:  # nothing refers to label_jobs: copying it deletes nothing
        batch.drop_column("heartbeat_at")
