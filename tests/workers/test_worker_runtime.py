"""The worker runtime on SQLite and PostgreSQL: consumers with positions of their own, their
delivery semantics, periodic jobs, the locks that keep each to one process at a time, and the
migration that kept the projector's position."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic import command
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, create_engine, select, text

from controlroom.accounts.projects import Project
from controlroom.projections import projector
from controlroom.projections.projector import Projector
from controlroom.store import log
from controlroom.store.engine import Store, _alembic_config
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import consumer_positions, runs
from controlroom.workers import consumer
from controlroom.workers.jobs import PeriodicJob
from controlroom.workers.runtime import Runtime, standard_runtime
from factories import rid, run_ended, run_started

# A table of the test's own, for a consumer whose effects are in the database.
seen = Table(
    "test_seen_events", MetaData(), Column("seq", Integer, primary_key=True), Column("type", String(32))
)


class Recorder(consumer.DatabaseConsumer):
    """Writes one row per event it consumes (a duplicate seq would fail the transaction)."""

    name = "recorder"

    def handle(self, conn: Connection, events: list[log.LoggedEvent]) -> None:
        conn.execute(seen.insert(), [{"seq": e.seq, "type": e.type} for e in events])


class Notifier(consumer.ExternalConsumer):
    """Delivers to a list; fails while ``failing`` (as a mail server that is down would)."""

    name = "notifier"

    def __init__(self, store: Store) -> None:
        super().__init__(store, batch=3)
        self.delivered: list[int] = []
        self.failing = False

    def deliver(self, events: list[log.LoggedEvent]) -> None:
        self.delivered.extend(e.seq for e in events)
        if self.failing:
            raise ConnectionError("the mail server is down")


@pytest.fixture
def recorder(store: Store) -> Iterator[Recorder]:
    seen.create(store.engine, checkfirst=True)
    with store.write() as conn:
        conn.execute(seen.delete())
    yield Recorder(store, batch=4)
    seen.drop(store.engine)


def send_runs(store: Store, project: Project, n: int) -> list[str]:
    ids = [rid() for _ in range(n)]
    events = [e for r in ids for e in (run_started(r), run_ended(r))]
    assert not ingest_events(store, project.id, {"events": events}, max_events=10_000).rejected
    return ids


def positions(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return dict(conn.execute(select(consumer_positions.c.name, consumer_positions.c.position)).all())


def head(store: Store) -> int:
    with store.read() as conn:
        return log.head(conn)


def test_each_consumer_follows_the_log_from_its_own_position(
    store: Store, project: Project, recorder: Recorder
) -> None:
    send_runs(store, project, 5)
    runtime = Runtime(store, [Projector(store, batch=3), recorder])
    while runtime.step():
        pass
    assert positions(store) == {"read_model": head(store), "recorder": head(store)}
    with store.read() as conn:
        assert conn.execute(select(seen.c.seq)).scalars().all() == list(range(1, head(store) + 1))
        assert conn.execute(select(runs.c.run_id)).all() != []


def test_rebuild_resets_only_the_read_model(store: Store, project: Project, recorder: Recorder) -> None:
    """A rebuild replays the log into the read model; other consumers (post-run evals) must not
    see the log again."""
    send_runs(store, project, 3)
    while recorder.run_once():
        pass
    Projector(store).catch_up()
    before = positions(store)
    assert Projector(store).rebuild() == head(store)
    assert positions(store) == before
    assert recorder.run_once() == 0  # nothing consumed twice


def test_a_database_consumer_that_fails_moves_neither_its_effects_nor_its_position(
    store: Store, project: Project, recorder: Recorder
) -> None:
    send_runs(store, project, 2)
    with store.write() as conn:  # seq 2 already recorded: the batch 1..4 fails on the duplicate
        conn.execute(seen.insert().values(seq=2, type="planted"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        recorder.run_once()
    with store.read() as conn:
        assert consumer.position(conn, "recorder") == 0
        assert conn.execute(select(seen.c.seq)).scalars().all() == [2]


def test_an_external_consumer_delivers_at_least_once(store: Store, project: Project) -> None:
    """Its position moves after delivery: a failed delivery is tried again, never skipped."""
    send_runs(store, project, 2)  # seqs 1..4
    notifier = Notifier(store)
    notifier.failing = True
    with pytest.raises(ConnectionError):
        notifier.run_once()
    notifier.failing = False
    assert notifier.run_once() == 3
    assert notifier.run_once() == 1
    assert notifier.run_once() == 0
    assert notifier.delivered == [1, 2, 3, 1, 2, 3, 4]
    assert positions(store)["notifier"] == 4


def test_a_failing_consumer_does_not_stop_the_others(
    store: Store, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    send_runs(store, project, 1)
    notifier = Notifier(store)
    notifier.failing = True
    runtime = Runtime(store, [notifier, Projector(store)])
    assert runtime.step() == 2
    assert runtime.step() == 0  # on PostgreSQL the batch is committed by the time the next pass ends
    assert positions(store) == {"read_model": 2}
    assert "consumer notifier failed" in caplog.text


def test_jobs_run_when_due_and_the_idle_ones_only_when_the_consumers_are_caught_up(
    store: Store, project: Project
) -> None:
    calls: list[str] = []

    def job(name: str) -> PeriodicJob:
        return PeriodicJob(name, 3600, lambda: calls.append(name) or 0, when_idle=name == "idle")

    send_runs(store, project, 1)
    runtime = Runtime(store, [Projector(store)], [job("always"), job("idle")])
    assert runtime.step() == 2
    assert calls == ["always"]  # the consumers had work: the idle job waits
    assert runtime.step() == 0
    assert calls == ["always", "idle"]
    assert runtime.step() == 0
    assert calls == ["always", "idle"]  # neither is due again for an hour


def test_the_sweepers_events_are_folded_in_the_same_pass(store: Store, project: Project) -> None:
    r = rid()
    assert not ingest_events(store, project.id, {"events": [run_started(r)]}, max_events=10).rejected
    runtime = standard_runtime(store, abandon_after_seconds=0)
    assert runtime.step() == 1  # run.started (the notifications consumer reads approval events only)
    # the sweeper found it quiet: its run.abandoned is folded at once (and queued for post-run evals)
    assert runtime.step() == 2
    assert runtime.step() == 0  # (on PostgreSQL committed by the end of the next pass)
    with store.read() as conn:
        assert conn.execute(select(runs.c.status)).scalar_one() == "abandoned"


def test_one_holder_of_a_lock_at_a_time_on_postgresql(store: Store) -> None:
    """A job or consumer held by one process is skipped by the others (SQLite: one writer anyway)."""
    with store.exclusive("job:demo") as first:
        assert first
        with store.exclusive("job:demo") as second, store.exclusive("job:other") as other:
            assert second == store.is_sqlite
            assert other
        with store.write() as conn:  # a transaction-scoped try sees the same lock
            assert store.try_lock(conn, "job:demo") == store.is_sqlite
    with store.exclusive("job:demo") as again:
        assert again


def test_migration_0002_keeps_the_projectors_position(db_url: str) -> None:
    """A database at 0001 with a folded read model keeps its position in consumer_positions."""
    with _empty_database(db_url) as url:
        store = Store(url)
        cfg = _alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(text("INSERT INTO projector_positions VALUES ('read_model', 42, 7)"))
        store.migrate()
        assert positions(store) == {"read_model": 42}
        store.dispose()


@contextmanager
def _empty_database(db_url: str) -> Iterator[str]:
    """``db_url`` itself on SQLite (a new file); on PostgreSQL a new database beside the session's
    (which is already at head), dropped afterwards."""
    if db_url.startswith("sqlite"):
        yield db_url
        return
    name = db_url.rsplit("/", 1)[1] + "_migration"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield db_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_streaming_projector_holds_its_lock_until_caught_up_or_for_a_while(
    store: Store, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the projector keeps its lock while batches stream (one batch is written while
    the next is folded), lets it go once caught up, and after HOLD_LOCK_SECONDS even if behind (a
    rebuild or another worker waits no longer than that)."""
    send_runs(store, project, 10)  # 20 events
    streaming = Projector(store, batch=3)
    assert streaming.run_once() == 3
    with store.exclusive(projector.LOCK) as free:
        assert not free  # held: the batch is in flight
    while streaming.run_once():
        pass
    with store.exclusive(projector.LOCK) as free:
        assert free
    assert positions(store) == {"read_model": head(store)}

    send_runs(store, project, 2)
    monkeypatch.setattr(projector, "HOLD_LOCK_SECONDS", 0.0)
    assert streaming.run_once() == 3  # written at once, and the lock let go, though 1 event is left
    with store.exclusive(projector.LOCK) as free:
        assert free
    assert positions(store) == {"read_model": head(store) - 1}
