"""label_jobs: files of texts that the worker labels with finished runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 22:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("folder", sa.String(length=500), nullable=False),
        sa.Column("text_column", sa.String(length=300), nullable=False),
        sa.Column("all_probabilities", sa.Boolean(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("peak_memory_mb", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_label_jobs_status", "label_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_label_jobs_status", table_name="label_jobs")
    op.drop_table("label_jobs")
