"""Two real `controlroom worker` processes on one PostgreSQL database, while events stream in and
the one folding is killed: each event is folded exactly once (the read model's position moves in
one unbroken chain, never back), and the read model equals a rebuild from zero with every run's
counts exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from controlroom.accounts.projects import Project
from controlroom.projections.projector import Projector
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import cost_daily, runs
from controlroom.workers import consumer
from factories import llm_usage, rid, run_ended, run_started, sid, span_ended, span_started
from tests_support import snapshot, wait_for

RUNS, RUNS_PER_BATCH, CALLS_PER_RUN = 240, 4, 3

# Every move of a consumer's position, in commit order (the consumer's lock serialises them), with
# the worker that made it (its connections' application_name).
AUDIT = """
CREATE TABLE test_position_moves (
    id serial PRIMARY KEY, name text, old_position bigint, new_position bigint, worker text);
CREATE FUNCTION test_record_move() RETURNS trigger AS $$
BEGIN
    INSERT INTO test_position_moves (name, old_position, new_position, worker) VALUES
        (NEW.name, CASE WHEN TG_OP = 'UPDATE' THEN OLD.position ELSE 0 END, NEW.position,
         current_setting('application_name'));
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER test_record_move AFTER INSERT OR UPDATE ON consumer_positions
    FOR EACH ROW EXECUTE FUNCTION test_record_move();
"""
NO_AUDIT = """
DROP TRIGGER IF EXISTS test_record_move ON consumer_positions;
DROP FUNCTION IF EXISTS test_record_move();
DROP TABLE IF EXISTS test_position_moves;
"""


@pytest.fixture
def audited(store: Store) -> Iterator[Store]:
    with store.write() as conn:
        conn.exec_driver_sql(NO_AUDIT)
        conn.exec_driver_sql(AUDIT)
    yield store
    with store.write() as conn:
        conn.exec_driver_sql(NO_AUDIT)


def start_worker(url: str, name: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONTROLROOM_PROJECTOR_BATCH": "50",  # many small batches: one is likely in flight at the kill
        "CONTROLROOM_WORKER_POLL_SECONDS": "0.01",
    }
    cmd = [sys.executable, "-m", "controlroom.cli", "worker", "--db", f"{url}?application_name={name}"]
    with log_path.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def a_run(run_id: str) -> list[dict[str, object]]:
    events = [run_started(run_id, tags=["stream"])]
    for _ in range(CALLS_PER_RUN):
        s = sid()
        events.append(span_started(run_id, s, kind="llm", provider="openai", model="gpt-4o"))
        events.append(span_ended(run_id, s, usage=llm_usage(1000, 100)))
    return [*events, run_ended(run_id)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_fold_every_event_exactly_once(audited: Store, project: Project, tmp_path: Path) -> None:
    """Both workers run while half the stream arrives; then the one folding is killed (SIGKILL, a
    batch possibly in flight) and the other takes over for the second half."""
    store = audited
    names = ("worker-1", "worker-2")
    logs = {n: tmp_path / f"{n}.log" for n in names}
    workers = {n: start_worker(store.url, n, logs[n]) for n in names}
    try:
        wait_for(lambda: all(b"running read_model" in p.read_bytes() for p in logs.values()), timeout=60)
        stream(store, project, RUNS // 2)
        folding = wait_for(lambda: _last_mover(store), timeout=60)
        workers[folding].kill()
        assert workers[folding].wait(30) == -signal.SIGKILL
        stream(store, project, RUNS - RUNS // 2)
        with store.read() as conn:
            head = log.head(conn)
        wait_for(lambda: _position(store) == head == _position(store, "notifications"), timeout=120)
        (survivor,) = set(names) - {folding}
        assert workers[survivor].poll() is None, logs[survivor].read_text()
    finally:
        for w in workers.values():
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        codes = {n: w.wait(30) for n, w in workers.items()}
    assert codes[survivor] == 0, logs[survivor].read_text()

    with store.read() as conn:
        for name in ("read_model", "notifications"):  # each consumer on its own chain
            moves = conn.execute(
                text(
                    "SELECT old_position, new_position, worker FROM test_position_moves"
                    " WHERE name = :name ORDER BY id"
                ),
                {"name": name},
            ).all()
            # an unbroken chain from 0 to the head: no event handled twice, none skipped, never back
            assert [m.old_position for m in moves] == [0, *(m.new_position for m in moves[:-1])], name
            assert all(m.new_position > m.old_position for m in moves)
            assert moves[-1].new_position == head
        read_model_moves = conn.execute(
            text("SELECT worker FROM test_position_moves WHERE name = 'read_model'")
        )
        assert set(read_model_moves.scalars()) == set(names)  # both took turns
        # every run complete and counted once
        per_run = conn.execute(
            select(runs.c.status, runs.c.span_count, runs.c.llm_count, runs.c.input_tokens, runs.c.cost_nanos)
        ).all()
        assert len(per_run) == RUNS
        assert set(per_run) == {("succeeded", CALLS_PER_RUN, CALLS_PER_RUN, 3000, per_run[0].cost_nanos)}
        assert per_run[0].cost_nanos > 0
        total = conn.execute(select(func.sum(cost_daily.c.cost_nanos))).scalar_one()
        assert total == RUNS * per_run[0].cost_nanos
    folded = snapshot(store)
    assert Projector(store).rebuild() == head
    assert snapshot(store) == folded


def stream(store: Store, project: Project, n_runs: int) -> None:
    """Ingest ``n_runs`` runs, a few per batch, as fast as the log takes them."""
    for _ in range(0, n_runs, RUNS_PER_BATCH):
        batch = [e for _ in range(RUNS_PER_BATCH) for e in a_run(rid())]
        assert not ingest_events(store, project.id, {"events": batch}, max_events=1000).rejected


def _last_mover(store: Store) -> str | None:
    with store.read() as conn:
        return conn.execute(
            text("SELECT worker FROM test_position_moves WHERE name = 'read_model' ORDER BY id DESC LIMIT 1")
        ).scalar()


def _position(store: Store, name: str = "read_model") -> int:
    with store.read() as conn:
        return consumer.position(conn, name)
