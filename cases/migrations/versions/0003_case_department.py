"""Where a case was dispatched: `cases.department`, filled in from the audit log's dispatch lines.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("department", sa.String(128), nullable=True))
        batch.create_index("ix_cases_department_id", ["department", "id"])
    # Cases dispatched before this column: the target of their last dispatch line (the audit log keeps it).
    connection = op.get_bind()
    lines = connection.execute(
        sa.text("SELECT case_id, details FROM case_audit WHERE action = 'dispatch' ORDER BY id")
    ).all()
    last: dict[int, str] = {}
    for case_id, details in lines:
        try:
            target = json.loads(details or "{}").get("target")
        except (ValueError, AttributeError):
            continue
        if target:
            last[case_id] = str(target)[:128]
    update = sa.text("UPDATE cases SET department = :department WHERE id = :id")
    for case_id, department in last.items():
        connection.execute(update, {"department": department, "id": case_id})


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_department_id")
        batch.drop_column("department")
