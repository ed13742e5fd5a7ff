"""GET /v1/costs/daily's outcome figures: the runs that succeeded and the calls a daily cost cap
refused, per day and per group, checked against the events sent (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import assert_problem, ev, new_run_id, new_span_id, wait_projected

DAY_NS = 86_400 * 10**9
HOUR = 3600 * 10**9
SEC = 10**9
D0 = (time.time_ns() // DAY_NS - 3) * DAY_NS  # midnight UTC three days ago
D1 = D0 + DAY_NS


def day(ns: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ns // SEC))


@pytest.fixture
def client(live: Any) -> Iterator[httpx.Client]:
    with live.client(admin=True) as c:
        yield c


def llm(run_id: str, at: int, model: str, **body: Any) -> dict[str, Any]:
    return ev(
        "span.recorded",
        run_id,
        at,
        {
            "span_id": new_span_id(),
            "name": "call",
            "kind": "llm",
            "provider": "acme",
            "model": model,
            "ended_at": at + SEC,
            "usage": {"input_tokens": 10, "output_tokens": 5},
            **body,
        },
    )


def refused(run_id: str, at: int, model: str, reason: str = "cap_reached") -> dict[str, Any]:
    """The span the SDK records for a call a cap refused before it was made."""
    return ev(
        "span.recorded",
        run_id,
        at,
        {
            "span_id": new_span_id(),
            "name": "call",
            "kind": "llm",
            "provider": "acme",
            "model": model,
            "ended_at": at,
            "status": "error",
            "error": {"type": "BudgetExceeded", "message": "daily cost cap reached"},
            "attributes": {"controlroom.budget.reason": reason},
        },
    )


def run(agent: str, at: int, status: str, *calls: tuple[str, str]) -> list[dict[str, Any]]:
    """A run of agent started at `at` with its calls ("ok"/"refused", model), ended with status."""
    rid = new_run_id()
    events = [ev("run.started", rid, at, {"agent": agent})]
    for i, (what, model) in enumerate(calls):
        at_i = at + (i + 1) * SEC
        if what == "unreachable":  # the SDK failing closed: no cap said no
            events.append(refused(rid, at_i, model, reason="ledger_unavailable"))
        else:
            events.append((llm if what == "ok" else refused)(rid, at_i, model))
    end: dict[str, Any] = {"status": status}
    if status == "failed":
        end["error"] = {"type": "BudgetExceeded", "message": "daily cost cap reached"}
    events.append(ev("run.ended", rid, at + 30 * SEC, end))
    return events


def test_succeeded_runs_and_refused_calls_per_day_and_group(client: httpx.Client) -> None:
    events = [
        # D0: alpha succeeds twice (one run calls two models), beta once; beta is refused once
        *run("alpha", D0 + 9 * HOUR, "succeeded", ("ok", "m-1")),
        *run("alpha", D0 + 10 * HOUR, "succeeded", ("ok", "m-1"), ("ok", "m-2")),
        *run("beta", D0 + 11 * HOUR, "succeeded", ("ok", "m-2")),
        *run("beta", D0 + 12 * HOUR, "failed", ("ok", "m-2"), ("refused", "m-2")),
        # D1: nothing succeeds; beta's only call is refused (a day with refusals and no spend)
        *run("beta", D1 + 8 * HOUR, "failed", ("refused", "m-1")),
        # a run that succeeded without any model call counts by agent, not by model
        *run("gamma", D1 + 9 * HOUR, "succeeded"),
        # a call the SDK did not make because it could not reach the ledger: no refusal by a cap
        *run("delta", D1 + 10 * HOUR, "failed", ("unreachable", "m-1")),
    ]
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    wait_projected(client)
    params = {"since": day(D0), "until": day(D1)}

    def figures(group_by: str | None) -> dict[tuple[Any, ...], tuple[int, int, int]]:
        doc = client.get("/v1/costs/daily", params={**params, **({"group_by": group_by} if group_by else {})})
        assert doc.status_code == 200, doc.text
        keys = group_by.split(",") if group_by else []
        return {
            (row["day"], *(row[k] for k in keys)): (row["calls"], row["succeeded_runs"], row["refused_calls"])
            for row in doc.json()["days"]
        }

    # calls counts the refused call's span too (a model call that never cost anything)
    assert figures(None) == {(day(D0),): (6, 3, 1), (day(D1),): (2, 1, 1)}
    assert figures("agent") == {
        (day(D0), "alpha"): (3, 2, 0),
        (day(D0), "beta"): (3, 1, 1),
        (day(D1), "beta"): (1, 0, 1),
        (day(D1), "gamma"): (0, 1, 0),
        (day(D1), "delta"): (1, 0, 0),
    }
    assert figures("model") == {
        (day(D0), "m-1"): (2, 2, 0),
        (day(D0), "m-2"): (4, 2, 1),
        (day(D1), "m-1"): (2, 0, 1),
    }
    total = client.get("/v1/costs/daily", params={**params, "group_by": "agent"}).json()["total"]
    assert (total["succeeded_runs"], total["refused_calls"]) == (4, 2)
    # one day alone
    doc = client.get("/v1/costs/daily", params={"since": day(D1), "until": day(D1)}).json()
    assert [(d["day"], d["succeeded_runs"], d["refused_calls"]) for d in doc["days"]] == [(day(D1), 1, 1)]
    # the widest range there is: the same totals, never a 500
    r = client.get("/v1/costs/daily", params={"since": "0001-01-01", "until": "9999-12-31"})
    assert r.status_code == 200, r.text
    assert (r.json()["total"]["succeeded_runs"], r.json()["total"]["refused_calls"]) == (4, 2)
    r = client.get("/v1/costs/daily", params={"since": "2300-01-01", "until": "2300-01-02"})  # past 2262
    assert r.status_code == 200, r.text
    assert (r.json()["total"]["succeeded_runs"], r.json()["total"]["refused_calls"]) == (0, 0)


@pytest.mark.parametrize(
    "params",
    [{"group_by": "agent,colour"}, {"since": "2026-13-01"}, {"since": "2026-05-02", "until": "2026-05-01"}],
)
def test_bad_cost_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    assert_problem(client.get("/v1/costs/daily", params=params), 400, "invalid_query")
