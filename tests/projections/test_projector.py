"""The projector on SQLite and PostgreSQL: out-of-order arrival, rebuild == incremental, concurrent
writers, run semantics and cost rollups."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from controlroom.accounts import projects
from controlroom.accounts.projects import Project
from controlroom.budget import ledger
from controlroom.cost.overrides import PricerCache
from controlroom.projections.projector import Projector
from controlroom.projections.queries import daily_costs, get_run
from controlroom.server.routers.runs import costs_json, run_json
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import runs, spans
from controlroom.workers.sweeper import sweep_abandoned
from factories import BASE_TS, event, llm_usage, rid, run_ended, run_started, sid, span_ended, span_started
from tests_support import snapshot

MS = 10**6


def send(store: Store, project: Project, events: list[dict[str, Any]]) -> None:
    result = ingest_events(store, project.id, {"events": events}, max_events=100_000)
    assert not result.rejected, result.rejected


def folded_run(store: Store, project: Project, run_id: str) -> dict[str, Any]:
    """The run as the read model shows it once the projector has caught up."""
    Projector(store).catch_up()
    with store.read() as conn:
        return run_json(get_run(conn, project.id, run_id))


def all_time_costs(conn: Connection, project_id: int) -> dict[str, Any]:
    return costs_json(
        daily_costs(conn, project_id, "UTC", since="2000-01-01", until="2100-01-01", group_by=())
    )


def a_run(run_id: str, t0: int = BASE_TS, *, fail: bool = False) -> list[dict[str, Any]]:
    """An agent run: a root agent span, an LLM call that times out, its retry, a tool call."""
    root, call1, call2, tool = sid(), sid(), sid(), sid()
    chat = {"name": "chat", "parent_span_id": root, "provider": "openai", "model": "gpt-4o"}
    # the tool call and the agent around it end alike: both fail, or both succeed
    end: dict[str, Any] = (
        {"status": "error", "error": {"type": "KeyError", "message": "order 42"}} if fail else {}
    )
    return [
        run_started(run_id, ts=t0, environment="prod", tags=["beta"]),
        span_started(run_id, root, kind="agent", name="agent", ts=t0 + 1 * MS),
        span_started(run_id, call1, **chat, attempt=1, ts=t0 + 2 * MS),
        span_ended(
            run_id,
            call1,
            status="error",
            error={"type": "TimeoutError", "message": "read timed out"},
            ts=t0 + 30 * MS,
        ),
        span_started(run_id, call2, **chat, attempt=2, retry_of=call1, ts=t0 + 31 * MS),
        span_ended(run_id, call2, usage=llm_usage(1000, 200, cache_read_tokens=400), ts=t0 + 40 * MS),
        span_started(run_id, tool, kind="tool", name="lookup_order", parent_span_id=root, ts=t0 + 41 * MS),
        span_ended(run_id, tool, ts=t0 + 45 * MS, **end),
        span_ended(run_id, root, ts=t0 + 46 * MS, **end),
        run_ended(run_id, "failed", ts=t0 + 47 * MS)
        if fail
        else run_ended(run_id, "succeeded", output={"answer": "shipped"}, ts=t0 + 47 * MS),
    ]


def test_run_timeline_retries_and_cost(store: Store, project: Project) -> None:
    r = rid()
    send(store, project, a_run(r))
    run = folded_run(store, project, r)
    assert run["status"] == "succeeded"
    assert run["counts"] == {"span": 4, "llm": 2, "tool": 1, "retry": 1, "fallback": 0, "error": 1}
    # gpt-4o: $2.50/M input, $1.25/M cached input, $10/M output
    expected = (600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6
    assert float(run["cost_usd"]) == pytest.approx(expected, abs=1e-12)
    assert run["usage"]["input_tokens"] == 1000 and run["usage"]["cache_read_tokens"] == 400
    root = run["spans"][0]
    assert [c["name"] for c in root["children"]] == ["chat", "chat", "lookup_order"]
    retry = root["children"][1]
    assert retry["attempt"] == 2 and retry["retry_of"] == root["children"][0]["span_id"]
    assert root["children"][0]["error"] == {"type": "TimeoutError", "message": "read timed out"}


def test_failed_run_points_at_the_failing_span(store: Store, project: Project) -> None:
    r = rid()
    evs = a_run(r, fail=True)
    send(store, project, evs)
    run = folded_run(store, project, r)
    tool_id = evs[6]["body"]["span_id"]
    assert run["status"] == "failed"
    assert run["failing_span_id"] == tool_id
    assert run["error"] == {"type": "KeyError", "message": "order 42"}


def test_run_ended_names_its_failing_span_and_error(store: Store, project: Project) -> None:
    r, s = rid(), sid()
    send(
        store,
        project,
        [
            run_started(r),
            span_started(r, s, kind="llm"),
            span_ended(r, s, status="error", error={"type": "APITimeoutError", "message": "timed out"}),
            run_ended(r, "failed", failing_span_id=s, error={"type": "AgentError", "message": "gave up"}),
        ],
    )
    run = folded_run(store, project, r)
    assert run["failing_span_id"] == s
    assert run["error"] == {"type": "AgentError", "message": "gave up"}


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_out_of_order_arrival_gives_the_in_order_result(store: Store, project: Project, order: str) -> None:
    """Span before its run, child before its parent, end before start."""
    r_in, r_out = rid(), rid()
    evs = a_run(r_in, fail=True)
    send(store, project, evs)
    out_of_order = [dict(e, id=e["id"] + "-x", run_id=r_out) for e in evs]
    if order == "reversed":
        out_of_order.reverse()
    else:
        random.Random(7).shuffle(out_of_order)
    projector = Projector(store)
    projector.catch_up()
    for e in out_of_order:  # one event per projector pass: the worst case
        send(store, project, [e])
        projector.catch_up()
    with store.read() as conn:
        a, b = run_json(get_run(conn, project.id, r_in)), run_json(get_run(conn, project.id, r_out))
    for view in (a, b):
        view.pop("run_id")
    assert a == b


def random_history(
    rng: random.Random, n_runs: int, reservations: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Runs with retries, fallbacks, scores, unpriced models, missing starts and ends, re-sent
    events; some fallback calls name a budget reservation: one of ``reservations`` (in the ledger)
    or a made-up one (not in it, so its cost counts as unguarded spend)."""
    evs: list[dict[str, Any]] = []
    for i in range(n_runs):
        r = rid()
        t0 = BASE_TS - rng.randrange(0, 5 * 86_400) * 10**9
        run_evs = a_run(r, t0, fail=rng.random() < 0.3)
        if rng.random() < 0.2:
            run_evs.pop()  # never ended
        if rng.random() < 0.2:
            run_evs = run_evs[1:]  # run.started never arrives
        s = sid()
        guard = rng.choice([None, "made-up-" + rid()[:16], *reservations])
        run_evs += [
            span_started(
                r,
                s,
                name="fallback",
                provider="anthropic",
                model="claude-3-5-sonnet-20241022",
                fallback_from=run_evs[-2]["body"]["span_id"],
                ts=t0 + 50 * MS,
                **({"attributes": {"controlroom.reservation_id": guard}} if guard else {}),
            ),
            span_ended(
                r,
                s,
                usage=llm_usage(rng.randrange(0, 5000), rng.randrange(0, 900)),
                ts=t0 + 60 * MS,
                **({"cost_usd": "0.0123"} if i % 5 == 0 else {}),
            ),
            event("score.recorded", r, {"name": "helpful", "value": rng.random()}),
        ]
        if i % 7 == 0:
            u = sid()
            run_evs += [span_started(r, u, model="made-up-model"), span_ended(r, u, usage=llm_usage(10, 10))]
        evs += run_evs
    rng.shuffle(evs)
    # re-sent events (an exporter retry after a lost response)
    evs += rng.sample(evs, len(evs) // 10)
    return evs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rebuild_equals_incremental_on_a_random_history(store: Store, project: Project, seed: int) -> None:
    rng = random.Random(seed)
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent=None, cap_usd="100")
    held = tuple(
        ledger.reserve(
            store,
            project=project,
            pricers=PricerCache(),
            agent="",
            provider="anthropic",
            model="claude-3-5-sonnet-20241022",
            input_tokens=10,
            max_output_tokens=10,
        ).reservation_id
        for _ in range(3)
    )
    evs = random_history(rng, 25, held)
    projector = Projector(store)
    i = 0
    while i < len(evs):  # arrive in random batches, folded in random steps
        n = rng.randint(1, 40)
        send(store, project, evs[i : i + n])
        i += n
        if rng.random() < 0.6:
            projector.run_once(limit=rng.randint(1, 60))
    projector.catch_up()
    incremental = snapshot(store)
    assert len(incremental["runs"]) == 25
    assert incremental["unguarded_spend"]  # made-up reservations and unguarded calls were counted
    # the hourly rollup holds the same calls and cost as the daily one, by hour instead of day
    hourly = incremental["cost_hourly"]  # project_id, hour, agent, model, calls, cost_nanos
    daily = incremental["cost_daily"]  # ..., calls (5th), 5 token counts, cost_nanos, unpriced_calls
    assert hourly and sum(r[4] for r in hourly) == sum(r[5] for r in daily)
    assert sum(r[5] for r in hourly) == sum(r[-2] for r in daily)
    # runs per hour and status: each run with a known start once, with its status
    cols = [c.name for c in runs.c if c.name not in ("last_event_at", "first_seq")]
    at, status = cols.index("started_at"), cols.index("status")
    started = Counter((r[at] // 10**9 // 3600, r[status]) for r in incremental["runs"] if r[at] is not None)
    assert {(h, st): n for _, h, st, n in incremental["runs_hourly"]} == started
    # runs that succeeded, per quarter hour of their start: each once as a run, and once per model
    # it made a priced or costed call of (project, grouping, bucket, agent, provider, model, n)
    succeeded = Counter(r[at] // (900 * 10**9) for r in incremental["runs"] if r[status] == "succeeded")
    outcomes = incremental["run_outcomes"]
    per_bucket: Counter[int] = Counter()
    for _, g, b, *_, n in outcomes:
        per_bucket[b] += n if g == "run" else 0
    assert succeeded and +per_bucket == succeeded
    assert all(n > 0 for *_, n in outcomes)
    assert {g for _, g, *_ in outcomes} == {"run", "provider", "model", "provider_model"}
    assert projector.rebuild() > 0
    assert snapshot(store) == incremental


def test_concurrent_writers_lose_nothing(store: Store, project: Project) -> None:
    """Writers commit concurrently while the projector folds: on PostgreSQL events may commit out of
    sequence order; none may be skipped."""
    projector = Projector(store, batch=50)
    stop = threading.Event()
    errors: list[BaseException] = []

    def fold_forever() -> None:
        try:
            while not stop.is_set():
                projector.run_once()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def write(n: int) -> None:
        try:
            for _ in range(n):
                r = rid()
                s = sid()
                send(
                    store,
                    project,
                    [run_started(r), span_started(r, s), span_ended(r, s, usage=llm_usage()), run_ended(r)],
                )
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    folder = threading.Thread(target=fold_forever)
    folder.start()
    writers = [threading.Thread(target=write, args=(40,)) for _ in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    folder.join()
    projector.catch_up()
    assert errors == []
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 320
        assert conn.execute(select(func.count()).select_from(spans)).scalar_one() == 320
        assert conn.execute(select(func.count()).where(runs.c.status == "succeeded")).scalar_one() == 320
        costs = all_time_costs(conn, project.id)
    assert costs["total"]["calls"] == 320


def test_a_run_waiting_on_a_person_is_not_abandoned(store: Store, project: Project) -> None:
    """However long a person takes to decide, a run with a request still open is waiting, not
    abandoned; once the request is closed (withdrawn here), a quiet run is abandoned as any other."""
    from controlroom.approvals import requests as ap

    r = rid()
    send(store, project, [run_started(r)])
    projector = Projector(store)
    projector.catch_up()
    asked, _ = ap.request(
        store, project_id=project.id, run_id=r, action="refund", arguments={"usd": 5}, idempotency_key="k"
    )
    projector.catch_up()
    later = time.time_ns() + 10 * 86_400 * 10**9
    assert sweep_abandoned(store, quiet_seconds=3600, now_ns=later) == 0
    ap.cancel(store, project_id=project.id, approval_id=asked.id, reason="the customer called back")
    projector.catch_up()
    assert sweep_abandoned(store, quiet_seconds=3600, now_ns=later) == 1
    projector.catch_up()
    with store.read() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.run_id == r)).scalar_one() == "abandoned"


def test_quiet_run_is_abandoned_and_revived_by_later_events(store: Store, project: Project) -> None:
    r, s = rid(), sid()
    send(store, project, [run_started(r), span_started(r, s)])
    projector = Projector(store)
    projector.catch_up()
    assert sweep_abandoned(store, quiet_seconds=3600) == 0  # not quiet long enough
    later = BASE_TS + 10 * 86_400 * 10**9
    assert sweep_abandoned(store, quiet_seconds=3600, now_ns=later) == 1
    assert sweep_abandoned(store, quiet_seconds=3600, now_ns=later) == 0  # the same quiet spell, once
    projector.catch_up()
    with store.read() as conn:
        run = run_json(get_run(conn, project.id, r))
    assert run["status"] == "abandoned"
    assert run["error"]["type"] == "abandoned"
    send(store, project, [span_ended(r, s), run_ended(r)])
    projector.catch_up()
    with store.read() as conn:
        assert run_json(get_run(conn, project.id, r))["status"] == "succeeded"


def test_daily_rollup_uses_the_project_timezone(store: Store) -> None:
    with store.write() as conn:
        ny = projects.create_project(conn, name="ny", timezone="America/New_York")
    r, s = rid(), sid()
    # 2026-03-08 03:30 UTC is still 2026-03-07 in New York (EST, UTC-5)
    t = 1_772_940_600 * 10**9
    send(
        store,
        ny,
        [
            run_started(r, ts=t),
            span_started(r, s, model="gpt-4o", provider="openai", ts=t),
            span_ended(r, s, usage=llm_usage(), ts=t + MS),
        ],
    )
    Projector(store).catch_up()
    with store.read() as conn:
        costs = costs_json(
            daily_costs(conn, ny.id, ny.timezone, since="2026-03-01", until="2026-03-10", group_by=("model",))
        )
    assert [(d["day"], d["model"], d["calls"]) for d in costs["days"]] == [("2026-03-07", "gpt-4o", 1)]


def test_unknown_model_is_unpriced_not_free(store: Store, project: Project) -> None:
    r, s = rid(), sid()
    send(
        store,
        project,
        [run_started(r), span_started(r, s, model="no-such-model-xyz"), span_ended(r, s, usage=llm_usage())],
    )
    run = folded_run(store, project, r)
    with store.read() as conn:
        costs = all_time_costs(conn, project.id)
    span = run["spans"][0]
    assert span["cost_source"] == "unknown" and span["cost_usd"] is None
    assert run["unpriced_calls"] == 1
    assert costs["total"]["unpriced_calls"] == 1


def test_price_override_prices_a_private_model(store: Store, project: Project) -> None:
    from controlroom.cost.overrides import set_price

    with store.write() as conn:
        set_price(
            conn, project=project, model="acme-ft-1", provider=None, input_per_mtok="1.5", output_per_mtok="3"
        )
    r, s = rid(), sid()
    send(
        store,
        project,
        [
            run_started(r),
            span_started(r, s, model="acme-ft-1"),
            span_ended(r, s, usage=llm_usage(1_000_000, 1_000_000)),
        ],
    )
    run = folded_run(store, project, r)
    assert run["cost_usd"] == "4.5"
    assert run["spans"][0]["cost_source"] == "computed"


def test_postgres_appends_commit_in_sequence_order(pg_url: str) -> None:
    """A writer that would take a later sequence number waits for the open append before it, so
    the projector can never fold past an event that has not committed yet."""
    from sqlalchemy import text

    from controlroom.events import validate_event
    from controlroom.store import log
    from controlroom.store.ingest import event_row
    from tests_support import wait_for

    store = Store(pg_url)
    with store.write() as conn:
        p = projects.ensure_project(conn, name="order-test")
    projector = Projector(store)
    projector.catch_up()
    with store.read() as conn:
        start = Projector.position(conn)
    r = rid()
    done = threading.Event()

    def second_writer() -> None:
        send(store, p, [run_started(r, agent="second")])
        done.set()

    with store.write() as conn:
        log.append(
            store,
            conn,
            [
                event_row(
                    p.id,
                    validate_event({**run_started(r, agent="first", ts=BASE_TS), "id": "first"}),
                    received_at=BASE_TS,
                )
            ],
        )
        t = threading.Thread(target=second_writer)
        t.start()
        with store.engine.connect() as probe:
            wait_for(
                lambda: (
                    probe.execute(
                        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    ).scalar_one()
                    == 1
                )
            )
        assert projector.run_once() == 0  # nothing committed yet: nothing to fold, nothing skipped
        assert not done.is_set()
    t.join(10)
    assert done.is_set()
    assert projector.catch_up() == 2
    with store.read() as conn:
        assert Projector.position(conn) == start + 2
        assert conn.execute(select(runs.c.agent).where(runs.c.run_id == r)).scalar_one() == "second"
    store.dispose()
