"""GET /v1/overview through the real server, on both databases: each card's numbers against runs
sent here (failures against the day before and their signatures, today's spend, held and remaining
against the cap with the projection, a made-up cost spike flagged and ordinary days not, waiting
approvals, open regressions, the hourly series), a card that fails alone, bad input and who may
read it; and the demo's history, whose spike day alone is flagged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_support import assert_problem, call, ev, new_run_id, new_span_id, wait_projected

from conftest import LiveServer
from controlroom.accounts import projects as pr
from controlroom.accounts import users as u
from controlroom.accounts.projects import Project
from controlroom.demo import backfill
from controlroom.events import parse_ts
from controlroom.projections import overview as ov
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store
from controlroom.store.tables import eval_regressions

SEC = 10**9
HOUR = 3600 * SEC
DAY = 24 * HOUR
PASSWORD = "a long enough password"
CSRF = {"X-Controlroom-CSRF": "1"}

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def admin(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client(admin=True) as c:
        r = c.post("/v1/prices", json={"model": "acme-1", "input_per_mtok": "1", "output_per_mtok": "1"})
        assert r.status_code == 201, r.text
        yield c


def post(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(events), r.text


def run(
    agent: str,
    at: int,
    *,
    status: str = "succeeded",
    tokens: int = 0,
    error: tuple[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """A run's events: started at ``at``, one model call of ``tokens`` input tokens ($1 a million),
    and for a failure a failing tool span named error[1] with error type error[0]."""
    rid = new_run_id()
    out = [ev("run.started", rid, at, {"agent": agent})]
    if tokens:
        sid = new_span_id()
        body = {"span_id": sid, "name": "chat", "kind": "llm", "model": "acme-1", "ended_at": at + SEC}
        out.append(ev("span.recorded", rid, at, {**body, "usage": {"input_tokens": tokens}}))
    end: dict[str, Any] = {"status": status}
    if error:
        sid = new_span_id()
        err = {"type": error[0], "message": f"{error[0]} in {error[1]}"}
        body = {"span_id": sid, "name": error[1], "kind": "tool", "status": "error", "error": err}
        out.append(ev("span.recorded", rid, at + SEC, {**body, "ended_at": at + 2 * SEC}))
        end = {"status": "failed", "error": err, "failing_span_id": sid}
    out.append(ev("run.ended", rid, at + 3 * SEC, end))
    return rid, out


def overview(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/overview", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def usd(value: str) -> Decimal:
    return Decimal(value)


def test_failures_against_the_day_before_with_their_signatures(live: LiveServer, admin: httpx.Client) -> None:
    now = time.time_ns()
    sent: list[dict[str, Any]] = []
    recent_failed = []
    for i, (etype, span) in enumerate(
        [
            ("OrderServiceError", "lookup_order"),
            ("OrderServiceError", "lookup_order"),
            ("CalledProcessError", "run_tests"),
        ]
    ):
        rid, events = run("bot", now - (3 + i) * HOUR, error=(etype, span))
        recent_failed.append(rid)
        sent += events
    sent += run("bot", now - 2 * HOUR)[1]
    sent += run("bot", now - 30 * HOUR, error=("OrderServiceError", "lookup_order"))[1]
    sent += run("bot", now - 31 * HOUR)[1] + run("bot", now - 32 * HOUR)[1]
    sent += run("bot", now - 50 * HOUR, error=("Old", "older"))[1]  # before both windows
    post(admin, sent)
    wait_projected(admin)

    f = overview(admin)["failures"]
    assert (f["failed"], f["previous_failed"], f["runs"], f["previous_runs"]) == (3, 1, 4, 3)
    assert f["abandoned"] == f["previous_abandoned"] == 0
    assert f["error_rate"] == pytest.approx(0.75)
    sigs = [(s["error_type"], s["span_name"], s["count"]) for s in f["signatures"]]
    assert sigs == [("OrderServiceError", "lookup_order", 2), ("CalledProcessError", "run_tests", 1)]
    last = f["signatures"][0]["last_seen"]
    assert last.startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now - 3 * HOUR) // SEC)))
    assert [r["run_id"] for r in f["recent"]] == recent_failed  # newest first
    assert (
        f["recent"][2]["failing_span_name"] == "run_tests"
        and f["recent"][2]["error_type"] == "CalledProcessError"
    )

    day = overview(admin)["series"]
    assert day["window"] == "24h" and len(day["hours"]) == 24
    assert sum(h["runs"].get("failed", 0) for h in day["hours"]) == 3
    assert sum(sum(h["runs"].values()) for h in day["hours"]) == 4
    week = overview(admin, window="7d")["series"]
    assert len(week["hours"]) == 24 * 7
    assert sum(h["runs"].get("failed", 0) for h in week["hours"]) == 5
    assert sum(h["runs"].get("succeeded", 0) for h in week["hours"]) == 3
    hours = [h["hour"] for h in week["hours"]]
    assert hours == sorted(hours) and len(set(hours)) == len(hours)


def test_cost_caps_projection_spikes_and_the_day_s_dearest_runs(
    live: LiveServer, admin: httpx.Client
) -> None:
    now = time.time_ns()
    spike_at = (now - 3 * DAY) // HOUR * HOUR + 10 * 60 * SEC
    sent: list[dict[str, Any]] = []
    for d in range(1, 9):  # the bot's ordinary hour: 10 cents a day, for the 8 days before the spike
        sent += run("bot", spike_at - d * DAY, tokens=100_000)[1]
    for d in (1, 2):  # and after it
        sent += run("bot", spike_at + d * DAY, tokens=100_000)[1]
    sent += run("bot", spike_at, tokens=5_000_000)[1]  # the spike: $5 against a 10-cent median
    for d in range(-2, 11):  # a steady agent, $2 at that hour every day: large, but not a spike
        sent += run("steady", spike_at - d * DAY, tokens=2_000_000)[1]
    today, events = run("bot", now - 5 * SEC, tokens=1_000_000)  # $1 today, no reservation: no spike
    sent += events
    post(admin, sent)
    wait_projected(admin)
    assert admin.put("/v1/budgets", json={"cap_usd": "50"}).status_code == 200
    with live.client() as agent:
        r = agent.post(
            "/v1/budget/reservations",
            json={"agent": "bot", "model": "acme-1", "input_tokens": 0, "max_output_tokens": 1_000_000},
        )
        assert r.status_code == 201, r.text
        hold = usd(r.json()["hold_usd"])
    assert hold == 1

    o = overview(admin)
    c = o["cost"]
    spikes = [
        (s["agent"], s["model"], s["hour"][:13], usd(s["cost_usd"]), usd(s["baseline_usd"]))
        for s in c["spikes"]
    ]
    spike_hour = time.strftime("%Y-%m-%dT%H", time.gmtime(spike_at // SEC))
    assert spikes == [("bot", "acme-1", spike_hour, Decimal(5), Decimal("0.1"))]
    assert c["spikes"][0]["factor"] == 50.0
    assert c["spike_rule"] == {"days": 7, "baseline_days": 7, "factor": 3.0, "min_usd": "1.5"}

    assert usd(c["spent_usd"]) == 1 and c["timezone"] == "UTC"
    assert [r["run_id"] for r in c["top_runs"]] == [today] and usd(c["top_runs"][0]["cost_usd"]) == 1
    (cap,) = c["caps"]
    assert cap["agent"] is None and usd(cap["cap_usd"]) == 50
    assert usd(cap["settled_usd"]) == 1 and usd(cap["unguarded_usd"]) == 1
    assert usd(cap["held_usd"]) == 1 and usd(cap["remaining_usd"]) == 48
    # the projection: spent + the last 3 hours' rate x the hours left in the day
    at = parse_ts(o["now"])
    rate_from = (at // HOUR - 2) * HOUR
    left = (at // DAY + 1) * DAY - at
    expected = 1 + Decimal(HOUR) / (at - rate_from) * left / HOUR
    assert usd(c["projected_usd"]) == pytest.approx(expected, abs=Decimal("0.001"))
    assert usd(cap["projected_usd"]) == pytest.approx(expected, abs=Decimal("0.001"))

    series = o["series"]
    assert usd(series["cap_usd"]) == 50
    assert usd(series["hours"][-1]["cost_usd"]) == 1
    assert sum(usd(h["cost_usd"]) for h in series["hours"][:-1]) == 0  # nothing else in the last day
    week = overview(admin, window="7d")["series"]
    assert (
        sum(usd(h["cost_usd"]) for h in week["hours"]) == 1 + 5 + Decimal("0.5") + 2 * 6
    )  # today, the spike, 5 ordinary hours, 6 steady ones


@pytest.fixture
def people(live: LiveServer) -> LiveServer:
    with live.store.write() as conn:
        p = pr.get_project(conn, name="acme")
        assert p is not None
        for login, role in (("vic", u.Role.viewer), ("amy", u.Role.approver)):
            user = u.create_user(conn, login=login, password=PASSWORD)
            u.set_role(conn, user=user, project=p, role=role)
    return live


def person(live: LiveServer, login: str) -> httpx.Client:
    client = httpx.Client(base_url=live.url, timeout=30, headers=CSRF)
    r = client.post("/v1/session", json={"login": login, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


def test_approvals_waiting_regressions_and_who_may_read(people: LiveServer) -> None:
    with people.client(admin=True) as admin:
        r = admin.put("/v1/approval-policies/refund", json={"expires_after_seconds": 600})
        assert r.status_code == 200, r.text
    asked = []
    with people.client() as agent:
        for i, action in enumerate(("refund", "deploy", "refund")):
            body = {
                "run_id": new_run_id(),
                "action": action,
                "arguments": {"i": i},
                "idempotency_key": f"k{i}",
            }
            r = agent.post("/v1/approvals", json={**body, "agent": "bot"})
            assert r.status_code == 201, r.text
            asked.append(r.json())
    with people.store.write() as conn:
        project = pr.get_project(conn, name="acme")
        assert project is not None
        conn.execute(
            eval_regressions.insert().values(
                project_id=project.id,
                agent="bot",
                evaluator="judge",
                evaluator_version="1",
                name="helpfulness",
                state="open",
                opened_at=time.time_ns(),
                checked_at=time.time_ns(),
                evidence="helpfulness fell from 0.80 to 0.62",
                details={
                    "test": "permutation",
                    "baseline": {"n": 40, "mean": 0.8},
                    "recent": {"n": 30, "mean": 0.62},
                    "change": -0.18,
                    "ci": [-0.25, -0.1],
                    "p": 0.001,
                    "q": 0.004,
                    "worst_run_ids": [],
                },
            )
        )

    with closing(person(people, "vic")) as vic, closing(person(people, "amy")) as amy:
        o = overview(vic)  # a viewer reads it
        a = o["approvals"]
        assert a["pending"] == 3 and a["near_expiry"] == 2 and a["near_expiry_minutes"] == 15
        assert [x["id"] for x in a["oldest"]] == [x["id"] for x in asked]
        assert a["oldest"][0] == asked[0] and a["oldest_requested_at"] == asked[0]["requested_at"]
        (reg,) = o["quality"]["regressions"]
        assert reg["evidence"].startswith("helpfulness fell") and reg["recent"] == {"n": 30, "mean": 0.62}

        decided = amy.post(
            f"/v1/approvals/{asked[0]['id']}/decision",
            json={"decision": "approved", "arguments_hash": asked[0]["arguments_hash"]},
        )
        assert decided.status_code == 200, decided.text
        a = overview(vic)["approvals"]
        assert a["pending"] == 2 and [x["id"] for x in a["oldest"]] == [asked[1]["id"], asked[2]["id"]]
        assert a["near_expiry"] == 1

    assert_problem(call(people, "GET", "/v1/overview", key=None), 401, "unauthorized")
    assert call(people, "GET", "/v1/overview").status_code == 200  # an agent key reads too
    assert_problem(call(people, "GET", "/v1/overview?window=1y"), 400, "invalid_query", "window")
    assert_problem(call(people, "GET", "/v1/overview?window="), 400, "invalid_query", "window")


def test_a_card_that_fails_does_not_take_the_others_down(
    live: LiveServer, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: Any, project_id: int) -> Any:
        conn.exec_driver_sql("SELECT nothing FROM no_such_table")  # a failed statement, mid-transaction

    monkeypatch.setattr(ov, "quality_card", broken)
    post(admin, run("bot", time.time_ns() - HOUR, error=("Boom", "step"))[1])
    wait_projected(admin)
    o = overview(admin)
    assert set(o["quality"]) == {"error"} and "no_such_table" in o["quality"]["error"]
    assert o["failures"]["failed"] == 1 and len(o["series"]["hours"]) == 24  # the cards after it stand
    assert o["approvals"]["pending"] == 0 and o["cost"]["spikes"] == []


def test_the_demo_history_flags_its_spike_day_and_no_ordinary_day(store: Store, project: Project) -> None:
    days = 14
    backfill(store, project, days=days)
    Projector(store).catch_up()
    now = time.time_ns()
    start = now - days * DAY
    spike_day = days - 6  # history.py's spike day
    with store.read() as conn:
        hourly = ov.hourly_costs(conn, project.id, 0, now // HOUR)
        first = (start + 7 * DAY) // HOUR  # every hour with a full baseline
        found = ov.find_spikes(hourly, first, now // HOUR)
        o = ov.overview(conn, project_id=project.id, timezone="UTC", now=now)
    # every flagged hour overlaps the spike day: a day of the history starts at any minute (and
    # seconds before this test's clock), and a long run of it may go on into the next day
    day_start = start + spike_day * DAY
    outside = [s for s in found if not (day_start - 2 * HOUR < s.hour < day_start + 2 * DAY)]
    assert not outside, [((s.hour - start) / DAY, s.agent, s.model) for s in outside]
    assert sum(day_start - 2 * HOUR < s.hour < day_start + DAY for s in found) >= 3
    assert len(found) >= 3 and {(s.agent, s.model) for s in found} == {
        ("research-agent", "claude-sonnet-4-5")
    }
    assert o.cards["cost"].spikes, "the spike day is within the overview's 7 days"


def test_the_live_demo_fleet_stays_under_the_spike_minimum() -> None:
    """A running demo flags its spike day, not its own live hours: the live support bot (two runs in
    three of the fleet's, one every 3 s on average, on gpt-4o-mini at its largest call) spends
    less than the spike minimum in an hour, and would not had it called gpt-4o first."""
    from controlroom.cost import Pricer
    from controlroom.money import Usage

    pricer = Pricer()
    largest = Usage(input_tokens=3000, output_tokens=500)  # demo/fleet.py's upper bounds

    def hour_of(model: str) -> int:
        call = pricer.cost_nanos(provider="openai", model=model, usage=largest, at_ns=time.time_ns())
        assert call is not None
        return call * (3600 // 3) * 6 // 9

    assert hour_of("gpt-4o-mini") < ov.SPIKE_MIN_NANOS < hour_of("gpt-4o")
