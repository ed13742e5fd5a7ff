"""The budget ledger on SQLite and PostgreSQL: no overshoot under concurrency (threads and
processes), the cap actually reached, DST-correct days, crashes, duplicate settles, fail closed."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
import time
from datetime import date
from typing import Any

import agent_process
import pytest
from sqlalchemy import func, select, text

from conftest import LiveServer, free_port
from controlroom.accounts.projects import Project, create_project, get_project
from controlroom.budget import ledger
from controlroom.budget.days import utc_seconds
from controlroom.budget.ledger import BudgetRefused
from controlroom.cost import Usage
from controlroom.cost.overrides import PricerCache, set_price
from controlroom.errors import Conflict, NotFound, ServiceUnavailable
from controlroom.money import to_usd
from controlroom.projections.projector import Projector
from controlroom.store import ledger as store_ledger
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.ledger import LedgerBusy, LedgerConnections
from controlroom.store.tables import budget_days, reservations
from controlroom.workers.runtime import standard_runtime
from factories import llm_usage, rid, run_started, sid, span_ended, span_started
from tests_support import wait_for

# A private model at $1 per million input and $1 per million output tokens: a call reserving
# 1,000 input + 4,000 output tokens holds exactly $0.005.
MODEL = "acme-1"


def priced(store: Store, project: Project) -> PricerCache:
    with store.write() as conn:
        set_price(conn, project=project, model=MODEL, provider=None, input_per_mtok="1", output_per_mtok="1")
    return PricerCache()


def cap(store: Store, project: Project, usd: str, agent: str | None = None, tz: str | None = None) -> None:
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent=agent, cap_usd=usd, timezone=tz)


def reserve(store: Store, project: Project, pricer: PricerCache, **kw: Any) -> ledger.Reservation:
    args = {
        "agent": "bot",
        "provider": None,
        "model": MODEL,
        "input_tokens": 1000,
        "max_output_tokens": 4000,
        **kw,
    }
    return ledger.reserve(store, project=project, pricers=pricer, **args)


def totals(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        row = conn.execute(
            select(
                func.coalesce(func.sum(budget_days.c.settled_nanos), 0),
                func.coalesce(func.sum(budget_days.c.held_nanos), 0),
            )
        ).one()
    return int(row[0]), int(row[1])


def caller(
    store: Store, project: Project, pricer: PricerCache, granted: list[int], refused: list[str]
) -> None:
    """Reserve $0.05 (1,000 + 49,000 tokens), 'call', settle at $0.03; until refused for good."""
    while True:
        try:
            r = reserve(store, project, pricer, max_output_tokens=49_000)
        except BudgetRefused as e:
            refused.append(e.extra["reason"])
            if e.extra["reason"] == "cap_reached":
                return
            continue
        out = ledger.settle(
            store,
            project=project,
            pricers=pricer,
            reservation_id=r.reservation_id,
            outcome="completed",
            usage=Usage(input_tokens=1000, output_tokens=29_000),
        )
        granted.append(out.actual_nanos)


def test_64_threads_never_overshoot_and_reach_the_cap(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "1.00")
    granted: list[int] = []
    refused: list[str] = []
    threads = [
        threading.Thread(target=caller, args=(store, project, pricer, granted, refused)) for _ in range(64)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settled, held = totals(store)
    assert held == 0
    assert settled == sum(granted) <= 10**9  # never over $1.00
    # reached: what is left is less than one more call's hold ($0.05)
    assert 10**9 - settled < 50_000_000
    assert refused.count("cap_reached") == 64


def test_64_callers_in_separate_processes_never_overshoot(live: LiveServer) -> None:
    """Eight agent processes of eight threads each, against one server, over HTTP."""
    with live.store.read() as conn:
        project = get_project(conn, name="acme")
    assert project is not None
    priced(live.store, project)
    cap(live.store, project, "1.00")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=agent_process.run, args=(live.url, live.key, 8, out)) for _ in range(8)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    settled, held = totals(live.store)
    assert held == 0 and settled == sum(results) <= 10**9
    assert 10**9 - settled < 50_000_000


def test_refusal_reasons_and_figures(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "0.012")
    first = reserve(store, project, pricer)
    second = reserve(store, project, pricer)
    assert first.hold_nanos == second.hold_nanos == 5_000_000
    with pytest.raises(BudgetRefused) as held_back:
        reserve(store, project, pricer)
    e = held_back.value
    assert e.status == 402 and e.code == "daily_cost_cap_reached"
    assert e.extra["reason"] == "held_by_in_flight_calls"
    assert (
        e.extra["cap_usd"],
        e.extra["settled_usd"],
        e.extra["held_usd"],
        e.extra["requested_usd"],
        e.extra["remaining_usd"],
    ) == ("0.012", "0", "0.01", "0.005", "0.002")
    assert "Retry-After" in e.headers()
    for r in (first, second):
        ledger.settle(
            store, project=project, pricers=pricer, reservation_id=r.reservation_id, outcome="unknown"
        )
    with pytest.raises(BudgetRefused) as full:
        reserve(store, project, pricer)
    assert full.value.extra["reason"] == "cap_reached" and full.value.extra["settled_usd"] == "0.01"


def test_an_unpriced_model_is_refused_with_how_to_price_it(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "10")
    with pytest.raises(BudgetRefused) as refused:
        reserve(store, project, pricer, model="secret-model-9")
    assert refused.value.extra["reason"] == "unpriced_model"
    assert "controlroom prices set --project acme --model secret-model-9" in refused.value.detail


def test_no_budget_means_no_hold(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    assert reserve(store, project, pricer, model="secret-model-9").reservation_id is None


def test_agent_budget_and_project_budget_both_apply(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    cap(store, project, "0.006", agent="bot")
    reserve(store, project, pricer)
    with pytest.raises(BudgetRefused) as refused:
        reserve(store, project, pricer)
    assert "agent 'bot'" in refused.value.detail
    reserve(store, project, pricer, agent="other-bot")  # only the project's cap applies to it


def test_settle_is_idempotent_and_release_frees_the_hold(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    r = reserve(store, project, pricer).reservation_id
    once = ledger.settle(
        store,
        project=project,
        pricers=pricer,
        reservation_id=r,
        outcome="completed",
        usage=Usage(input_tokens=500, output_tokens=500),
    )
    twice = ledger.settle(store, project=project, pricers=pricer, reservation_id=r, outcome="unknown")
    assert (
        once == twice == ledger.Settlement(r, state="settled", actual_nanos=1_000_000, hold_nanos=5_000_000)
    )
    assert totals(store) == (1_000_000, 0)
    released = reserve(store, project, pricer).reservation_id
    out = ledger.settle(
        store, project=project, pricers=pricer, reservation_id=released, outcome="failed_before_generation"
    )
    assert out.state == "released" and totals(store) == (1_000_000, 0)


def test_a_crash_between_reserve_and_settle_settles_at_the_hold(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    r = reserve(store, project, pricer, hold_seconds=60).reservation_id
    assert ledger.expire_holds(store) == 0  # not yet
    import time

    assert ledger.expire_holds(store, now_ns=time.time_ns() + 61 * 10**9) == 1
    assert totals(store) == (5_000_000, 0)  # never dropped to zero
    with store.read() as conn:
        assert (
            conn.execute(select(reservations.c.state).where(reservations.c.id == r)).scalar_one() == "expired"
        )
    # the process is gone: whatever arrives later saying "unknown" changes nothing
    late = ledger.settle(store, project=project, pricers=pricer, reservation_id=r, outcome="unknown")
    assert late.state == "expired" and totals(store) == (5_000_000, 0)


def test_a_call_that_outlasted_its_hold_is_charged_what_it_cost_when_it_settles(
    store: Store, project: Project
) -> None:
    """A long call's hold expired and was charged in full; its settlement, arriving later, replaces
    that charge with the call's actual cost (once: a second settlement changes nothing)."""
    pricer = priced(store, project)
    cap(store, project, "1")
    cap(store, project, "1", agent="bot")
    r = reserve(store, project, pricer, hold_seconds=1, now_ns=time.time_ns() - 2 * 10**9).reservation_id
    assert ledger.expire_holds(store) == 1
    assert totals(store) == (2 * 5_000_000, 0)  # the full hold, on both budgets
    usage = Usage(input_tokens=1000, output_tokens=1000)
    late = ledger.settle(
        store, project=project, pricers=pricer, reservation_id=r, outcome="completed", usage=usage
    )
    assert late == ledger.Settlement(r, state="settled", actual_nanos=2_000_000, hold_nanos=5_000_000)
    assert totals(store) == (2 * 2_000_000, 0)
    again = ledger.settle(
        store, project=project, pricers=pricer, reservation_id=r, outcome="failed_before_generation"
    )
    assert again == late and totals(store) == (2 * 2_000_000, 0)


