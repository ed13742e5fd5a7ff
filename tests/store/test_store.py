"""The store on SQLite and PostgreSQL: migrations, the append-only log, idempotency."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import OperationalError

from controlroom.accounts.projects import Project
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import events, metadata
from factories import rid, run_started, sid, span_ended, span_started


def test_migrations_create_exactly_the_declared_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert store.current_revision() == store.head_revision()


def test_migrate_is_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()
    assert store.current_revision() == store.head_revision()


def test_append_is_idempotent_by_event_id(store: Store, project: Project) -> None:
    r = rid()
    batch = [run_started(r), span_started(r, sid())]
    first = ingest_events(store, project.id, {"events": batch}, max_events=100)
    again = ingest_events(store, project.id, {"events": [*batch, batch[0]]}, max_events=100)
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (0, 3)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 2


def test_same_event_id_in_two_projects_is_two_events(store: Store, project: Project) -> None:
    from controlroom.accounts.projects import create_project

    with store.write() as conn:
        other = create_project(conn, name="other")
    e = run_started(rid())
    assert ingest_events(store, project.id, {"events": [e]}, max_events=10).accepted == 1
    assert ingest_events(store, other.id, {"events": [e]}, max_events=10).accepted == 1


def test_sequence_numbers_increase_in_append_order(store: Store, project: Project) -> None:
    r = rid()
    ids = []
    for _ in range(5):
        e = span_ended(r, sid())
        ids.append(e["id"])
        ingest_events(store, project.id, {"events": [e]}, max_events=10)
    with store.read() as conn:
        got = [row.event_id for row in conn.execute(select(events.c.event_id).order_by(events.c.seq))]
    assert got == ids


def test_bare_json_numbers_read_back_as_written(store: Store, project: Project) -> None:
    """SQLite gives columns declared JSON numeric affinity: a bare number comes back decoded. The
    store reads it as the number it was (a run whose inputs are 5 used to fail to load)."""
    import time

    from controlroom.projections.projector import Projector
    from controlroom.projections.queries import get_run

    run_id, now = "c" * 31 + "1", time.time_ns()
    events = [
        {"id": "n1", "type": "run.started", "run_id": run_id, "ts": now, "body": {"agent": "a", "inputs": 5}},
        {
            "id": "n2",
            "type": "span.recorded",
            "run_id": run_id,
            "ts": now,
            "body": {"span_id": "d" * 16, "name": "step", "input": 7, "output": 1.5, "ended_at": now},
        },
        {
            "id": "n3",
            "type": "run.ended",
            "run_id": run_id,
            "ts": now,
            "body": {"status": "succeeded", "output": 0},
        },
    ]
    assert ingest_events(store, project.id, {"events": events}, max_events=10).accepted == 3
    Projector(store).catch_up()
    with store.read() as conn:
        run = get_run(conn, project.id, run_id)
    assert (run.inputs, run.output) == (5, 0)
    (span,) = run.spans
    assert (span.input, span.output) == (7, 1.5)


def test_a_derived_write_skips_only_its_own_sync_on_sqlite(tmp_path: Path) -> None:
    """A derived transaction's commit does not wait for the disk; its connection is durable again
    for whatever it writes next, also after a derived transaction that failed."""
    store = Store(f"sqlite:///{tmp_path / 'derived.db'}")
    store.migrate()

    def settings(conn: Connection) -> tuple[int, int, int]:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        return (
            id(raw),
            raw.execute("PRAGMA synchronous").fetchone()[0],
            raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
        )

    try:
        with store.write(derived=True) as conn:
            inside = settings(conn)
            conn.execute(events.delete().where(events.c.seq < 0))
        assert inside[1:] == (1, 0)  # NORMAL, no checkpoint on commit
        with store.read() as conn:  # the pool hands the same connection back
            assert settings(conn) == (inside[0], 2, 1000)  # FULL, SQLite's default checkpoints
        with pytest.raises(OperationalError, match="no_such_column"), store.write(derived=True) as conn:
            assert settings(conn)[0] == inside[0]
            conn.exec_driver_sql("SELECT no_such_column FROM events")
        with store.read() as conn:
            assert settings(conn) == (inside[0], 2, 1000)
    finally:
        store.dispose()
