"""Cases and their evidence: the walking skeleton's schema (what `create_all` made before migrations).

Revision ID: 0001
Revises:
Create Date: 2026-05-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("preset_id", sa.String(128), nullable=True),
        sa.Column("zone", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("box_x1", sa.Float(), nullable=False),
        sa.Column("box_y1", sa.Float(), nullable=False),
        sa.Column("box_x2", sa.Float(), nullable=False),
        sa.Column("box_y2", sa.Float(), nullable=False),
        sa.Column("first_seen", UTC_DATETIME, nullable=False),
        sa.Column("last_seen", UTC_DATETIME, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
    )
    op.create_index("ix_cases_match", "cases", ["camera_id", "zone", "kind", "state"])
    op.create_index("ix_cases_created_at", "cases", ["created_at"])
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("uploaded", sa.Boolean(), nullable=False),
        sa.Column("captured_at", UTC_DATETIME, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_evidence_case_id", "evidence", ["case_id"])
    op.create_index("ix_evidence_pending", "evidence", ["uploaded"])


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("cases")
