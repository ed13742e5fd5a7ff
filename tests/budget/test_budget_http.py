"""The ledger's two hot-path endpoints over real HTTP: bad requests get problem documents and leave
the ledger as it was, an unexpected error is a 500 problem document, and a reservation that must
wait for the database waits off the event loop (the server keeps answering)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import assert_problem, call
from sqlalchemy import create_engine, text

from conftest import LiveServer, free_port, price_and_cap
from controlroom.accounts import projects
from controlroom.budget import ledger
from controlroom.budget.days import local_day
from controlroom.events import parse_ts
from controlroom.server.routers import budget as budget_router
from tests_support import wait_for

RESERVE = "/v1/budget/reservations"
# acme-1 at $1/M tokens in and out: 1,000 input + 4,000 output tokens hold exactly $0.005
GOOD = {"agent": "bot", "model": "acme-1", "input_tokens": 1000, "max_output_tokens": 4000}


@pytest.fixture
def capped(live: LiveServer) -> LiveServer:
    price_and_cap(live, "1")
    return live


def held_usd(live: LiveServer) -> str:
    with live.client() as http:
        (b,) = http.get("/v1/budgets").json()["budgets"]
    return str(b["held_usd"])


def settle_path(rid: str) -> str:
    return f"{RESERVE}/{rid}/settle"


def test_a_reservation_answers_its_hold_budgets_and_expiry(capped: LiveServer) -> None:
    with capped.client(admin=True) as http:
        assert (
            http.put(
                "/v1/budgets", json={"cap_usd": "1", "agent": "bot", "timezone": "Asia/Tokyo"}
            ).status_code
            == 200
        )
        before = time.time_ns()
        r = http.post(RESERVE, json=GOOD)
    assert r.status_code == 201 and r.headers["content-type"] == "application/json", r.text
    doc = budget_router.ReservationOut.model_validate(r.json())
    assert doc.reservation_id is not None and len(doc.reservation_id) == 32
    assert doc.hold_usd == "0.005"
    assert [(b.agent, b.day) for b in doc.budgets] == [
        (None, local_day(before, "UTC").isoformat()),
        ("bot", local_day(before, "Asia/Tokyo").isoformat()),
    ]
    assert doc.expires_at is not None and doc.expires_at.endswith("Z")  # RFC 3339 UTC, like every timestamp
    expires = parse_ts(doc.expires_at)
    assert before + 600 * 10**9 <= expires <= time.time_ns() + 600 * 10**9


BAD: list[tuple[str, str, str, dict[str, Any], int, str, str]] = [
    # (name, method, path, request kwargs (+ "key"), status, code, text in detail)
    ("no-key", "POST", RESERVE, {"json": GOOD, "key": None}, 401, "unauthorized", "Bearer"),
    ("wrong-key", "POST", RESERVE, {"json": GOOD, "key": "cr_nope"}, 401, "unauthorized", "not valid"),
    ("not-json", "POST", RESERVE, {"content": b"{model: acme-1"}, 400, "invalid_json", "json"),
    ("json-array", "POST", RESERVE, {"json": [GOOD]}, 422, "validation_failed", ""),
    ("no-model", "POST", RESERVE, {"json": {"input_tokens": 5}}, 422, "validation_failed", "model"),
    (
        "negative-tokens",
        "POST",
        RESERVE,
        {"json": {**GOOD, "input_tokens": -1}},
        422,
        "validation_failed",
        "input_tokens",
    ),
    (
        "tokens-as-text",
        "POST",
        RESERVE,
        {"json": {**GOOD, "input_tokens": "many"}},
        422,
        "validation_failed",
        "input_tokens",
    ),
    (
        "unknown-field",
        "POST",
        RESERVE,
        {"json": {**GOOD, "priority": 1}},
        422,
        "validation_failed",
        "priority",
    ),
    ("bad-run-id", "POST", RESERVE, {"json": {**GOOD, "run_id": "x"}}, 422, "validation_failed", "run_id"),
    (
        "too-large",
        "POST",
        RESERVE,
        {"json": {**GOOD, "agent": "a" * 70_000}},
        413,
        "payload_too_large",
        "65536",
    ),
    ("get-reservations", "GET", RESERVE, {}, 405, "method_not_allowed", ""),
    (
        "nul-in-agent",
        "POST",
        RESERVE,
        {"json": {**GOOD, "agent": "bo\x00t"}},
        422,
        "validation_failed",
        "NUL",
    ),
    (
        "nul-in-model",
        "POST",
        RESERVE,
        {"json": {**GOOD, "model": "acme\x00"}},
        422,
        "validation_failed",
        "NUL",
    ),
    (
        "nul-in-id",
        "POST",
        settle_path("abc%00" + "x" * 20),
        {"json": {"outcome": "unknown"}},
        404,
        "not_found",
        "",
    ),
    (
        "nul-in-outcome",
        "POST",
        settle_path("{rid}"),
        {"json": {"outcome": "unk\x00nown"}},
        422,
        "validation_failed",
        "NUL",
    ),
    (
        "unknown-reservation",
        "POST",
        settle_path("0" * 32),
        {"json": {"outcome": "unknown"}},
        404,
        "not_found",
        "0" * 32,
    ),
    ("empty-id", "POST", settle_path(""), {"json": {"outcome": "unknown"}}, 404, "not_found", ""),
    ("nested-id", "POST", settle_path("a/b"), {"json": {"outcome": "unknown"}}, 404, "not_found", ""),
    (
        "settle-no-key",
        "POST",
        settle_path("{rid}"),
        {"json": {"outcome": "unknown"}, "key": None},
        401,
        "unauthorized",
        "",
    ),
    (
        "bad-outcome",
        "POST",
        settle_path("{rid}"),
        {"json": {"outcome": "done"}},
        422,
        "validation_failed",
        "outcome",
    ),
    (
        "bad-cost",
        "POST",
        settle_path("{rid}"),
        {"json": {"outcome": "completed", "cost_usd": "lots"}},
        422,
        "validation_failed",
        "cost_usd",
    ),
    (
        "negative-usage",
        "POST",
        settle_path("{rid}"),
        {"json": {"outcome": "completed", "usage": {"output_tokens": -5}}},
        422,
        "validation_failed",
        "output_tokens",
    ),
    ("get-settle", "GET", settle_path("{rid}"), {}, 405, "method_not_allowed", ""),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "code", "needle"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_requests_get_problem_documents_and_change_nothing(
    capped: LiveServer,
    name: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    needle: str,
) -> None:
    with capped.client() as http:
        good = http.post(RESERVE, json=GOOD)
        assert good.status_code == 201, good.text
    rid = good.json()["reservation_id"]
    kwargs = dict(kwargs)
    r = call(capped, method, path.replace("{rid}", rid), key=kwargs.pop("key", True), **kwargs)
    assert_problem(r, status, code, *([needle] if needle else []))
    # the reservation accepted before is held as it was, and still settles normally
    assert held_usd(capped) == "0.005"
    with capped.client() as http:
        r = http.post(settle_path(rid), json={"outcome": "completed", "usage": {"output_tokens": 1000}})
        assert r.status_code == 200 and r.json()["actual_usd"] == "0.001", r.text
    assert held_usd(capped) == "0"


def test_an_unexpected_error_is_a_500_problem_and_the_server_goes_on(
    capped: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    # no traceback formatted in the server thread (see api_support.call on CPython gh-106905)
    caplog.set_level(logging.CRITICAL, logger=budget_router.__name__)
    monkeypatch.setattr(ledger, "reserve", broken)
    doc = assert_problem(call(capped, "POST", RESERVE, json=GOOD), 500, "internal_error", "server log")
    assert "disk on fire" not in str(doc)
    monkeypatch.undo()
    with capped.client() as http:
        assert http.post(RESERVE, json=GOOD).status_code == 201


def _block_the_ledger(live: LiveServer) -> Iterator[None]:
    """Hold what a reservation needs — SQLite's write lock, the budget's day row on PostgreSQL —
    in another connection until the generator is resumed."""
    if live.store.is_sqlite:
        import sqlite3

        blocker = sqlite3.connect(live.store.engine.url.database or "", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")
        blocker.close()
        return
    engine = create_engine(live.store.url)
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT * FROM budget_days FOR UPDATE")).all()
        yield
    engine.dispose()


def _reservation_waits(live: LiveServer) -> bool:
    if live.store.is_sqlite:
        return live.store.ledger_connections.lock.locked()  # the waiting thread holds the ledger connection
    with live.store.read() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%budget_days%' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    return bool(waiting)


def test_a_reservation_waits_for_a_busy_database_off_the_event_loop(capped: LiveServer) -> None:
    with capped.client() as http:  # the budget's day row exists from now on
        first = http.post(RESERVE, json=GOOD).json()["reservation_id"]
        assert http.post(settle_path(first), json={"outcome": "failed_before_generation"}).status_code == 200
    answers: list[httpx.Response] = []

    def reserve() -> None:
        with capped.client() as http:
            answers.append(http.post(RESERVE, json=GOOD))

    blocked = _block_the_ledger(capped)
    next(blocked)
    waiter = threading.Thread(target=reserve)
    waiter.start()
    try:
        wait_for(lambda: _reservation_waits(capped))
        # the event loop is free: other requests are answered while the reservation waits
        with capped.client() as http:
            assert http.get("/v1/health").status_code == 200
            assert http.get("/v1/budgets").status_code == 200
        assert not answers
    finally:
        next(blocked, None)
    waiter.join(30)
    (r,) = answers
    assert r.status_code == 201, r.text
    assert held_usd(capped) == "0.005"


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "params"),
    [
        ("POST", RESERVE, "reserve", {}),
        ("POST", settle_path("abc123"), "settle", {"reservation_id": "abc123"}),
        ("POST", settle_path(""), None, None),
        ("POST", settle_path("a/b"), None, None),
        ("POST", RESERVE + "/", None, None),
        ("POST", RESERVE + "/abc123", None, None),
        ("GET", RESERVE, None, None),
        ("PUT", settle_path("abc123"), None, None),
        ("POST", "/v1/budgets", None, None),
    ],
)
def test_dispatch_takes_only_the_two_hot_paths(
    method: str, path: str, endpoint: str | None, params: dict[str, str] | None
) -> None:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path}
    found = budget_router.fast.match(scope)
    assert (found.handler.__name__ if found else None) == endpoint
    if params is not None:
        assert scope["path_params"] == params


def test_a_reservation_sent_again_with_its_id_holds_nothing_more(capped: LiveServer) -> None:
    body = {**GOOD, "reservation_id": "a1" * 16}
    with capped.client() as http:
        first = http.post(RESERVE, json=body)
        again = http.post(RESERVE, json=body)
        assert first.status_code == again.status_code == 201, again.text
        assert again.json() == first.json() and first.json()["reservation_id"] == "a1" * 16
        assert held_usd(capped) == "0.005"
        settled = http.post(settle_path("a1" * 16), json={"outcome": "unknown"})
        assert settled.status_code == 200
        # a retry arriving after the settlement changes nothing either
        assert http.post(RESERVE, json=body).json() == first.json()
        (b,) = http.get("/v1/budgets").json()["budgets"]
    assert (b["settled_usd"], b["held_usd"]) == ("0.005", "0")


def test_a_reservation_id_of_another_project_is_a_conflict(capped: LiveServer) -> None:
    with capped.store.write() as conn:
        other = projects.create_key(conn, project=projects.ensure_project(conn, name="other")).key
        ledger.set_budget(
            capped.store, conn, project=projects.ensure_project(conn, name="other"), agent=None, cap_usd="1"
        )
    body = {**GOOD, "model": "gpt-4o-mini", "reservation_id": "b2" * 16}
    assert call(capped, "POST", RESERVE, json=body).status_code == 201
    r = call(capped, "POST", RESERVE, json=body, key=other)
    assert_problem(r, 409, "conflict", "already in use")
    with capped.client(other) as http:
        (b,) = http.get("/v1/budgets").json()["budgets"]
    assert b["held_usd"] == "0"  # the refused attempt's hold was rolled back


@pytest.mark.parametrize("bad", ["short", "x" * 33, "has/slash/" + "x" * 10, "spaces are bad here", 7])
def test_a_bad_reservation_id_is_named(capped: LiveServer, bad: object) -> None:
    assert_problem(
        call(capped, "POST", RESERVE, json={**GOOD, "reservation_id": bad}),
        422,
        "validation_failed",
        "reservation_id",
    )
    assert held_usd(capped) == "0"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_unreachable_ledger_database_is_a_503(capped: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store = capped.store
    connections = store.ledger_connections
    monkeypatch.setattr(connections, "_pg_dsn", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    monkeypatch.setattr(connections, "_pg_idle", [])
    assert_problem(call(capped, "POST", RESERVE, json=GOOD), 503, "service_unavailable", "unreachable")
    monkeypatch.undo()
    assert call(capped, "POST", RESERVE, json=GOOD).status_code == 201


def test_budget_settings_name_what_is_wrong(capped: LiveServer) -> None:
    broken = {"content": b'{"cap_usd": "1",', "headers": {"Content-Type": "application/json"}}
    doc = assert_problem(
        call(capped, "PUT", "/v1/budgets", key=capped.admin_key, **broken), 400, "invalid_json"
    )
    assert "errors" not in doc
    doc = assert_problem(
        call(capped, "PUT", "/v1/budgets", key=capped.admin_key, json={"cap_usd": 1}),
        422,
        "validation_failed",
    )
    assert doc["errors"] == [{"parameter": "cap_usd", "reason": "Input should be a valid string"}]
    doc = assert_problem(
        call(
            capped, "PUT", "/v1/budgets", key=capped.admin_key, json={"cap_usd": "1", "timezone": "Mars/Base"}
        ),
        422,
        "validation_failed",
        "Mars/Base",
    )
    assert doc["field"] == "timezone"
    doc = assert_problem(call(capped, "POST", RESERVE, json={"input_tokens": -1}), 422, "validation_failed")
    assert {e["parameter"] for e in doc["errors"]} == {"model", "input_tokens"}


def test_a_refusal_by_calls_in_flight_says_to_retry_in_seconds_not_at_midnight(capped: LiveServer) -> None:
    with capped.client(admin=True) as http:
        assert http.put("/v1/budgets", json={"cap_usd": "0.006"}).status_code == 200
        assert http.post(RESERVE, json=GOOD).status_code == 201  # $0.005 held by a call in flight
        r = http.post(RESERVE, json=GOOD)
        assert r.status_code == 402 and r.json()["reason"] == "held_by_in_flight_calls"
        assert r.headers["retry-after"] == str(ledger.IN_FLIGHT_RETRY_SECONDS)
        over = http.post(RESERVE, json={**GOOD, "max_output_tokens": 10_000})  # $0.011 > the cap itself
        assert over.status_code == 402 and over.json()["reason"] == "cap_reached"
        assert int(over.headers["retry-after"]) > ledger.IN_FLIGHT_RETRY_SECONDS  # the day's end
