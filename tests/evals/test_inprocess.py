"""The SDK inside a controlroom process (what the LLM judge records with): runs and spans reach the
run log, paid calls are reserved and settled in the budget ledger and refused as over HTTP, and a
store that cannot be reached refuses calls (fail closed) while events wait in the spool. SQLite
and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import controlroom
from controlroom.accounts.projects import Project
from controlroom.budget import ledger
from controlroom.evals.inprocess import local_client
from controlroom.evals.loading import load_runs
from controlroom.projections.projector import Projector
from controlroom.sdk._client import get_client, recording_with
from controlroom.store.engine import Store
from controlroom.store.tables import reservations

MODEL = "gpt-4o-mini"  # $0.15 / M input tokens, $0.60 / M output tokens (genai-prices)


def test_runs_reach_the_log_and_calls_the_ledger(store: Store, project: Project, tmp_path: Path) -> None:
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent=None, cap_usd="1")
    with local_client(store, project.id, spool_dir=tmp_path / "spool", strict=True) as client:
        assert get_client() is None
        with recording_with(client):
            assert get_client() is client
            with controlroom.run("judge:x", inputs={"q": 1}) as run:
                with controlroom.llm("openai", MODEL, input="Is it?", max_tokens=100) as call:
                    call.record(output="Yes.", input_tokens=40, output_tokens=10)
                run.set_output("done")
        assert get_client() is None
    # the client was shut down when its block ended: everything it recorded is in the log
    Projector(store).catch_up()
    with store.read() as conn:
        recorded = load_runs(conn, project.id, [run.run_id])[run.run_id]
        [reserved] = conn.execute(select(reservations)).all()
    assert (recorded.agent, recorded.status, recorded.output) == ("judge:x", "succeeded", "done")
    assert recorded.cost_nanos == 40 * 150 + 10 * 600
    assert (reserved.agent, reserved.state, reserved.actual_nanos) == (
        "judge:x",
        "settled",
        40 * 150 + 10 * 600,
    )
    assert reserved.run_id == run.run_id
    assert recorded.spans[0].attributes["controlroom.reservation_id"] == reserved.id


def test_a_refused_call_raises_budget_exceeded_before_it_is_made(
    store: Store, project: Project, tmp_path: Path
) -> None:
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent="judge:x", cap_usd="0.00001")
    made = []
    with (
        local_client(store, project.id, spool_dir=tmp_path / "spool", strict=True) as client,
        recording_with(client),
        pytest.raises(controlroom.BudgetExceeded) as refused,
        controlroom.run("judge:x"),
        controlroom.llm("openai", MODEL, input="Is it?", max_tokens=100),
    ):
        made.append(1)
    assert made == []
    e = refused.value
    assert (e.reason, e.agent, e.cap_usd) == ("cap_reached", "judge:x", "0.00001")
    assert e.retry_after is not None and e.resets_at is not None
    assert "for agent 'judge:x' would be crossed" in str(e)


def test_an_unreachable_store_refuses_calls_and_keeps_events_for_later(
    store: Store, project: Project, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gone = Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")  # nothing listens on port 1
    try:
        with (
            local_client(gone, project.id, spool_dir=spool, strict=True, flush_timeout=0.5) as client,
            recording_with(client),
            pytest.raises(controlroom.BudgetExceeded) as refused,
            controlroom.run("judge:x") as run,
            controlroom.llm("openai", MODEL, max_tokens=10),
        ):
            pytest.fail("the call must not be made")
    finally:
        gone.dispose()
    assert refused.value.reason == "ledger_unavailable"
    assert list(spool.glob("*.batch.gz"))  # the run's events, kept on disk

    # the next client of the spool (the store back) sends them first
    with local_client(store, project.id, spool_dir=spool, strict=True):
        pass
    assert not list(spool.glob("*.batch.gz"))
    Projector(store).catch_up()
    with store.read() as conn:
        recorded = load_runs(conn, project.id, [run.run_id])[run.run_id]
    assert recorded.status == "failed" and recorded.error is not None
    assert recorded.error.type == "BudgetExceeded"
