"""Revision 0011 fills cost_hourly, runs_hourly and run_outcomes in for a store upgraded with runs in it, with the
projector's own fold: the same rows the projector keeps, so that it goes on from them (a run that
ends after the upgrade moves its share, never leaving a negative count), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import select

from controlroom.accounts.projects import Project
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store, _alembic_config
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import cost_hourly, run_outcomes, runs_hourly
from factories import BASE_TS, llm_usage, rid, run_ended, run_started, sid, span_ended, span_started

HOUR = 3600 * 10**9


def _to(store: Store, revision: str, *, up: bool) -> None:
    with store.engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, revision)


def _tables(store: Store) -> tuple[list[Any], list[Any], list[Any]]:
    with store.read() as conn:
        return tuple(  # type: ignore[return-value]
            [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (cost_hourly, runs_hourly, run_outcomes)
        )


def _send(store: Store, project: Project, events: list[dict[str, Any]]) -> None:
    ingest_events(store, project.id, {"events": events}, max_events=1000)
    Projector(store).catch_up()


def test_revision_0011_fills_the_hourly_tables_of_a_store_with_runs(store: Store, project: Project) -> None:
    done, wrapped, going = rid(), rid(), rid()
    call, wrapper, inner, open_call = sid(), sid(), sid(), sid()
    usage = {"provider": "openai", "model": "gpt-4o-mini", "usage": llm_usage()}
    _send(
        store,
        project,
        [
            run_started(done, ts=BASE_TS),
            span_started(done, call, ts=BASE_TS + 1, **usage),
            span_ended(done, call, ts=BASE_TS + 2, status="ok"),
            run_ended(done, ts=BASE_TS + 3),
            # a framework's span around the provider call: the call counted once, at its model
            run_started(wrapped, agent="research-agent", ts=BASE_TS + HOUR),
            span_started(wrapped, wrapper, ts=BASE_TS + HOUR + 1, provider="openai", model="gpt-4o"),
            span_started(wrapped, inner, ts=BASE_TS + HOUR + 2, parent_span_id=wrapper, **usage),
            span_ended(wrapped, inner, ts=BASE_TS + HOUR + 3, status="ok"),
            span_ended(wrapped, wrapper, ts=BASE_TS + HOUR + 4, status="ok", usage=llm_usage()),
            run_ended(wrapped, "failed", ts=BASE_TS + HOUR + 5),
            # still running at the upgrade, one call ended and one not
            run_started(going, agent="coding-agent", ts=BASE_TS + 2 * HOUR),
            span_started(going, open_call, ts=BASE_TS + 2 * HOUR + 1, **usage),
        ],
    )
    projected = _tables(store)
    assert all(projected)  # calls per hour, runs per hour, a run that succeeded
    _to(store, "0010", up=False)  # as a store before the hourly tables
    _to(store, "head", up=True)
    assert _tables(store) == projected  # what the projector had kept, to the row

    _send(  # the projector goes on from the filled tables: the run moves from running to succeeded
        store,
        project,
        [
            span_ended(going, open_call, ts=BASE_TS + 2 * HOUR + 2, status="ok"),
            run_ended(going, ts=BASE_TS + 2 * HOUR + 3),
        ],
    )
    after = _tables(store)
    assert all(n >= 0 for *_, n in after[1]) and all(r[-2] >= 0 for r in after[0])
    assert sum(n for _, g, *_, n in after[2] if g == "run") == 2  # done, and going once it ended
    Projector(store).rebuild()
    assert _tables(store) == after  # the same as folding the whole log again
