"""database_info: the database's own uid, which it records in the data folders it keeps files in

A file in the data folder that no row points to is removed only where the folder records this database alone
(core.store.storage): two databases may share a data folder, and one must never remove the other's files.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:30:00.000000
"""

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "database_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.bulk_insert(table, [{"id": 1, "uid": uuid.uuid4().hex, "created_at": now}])


def downgrade() -> None:
    op.drop_table("database_info")
