"""runs.estimate and runs.score_seconds: each run's estimate beside what it measured; probes for calibration

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("estimate", sa.JSON(), nullable=True))
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=800), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("model_source", sa.String(length=500), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_probes_key", "probes", ["key"])


def downgrade() -> None:
    op.drop_index("ix_probes_key", table_name="probes")
    op.drop_table("probes")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("estimate")
        batch_op.drop_column("score_seconds")
