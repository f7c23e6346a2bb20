"""runs.base_revision: which weights the base model held when the run trained (a commit, or the SHA-256 of a folder's
weights); a LoRA run's adapters fit only those

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 22:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_revision", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("base_revision")
