"""Two real `controlroom worker` processes on one PostgreSQL database, while events stream in:
each event is folded exactly once (the read model's position moves in one unbroken chain, never
back), and the read model equals a rebuild from zero with every run's counts exact."""

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
        "CONTROLROOM_PROJECTOR_BATCH": "50",  # many small batches: the two take turns
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
    store = audited
    workers = [start_worker(store.url, f"worker-{i}", tmp_path / f"worker-{i}.log") for i in (1, 2)]
    logs = [tmp_path / f"worker-{i}.log" for i in (1, 2)]
    try:
        wait_for(lambda: all(b"running read_model" in p.read_bytes() for p in logs), timeout=60)
        for _ in range(0, RUNS, RUNS_PER_BATCH):  # a stream of batches while both workers fold
            batch = [e for _ in range(RUNS_PER_BATCH) for e in a_run(rid())]
            assert not ingest_events(store, project.id, {"events": batch}, max_events=1000).rejected
            assert all(w.poll() is None for w in workers), [p.read_text() for p in logs]
        with store.read() as conn:
            head = log.head(conn)
        wait_for(lambda: _position(store) == head == _position(store, "notifications"), timeout=120)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(30) for w in workers]
    assert codes == [0, 0], [p.read_text() for p in logs]

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
        assert set(read_model_moves.scalars()) == {"worker-1", "worker-2"}  # both took turns
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


def _position(store: Store, name: str = "read_model") -> int:
    with store.read() as conn:
        return consumer.position(conn, name)