def test_day_rolls_over_at_local_midnight_across_dst(store: Store) -> None:
    with store.write() as conn:
        ny = create_project(conn, name="ny", timezone="America/New_York")
    pricer = priced(store, ny)
    cap(store, ny, "0.005")
    # 2026-03-08 is the spring-forward day in New York: it is 23 hours long.
    before_midnight = 1_772_945_940 * 10**9  # 2026-03-08T04:59:00Z = 2026-03-07 23:59 EST
    after_midnight = 1_772_946_060 * 10**9  # 2026-03-08T05:01:00Z = 2026-03-08 00:01 EST
    r = reserve(store, ny, pricer, now_ns=before_midnight)
    assert r.budgets[0].day == date(2026, 3, 7)
    assert utc_seconds(r.budgets[0].resets_at_ns) == "2026-03-08T05:00:00Z"
    with pytest.raises(BudgetRefused):
        reserve(store, ny, pricer, now_ns=before_midnight + 30 * 10**9)
    r2 = reserve(store, ny, pricer, now_ns=after_midnight)  # a new day, a new cap
    assert r2.budgets[0].day == date(2026, 3, 8)
    assert utc_seconds(r2.budgets[0].resets_at_ns) == "2026-03-09T04:00:00Z"  # EDT from 03:00 on: UTC-4


