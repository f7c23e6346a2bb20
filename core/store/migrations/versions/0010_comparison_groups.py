"""comparison_groups and runs.group_id: a pair repeated with several seeds is one comparison

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 22:00:00.000000
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comparison_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("first_seed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # ADD COLUMN keeps the table; batch mode would copy every run into a new `runs` (core.store.db.migrate keeps
        # the rows that refer to it when a migration does, but there is no need to here).
        op.execute(
            "ALTER TABLE runs ADD COLUMN group_id INTEGER CONSTRAINT fk_runs_group_id_comparison_groups "
            "REFERENCES comparison_groups (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("runs", sa.Column("group_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_runs_group_id_comparison_groups",
            "runs",
            "comparison_groups",
            ["group_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index("ix_runs_group_id", "runs", ["group_id"], unique=False)
    # Every pair recorded before groups existed becomes a comparison of one seed, so history reads the same way.
    conn = op.get_bind()
    pairs = conn.execute(
        sa.text(
            "SELECT pair_id, MIN(created_at), MIN(id) FROM runs WHERE pair_id IS NOT NULL "
            "GROUP BY pair_id ORDER BY MIN(id)"
        )
    ).all()
    for pair_id, created_at, first_id in pairs:
        config = conn.execute(sa.text("SELECT config FROM runs WHERE id = :id"), {"id": first_id}).scalar()
        seed = (config if isinstance(config, dict) else json.loads(config or "{}")).get("seed", 42)
        group_id = conn.execute(
            sa.text(
                "INSERT INTO comparison_groups (created_at, repeats, first_seed) VALUES (:created_at, 1, :seed) "
                "RETURNING id"
            ),
            {"created_at": created_at, "seed": int(seed)},
        ).scalar()
        conn.execute(
            sa.text("UPDATE runs SET group_id = :group WHERE pair_id = :pair"), {"group": group_id, "pair": pair_id}
        )


def downgrade() -> None:
    op.drop_index("ix_runs_group_id", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            # SQLite reflects the key added with its column (upgrade) without its name; the copy batch mode makes of
            # `runs` leaves it out with the column (core.store.db.migrate keeps the other tables' rows meanwhile).
            batch_op.drop_constraint("fk_runs_group_id_comparison_groups", type_="foreignkey")
        batch_op.drop_column("group_id")
    op.drop_table("comparison_groups")
