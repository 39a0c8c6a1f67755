"""One case per problem: `cases.first_box_*` (matched besides the last box) and `cases.also_seen_kinds`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_FIRST_BOX = ("first_box_x1", "first_box_y1", "first_box_x2", "first_box_y2")


def upgrade() -> None:
    # Plain ADD COLUMNs with server defaults: no batch copy of `cases`, whose DROP on SQLite (foreign keys on)
    # would cascade to the evidence rows.
    for column in _FIRST_BOX:
        op.add_column("cases", sa.Column(column, sa.Float(), nullable=False, server_default="0"))
    op.add_column("cases", sa.Column("also_seen_kinds", sa.Text(), nullable=False, server_default="[]"))
    # Cases filed before: their first box is unknown, their last box is the best guess.
    op.execute(
        "UPDATE cases SET first_box_x1 = box_x1, first_box_y1 = box_y1, first_box_x2 = box_x2, first_box_y2 = box_y2"
    )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no table copy).
    for column in ("also_seen_kinds", *reversed(_FIRST_BOX)):
        op.drop_column("cases", column)