def test_spend_seen_only_in_traces_counts_against_the_cap(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "0.01")
    r, s = rid(), sid()
    ingest_events(
        store,
        project.id,
        {
            "events": [
                run_started(r, agent="bot"),
                span_started(r, s, model=MODEL),
                span_ended(r, s, usage=llm_usage(4000, 4000)),  # $0.008, made without a guard
            ]
        },
        max_events=10,
    )
    Projector(store).catch_up()
    with pytest.raises(BudgetRefused) as refused:
        reserve(store, project, pricer)
    assert refused.value.extra["settled_usd"] == "0.008"
    assert refused.value.extra["unguarded_usd"] == "0.008"
    assert refused.value.extra["reason"] == "cap_reached"


def test_a_deleted_budget_leaves_nothing_behind(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "0.006")
    reserve(store, project, pricer)
    with store.write() as conn:
        ledger.delete_budget(conn, project_id=project.id, agent="")
    cap(store, project, "0.006")  # on SQLite it may get the same id again
    reserve(store, project, pricer)  # a fresh day: the old hold is not carried over


def test_changing_a_cap_keeps_its_timezone(store: Store, project: Project) -> None:
    cap(store, project, "1", tz="Asia/Tokyo")
    cap(store, project, "2")
    with store.read() as conn:
        b = ledger.get_budget(conn, project_id=project.id, agent="")
    assert b is not None and (b.cap_nanos, b.timezone) == (2 * 10**9, "Asia/Tokyo")


