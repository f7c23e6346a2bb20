"""runs.tokenizer_bytes: the tokenizer's files, counted apart from the weight files (artifact_bytes)

Runs recorded before this version keep their artifact_bytes, which counted every file of the model folder.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 22:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokenizer_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("tokenizer_bytes")
