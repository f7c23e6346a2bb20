"""studies, and runs.study_id / study_role / stopped_early / stage_seconds: a comparison with one setting varied,
whose runs are ordinary runs; what a run's fixed costs took

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("vary", sa.String(length=20), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("dataset_name", sa.String(length=200), nullable=False),
        sa.Column("model_source", sa.String(length=500), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("first_seed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # ADD COLUMN keeps the table (as 0010): batch mode would copy every run.
        op.execute(
            "ALTER TABLE runs ADD COLUMN study_id INTEGER CONSTRAINT fk_runs_study_id_studies "
            "REFERENCES studies (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("runs", sa.Column("study_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_runs_study_id_studies", "runs", "studies", ["study_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_runs_study_id", "runs", ["study_id"], unique=False)
    op.add_column("runs", sa.Column("study_role", sa.String(length=10), nullable=True))
    op.add_column("runs", sa.Column("stopped_early", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("stage_seconds", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_runs_study_id", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint("fk_runs_study_id_studies", type_="foreignkey")
        for column in ("stage_seconds", "stopped_early", "study_role", "study_id"):
            batch_op.drop_column(column)
    op.drop_table("studies")