def test_a_ledger_call_that_must_not_wait_does_nothing_while_the_database_is_busy(
    store: Store, project: Project
) -> None:
    """The server's event loop reserves with wait=False: on SQLite it runs at once when the write
    lock is free, and raises LedgerBusy — having held nothing — when another writer has it (the
    server then waits in a thread). PostgreSQL never runs a ledger call on the event loop."""
    pricer = priced(store, project)
    cap(store, project, "1")
    if not store.is_sqlite:
        with pytest.raises(LedgerBusy):
            reserve(store, project, pricer, wait=False)
        assert totals(store) == (0, 0)
        return
    blocker = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(LedgerBusy):
        reserve(store, project, pricer, wait=False)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert totals(store) == (0, 0)
    r = reserve(store, project, pricer, wait=False).reservation_id
    out = ledger.settle(
        store, project=project, pricers=pricer, reservation_id=r, outcome="unknown", wait=False
    )
    assert out.state == "settled" and totals(store) == (5_000_000, 0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_ledger_connection_leaves_checkpoints_to_a_background_thread(
    store: Store, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint copies the WAL into the database file and waits for the disk: not something
    to do on the event loop, so the ledger's own connection never does it on commit; every
    CHECKPOINT_EVERY (store.ledger) commits a thread does. What is in the database file itself (read with
    immutable=1, which ignores the WAL) shows when a checkpoint has run."""
    monkeypatch.setattr(store_ledger, "CHECKPOINT_EVERY", 6)
    ran_on: list[str] = []
    checkpoint = LedgerConnections.checkpoint

    def recorded(self: LedgerConnections) -> None:
        checkpoint(self)
        ran_on.append(threading.current_thread().name)

    monkeypatch.setattr(LedgerConnections, "checkpoint", recorded)
    pricer = priced(store, project)
    cap(store, project, "1")
    path = store.engine.url.database or ""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def in_database_file() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM reservations").fetchone()[0])

    for _ in range(5):
        reserve(store, project, pricer, wait=False)
    assert store.ledger_connections.connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert in_database_file() == 0  # five commits, all still in the WAL only
    reserve(store, project, pricer, wait=False)  # the sixth commit starts a checkpoint
    wait_for(lambda: ran_on)
    assert ran_on == ["controlroom-checkpoint"]  # not the thread that committed
    assert in_database_file() == 6


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_ledger_connection_that_died_idle_is_replaced(store: Store, project: Project) -> None:
    """A database restart or an idle timeout kills the pooled ledger connections: the next call
    takes a new one instead of failing (its BEGIN fails before anything is done)."""
    pricer = priced(store, project)
    cap(store, project, "1")
    reserve(store, project, pricer)
    with store.read() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'controlroom-ledger' AND datname = current_database()"
            )
        ).scalar_one()
    assert killed >= 1
    reserve(store, project, pricer)
    assert totals(store) == (0, 10_000_000)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_unreachable_ledger_database_is_service_unavailable(store: Store, project: Project) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    away = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")  # nothing listens
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        reserve(away, project, pricer)
    away.dispose()


def test_a_refusal_is_explained_from_inside_the_ledger_transaction(
    store: Store, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The figures of a refusal are read on the ledger's own connection, before it rolls back: a
    refusal on the server's event loop never waits for a pooled connection (once a cap is reached,
    every reservation is refused)."""
    pricer = priced(store, project)
    cap(store, project, "0.006")
    reserve(store, project, pricer)

    def no_pool() -> None:
        raise AssertionError("a refusal must not need another connection")

    monkeypatch.setattr(store, "read", no_pool)
    monkeypatch.setattr(store, "write", no_pool)
    with pytest.raises(BudgetRefused) as refused:
        reserve(store, project, pricer, wait=False) if store.is_sqlite else reserve(store, project, pricer)
    assert refused.value.extra["reason"] == "held_by_in_flight_calls"
    assert (refused.value.extra["held_usd"], refused.value.extra["requested_usd"]) == ("0.005", "0.005")
    with pytest.raises(BudgetRefused) as unpriced:
        reserve(store, project, pricer, model="mystery-model")
    assert unpriced.value.extra["reason"] == "unpriced_model" and unpriced.value.extra["held_usd"] == "0.005"
    monkeypatch.undo()
    assert totals(store) == (0, 5_000_000)


def test_expiring_many_holds_at_once_settles_each_day_row_by_the_sum(store: Store, project: Project) -> None:
    """Hold expiry settles a batch of reservations in one transaction, moving amounts per budget
    day in (budget, day) order — the order reservations lock them in."""
    pricer = priced(store, project)
    cap(store, project, "1")
    cap(store, project, "1", agent="bot")
    for _ in range(3):
        reserve(store, project, pricer, hold_seconds=1)
    assert totals(store) == (0, 2 * 3 * 5_000_000)  # three holds on two budgets
    assert ledger.expire_holds(store, now_ns=time.time_ns() + 2 * 10**9) == 3
    assert totals(store) == (2 * 3 * 5_000_000, 0)


def test_a_traced_call_counts_as_guarded_only_under_a_reservation_that_exists(
    store: Store, project: Project
) -> None:
    """A span naming a reservation of the ledger is not counted again as unguarded spend; one
    naming a reservation that does not exist (made up, another project's, or lost by the ledger)
    is: the cap still sees its cost."""
    pricer = priced(store, project)
    cap(store, project, "1")
    real = reserve(store, project, pricer).reservation_id
    with store.write() as conn:
        other = create_project(conn, name="other")
    priced(store, other)
    cap(store, other, "1")
    elsewhere = reserve(store, other, PricerCache()).reservation_id

    def traced_call(reservation: str) -> list[dict[str, Any]]:
        r, s = rid(), sid()
        return [
            run_started(r, agent="bot"),
            span_started(r, s, model=MODEL, attributes={"controlroom.reservation_id": reservation}),
            span_ended(r, s, usage=llm_usage(1000, 1000)),  # $0.002
        ]

    events = traced_call(real) + traced_call("f" * 32) + traced_call(elsewhere)
    ingest_events(store, project.id, {"events": events}, max_events=100)
    Projector(store).catch_up()

    def unguarded_usd() -> str:
        with store.read() as conn:
            b = ledger.get_budget(conn, project_id=project.id, agent="")
            assert b is not None
            return to_usd(ledger.status(conn, b).unguarded_nanos)

    assert unguarded_usd() == "0.004"  # the made-up id's call and the other project's, not the real one
    Projector(store).rebuild()
    assert unguarded_usd() == "0.004"  # a rebuild of the read model comes to the same figure


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_ledger_call_waits_for_the_write_lock_then_gives_up_with_a_503(
    store: Store, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    monkeypatch.setattr(store_ledger, "LOCK_TIMEOUT", 0.2)
    blocker = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ServiceUnavailable, match="stayed locked"):
            reserve(store, project, pricer)
        got: list[dict[str, Any]] = []
        waiter = threading.Thread(target=lambda: got.append(reserve(store, project, pricer)))
        monkeypatch.setattr(store_ledger, "LOCK_TIMEOUT", 30.0)
        waiter.start()
        wait_for(lambda: store.ledger_connections.lock.locked())  # waiting for the write lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    waiter.join(10)
    assert got and got[0].hold_nanos == 5_000_000  # taken as soon as it was free
    assert totals(store) == (0, 5_000_000)


def test_a_reservation_sent_again_near_the_cap_is_answered_not_refused(
    store: Store, project: Project
) -> None:
    """Room for one hold only: the retry of a granted reservation must find it, not be refused."""
    pricer = priced(store, project)
    cap(store, project, "0.008")
    first = reserve(store, project, pricer, reservation_id="c3" * 16)
    assert reserve(store, project, pricer, reservation_id="c3" * 16) == first
    assert totals(store) == (0, 5_000_000)


def test_a_release_that_overtakes_its_reservation_makes_it_hold_nothing(
    store: Store, project: Project
) -> None:
    """The client gave up waiting and released the id while its reservation was still queued: the
    reservation, arriving after, is refused (409) and holds nothing."""
    pricer = priced(store, project)
    cap(store, project, "1")
    out = ledger.settle(
        store, project=project, pricers=pricer, reservation_id="d4" * 16, outcome="failed_before_generation"
    )
    assert out == ledger.Settlement("d4" * 16, state="released", actual_nanos=0, hold_nanos=0)
    with pytest.raises(Conflict, match="released before it was reserved"):
        reserve(store, project, pricer, reservation_id="d4" * 16)
    assert totals(store) == (0, 0)
    for outcome in ("completed", "unknown"):  # nothing to charge for an id never reserved
        with pytest.raises(NotFound):
            ledger.settle(store, project=project, pricers=pricer, reservation_id="e5" * 16, outcome=outcome)


def test_expired_holds_are_settled_while_the_projector_is_behind(
    store: Store, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    pricer = priced(store, project)
    cap(store, project, "1")
    reserve(store, project, pricer, hold_seconds=1, now_ns=time.time_ns() - 2 * 10**9)  # expired 1 s ago
    worker = standard_runtime(store, hold_seconds=1)
    projector = worker.consumers["read_model"]
    monkeypatch.setattr(projector, "run_once", lambda: 5000)  # always a full batch to fold
    assert worker.step() == 5000
    assert totals(store) == (5_000_000, 0)


def test_the_same_reservation_sent_by_many_threads_at_once_holds_once(store: Store, project: Project) -> None:
    """Concurrent copies of one request (retries racing the original): one hold, one answer for all."""
    pricer = priced(store, project)
    cap(store, project, "0.008")  # room for one hold: a copy that held again would be refused
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def send() -> None:
        start.wait()
        try:
            answers.append(reserve(store, project, pricer, reservation_id="f6" * 16))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(answers) == 16
    assert all(a == answers[0] for a in answers)
    assert totals(store) == (0, 5_000_000)
