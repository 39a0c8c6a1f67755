"""Case workflow (stage times, closing, device cases, locations), the append-only audit log, accounts and
API keys, webhook deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)

# The audit log is evidence of who did what: the database itself refuses to change or delete a line.
_SQLITE_TRIGGERS = [
    """CREATE TRIGGER case_audit_no_update BEFORE UPDATE ON case_audit
       BEGIN SELECT RAISE(ABORT, 'case_audit is append-only'); END""",
    """CREATE TRIGGER case_audit_no_delete BEFORE DELETE ON case_audit
       BEGIN SELECT RAISE(ABORT, 'case_audit is append-only'); END""",
]
_POSTGRES_TRIGGERS = [
    """CREATE FUNCTION case_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'case_audit is append-only'; END $$""",
    """CREATE TRIGGER case_audit_no_change BEFORE UPDATE OR DELETE ON case_audit
       FOR EACH ROW EXECUTE FUNCTION case_audit_append_only()""",
]


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("source", sa.String(16), server_default="camera", nullable=False))
        batch.add_column(sa.Column("state_changed_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("due_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("closed_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch.add_column(sa.Column("longitude", sa.Float(), nullable=True))
    # Cases filed before the workflow existed entered their state when they were filed.
    op.execute("UPDATE cases SET state_changed_at = created_at")
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("state_changed_at", existing_type=UTC_DATETIME, nullable=False)
        batch.create_index("ix_cases_state_id", ["state", "id"])
        batch.create_index("ix_cases_camera_id_id", ["camera_id", "id"])
        batch.create_index("ix_cases_kind_id", ["kind", "id"])
        batch.create_index("ix_cases_due_at", ["due_at"])

    op.create_table(
        "case_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_case_audit_case_id", "case_audit", ["case_id", "id"])
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}.get(dialect, []):
        op.execute(statement)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'inspector', 'supervisor', 'admin', 'service')", name="ck_users_role"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "auth_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_auth_tokens_user_id", "auth_tokens", ["user_id"])
    op.create_index("ix_auth_tokens_expires_at", "auth_tokens", ["expires_at"])

    op.create_table(
        "webhook_cursors",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("last_audit_id", sa.Integer(), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("audit_id", sa.Integer(), sa.ForeignKey("case_audit.id"), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(48), nullable=False),
        sa.Column("idempotency_key", sa.String(96), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.UniqueConstraint("target", "audit_id", name="uq_webhook_deliveries_target_audit"),
    )
    op.create_index("ix_webhook_deliveries_case_id", "webhook_deliveries", ["case_id"])
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("webhook_deliveries.id"), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_cursors")
    op.drop_table("auth_tokens")
    op.drop_table("api_keys")
    op.drop_table("users")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION case_audit_append_only() CASCADE")
    op.drop_table("case_audit")
    with op.batch_alter_table("cases") as batch:
        for index in ("ix_cases_state_id", "ix_cases_camera_id_id", "ix_cases_kind_id", "ix_cases_due_at"):
            batch.drop_index(index)
        for column in ("longitude", "latitude", "closed_at", "due_at", "state_changed_at", "source"):
            batch.drop_column(column)
