"""Alembic migrations on SQLite and PostgreSQL: head matches the models, old databases are adopted."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from citywatch.cases.db import Base
from citywatch.cases.migrate import MigrationError, alembic_config, current_revision, head_revision, upgrade
from citywatch.cases.store import CaseFilter, CaseStore


def engine_at(database_url: str, revision: str) -> sa.Engine:
    """An engine on an empty database migrated up to `revision` only (an older citywatch's database)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    upgrade(engine, revision)
    return engine


def test_head_schema_matches_the_models(database_url: str) -> None:
    store = CaseStore.from_url(database_url)
    with store.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_second_start_is_a_no_op_and_keeps_data(database_url: str) -> None:
    store = CaseStore.from_url(database_url)
    with store.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE marker (x INTEGER)"))
    CaseStore.from_url(database_url)
    assert sa.inspect(store.engine).has_table("marker")


def test_database_from_before_migrations_is_adopted(database_url: str) -> None:
    """The walking skeleton made its tables with create_all and kept no revision: stamp, then upgrade."""
    engine = engine_at(database_url, "0001")
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE alembic_version"))
        connection.execute(
            sa.text(
                "INSERT INTO cases (kind, code, state, camera_id, zone, rule, class_name, confidence, box_x1, "
                "box_y1, box_x2, box_y2, first_seen, last_seen, created_at, updated_at, observations, "
                "model_version) VALUES ('exposed_garbage', '06010', 'auto_filed', 'cam', 'z', 'r', 'garbage', "
                "0.5, 0, 0, 1, 1, :t, :t, :t, :t, 1, '')"
            ),
            {"t": "2026-05-04 02:00:00"},
        )
    engine.dispose()
    store = CaseStore.from_url(database_url)
    [case] = store.list_cases()
    assert case.state_changed_at == case.created_at  # filled in by the migration
    assert case.source == "camera"


def test_unknown_revision_is_refused(database_url: str) -> None:
    store = CaseStore.from_url(database_url)
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(MigrationError, match="9999"):
        CaseStore.from_url(database_url)


def test_department_is_filled_in_from_the_audit_logs_dispatch_lines(database_url: str) -> None:
    """0003 adds `cases.department`; cases dispatched before it get the target of their last dispatch."""
    engine = engine_at(database_url, "0002")
    case_columns = (
        "kind, code, state, camera_id, zone, rule, class_name, confidence, box_x1, box_y1, box_x2, box_y2, "
        "first_seen, last_seen, created_at, updated_at, observations, model_version, source, state_changed_at"
    )
    with engine.begin() as connection:
        for camera in ("dispatched-twice", "never-dispatched"):
            connection.execute(
                sa.text(
                    f"INSERT INTO cases ({case_columns}) VALUES ('exposed_garbage', '06010', 'dispatched', :camera, "
                    "'z', 'r', 'garbage', 0.5, 0, 0, 1, 1, :t, :t, :t, :t, 1, '', 'camera', :t)"
                ),
                {"camera": camera, "t": "2026-05-04 02:00:00"},
            )
        ids = dict(connection.execute(sa.text("SELECT camera_id, id FROM cases")).all())
        for details in ('{"target": "sanitation-3"}', "{}", '{"target": "grid-baiyun-12"}'):
            connection.execute(
                sa.text(
                    "INSERT INTO case_audit (case_id, at, actor, action, from_state, to_state, comment, details) "
                    "VALUES (:case, :t, 'sup', 'dispatch', 'confirmed', 'dispatched', '', :details)"
                ),
                {"case": ids["dispatched-twice"], "t": "2026-05-04 03:00:00", "details": details},
            )
    engine.dispose()
    store = CaseStore.from_url(database_url)
    departments = {case.camera_id: case.department for case in store.list_cases()}
    assert departments == {"dispatched-twice": "grid-baiyun-12", "never-dispatched": None}
    assert [c.camera_id for c in store.list_cases(CaseFilter(department="grid-baiyun-12"))] == ["dispatched-twice"]


def test_0004_adds_first_box_and_also_seen_kinds_and_downgrades(database_url: str) -> None:
    """0004 adds `cases.first_box_*` (from the last box) and `cases.also_seen_kinds` ([]) in place: the cases'
    evidence and audit lines stay. Its downgrade drops them again."""
    engine = engine_at(database_url, "0003")
    case_columns = (
        "kind, code, state, camera_id, zone, rule, class_name, confidence, box_x1, box_y1, box_x2, box_y2, "
        "first_seen, last_seen, created_at, updated_at, observations, model_version, source, state_changed_at"
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"INSERT INTO cases ({case_columns}) VALUES ('exposed_garbage', '06010', 'auto_filed', 'cam', 'z', "
                "'r', 'garbage', 0.5, 10, 20, 30, 40, :t, :t, :t, :t, 1, '', 'camera', :t)"
            ),
            {"t": "2026-05-04 02:00:00"},
        )
        connection.execute(
            sa.text(
                "INSERT INTO evidence (case_id, role, key, sha256, size, content_type, uploaded, captured_at, "
                "created_at) VALUES (1, 'frame', 'cases/1/frame.jpg', :sha, 3, 'image/jpeg', true, :t, :t)"
            ),
            {"sha": "a" * 64, "t": "2026-05-04 02:00:00"},
        )
        connection.execute(
            sa.text(
                "INSERT INTO case_audit (case_id, at, actor, action, from_state, to_state, comment, details) "
                "VALUES (1, :t, 'camera:cam', 'file', NULL, 'auto_filed', '', '{}')"
            ),
            {"t": "2026-05-04 02:00:00"},
        )
    engine.dispose()
    store = CaseStore.from_url(database_url)
    [case] = store.list_cases()
    assert (case.box, case.also_seen_kinds, [e.key for e in case.evidence]) == (
        (10.0, 20.0, 30.0, 40.0),
        (),
        ["cases/1/frame.jpg"],
    )
    with store.engine.connect() as connection:
        first = connection.execute(sa.text("SELECT first_box_x1, first_box_y2 FROM cases")).one()
        assert tuple(first) == (10.0, 40.0)
        assert connection.execute(sa.text("SELECT count(*) FROM case_audit")).scalar() == 1

    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003")
    with store.engine.connect() as connection:
        assert current_revision(connection) == "0003"
        columns = {c["name"] for c in sa.inspect(connection).get_columns("cases")}
        assert not columns & {"first_box_x1", "first_box_y1", "first_box_x2", "first_box_y2", "also_seen_kinds"}
        assert connection.execute(sa.text("SELECT count(*) FROM evidence")).scalar() == 1
    store.engine.dispose()
    [again] = CaseStore.from_url(database_url).list_cases()  # and up again
    assert again.box == (10.0, 20.0, 30.0, 40.0) and again.also_seen_kinds == ()
