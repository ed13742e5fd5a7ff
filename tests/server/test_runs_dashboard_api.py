"""What the Runs and Run detail pages ask of the API beyond the plain run list: runs awaiting an
approval, runs a cap refused a call of, the span tree without its payloads and one span's
payloads; bad values answer problem documents. On SQLite and PostgreSQL (the ``live`` server)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from api_support import assert_problem, call, ev, new_run_id, new_span_id, wait_projected

SEC = 10**9


@pytest.fixture
def client(live: Any) -> Any:
    with live.client() as c:
        yield c


def send(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text


def ids(client: httpx.Client, **params: Any) -> list[str]:
    r = client.get("/v1/runs", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return [x["run_id"] for x in r.json()["runs"]]


def run_events(run_id: str, ts: int, *spans: dict[str, Any]) -> list[dict[str, Any]]:
    out = [ev("run.started", run_id, ts, {"agent": "bot"})]
    out += [
        ev("span.recorded", run_id, ts + SEC, {"name": "call", "ended_at": ts + 2 * SEC, **s}) for s in spans
    ]
    return out


def test_awaiting_approval_and_refused_by_cap_filters(live: Any, client: httpx.Client) -> None:
    t0 = time.time_ns() - 3600 * SEC
    plain, waiting, refused, unpriced, ledger_down = (new_run_id() for _ in range(5))
    refusal = {"controlroom.budget.reason": "cap_reached", "controlroom.budget.cap_usd": "1"}
    events = run_events(plain, t0, {"span_id": new_span_id(), "name": "ok"})
    events += run_events(waiting, t0 + SEC, {"span_id": new_span_id(), "name": "ok"})
    events += run_events(
        refused,
        t0 + 2 * SEC,
        {"span_id": new_span_id(), "name": "ok"},
        {
            "span_id": new_span_id(),
            "name": "llm",
            "kind": "llm",
            "status": "error",
            "error": {"type": "BudgetExceeded", "message": "cap"},
            "attributes": refusal,
        },
    )
    events += run_events(
        unpriced,
        t0 + 3 * SEC,
        {
            "span_id": new_span_id(),
            "status": "error",
            "error": {"type": "BudgetExceeded"},
            "attributes": {"controlroom.budget.reason": "unpriced_model"},
        },
    )
    # Failing closed when the ledger cannot be asked is no refusal by a cap; an ordinary error neither.
    events += run_events(
        ledger_down,
        t0 + 4 * SEC,
        {
            "span_id": new_span_id(),
            "status": "error",
            "error": {"type": "BudgetExceeded"},
            "attributes": {"controlroom.budget.reason": "ledger_unavailable"},
        },
        {"span_id": new_span_id(), "status": "error", "error": {"type": "ValueError"}},
    )
    send(client, events)
    r = client.post(
        "/v1/approvals",
        json={
            "run_id": waiting,
            "action": "refund",
            "arguments": {"usd": 5},
            "idempotency_key": "k",
            "agent": "bot",
        },
    )
    assert r.status_code in (200, 201), r.text
    wait_projected(client)

    assert ids(client, awaiting_approval="true") == [waiting]
    assert ids(client, refused_by_cap="true") == [unpriced, refused]
    assert ids(client, refused_by_cap="true", agent="bot", has_error="true") == [unpriced, refused]
    assert ids(client, refused_by_cap="true", awaiting_approval="true") == []
    assert ids(client, awaiting_approval="false") == [ledger_down, unpriced, refused, waiting, plain]
    by_id = {x["run_id"]: x for x in client.get("/v1/runs").json()["runs"]}
    assert [by_id[r]["refused_calls"] for r in (plain, waiting, refused, unpriced, ledger_down)] == [
        0,
        0,
        1,
        1,
        0,
    ]
    # Keyset paging holds with the filters.
    first = client.get("/v1/runs", params={"refused_by_cap": "true", "limit": 1}).json()
    assert [x["run_id"] for x in first["runs"]] == [unpriced]
    second = client.get(
        "/v1/runs", params={"refused_by_cap": "true", "limit": 1, "cursor": first["next_cursor"]}
    ).json()
    assert [x["run_id"] for x in second["runs"]] == [refused] and second["next_cursor"] is None

    # A request no longer pending (here withdrawn by the agent) no longer counts.
    r = client.post(f"/v1/approvals/{r.json()['id']}/cancel", json={"reason": "not needed"})
    assert r.status_code == 200, r.text
    assert ids(client, awaiting_approval="true") == []

    for params in ({"awaiting_approval": "maybe"}, {"refused_by_cap": "2"}):
        assert_problem(call(live, "GET", "/v1/runs", params=params), 400, "invalid_query")


def test_run_tree_without_payloads_and_one_spans_payloads(live: Any, client: httpx.Client) -> None:
    t0 = time.time_ns() - 600 * SEC
    run_id, root, child = new_run_id(), new_span_id(), new_span_id()
    big = "x" * 5000
    send(
        client,
        run_events(
            run_id,
            t0,
            {"span_id": root, "name": "agent", "input": {"q": big}, "output": "done"},
            {
                "span_id": child,
                "parent_span_id": root,
                "name": "tool",
                "kind": "tool",
                "input": [1, 2],
                "output": {"a": big},
                "attributes": {"k": "v"},
            },
        ),
    )
    wait_projected(client)
    full = client.get(f"/v1/runs/{run_id}").json()
    assert full["spans"][0]["input"] == {"q": big} and full["spans"][0]["children"][0]["attributes"] == {
        "k": "v"
    }

    r = client.get(f"/v1/runs/{run_id}", params={"payloads": "false"})
    assert r.status_code == 200, r.text
    tree = r.json()
    assert big not in r.text
    (top,) = tree["spans"]
    (leaf,) = top["children"]
    assert (top["span_id"], top["name"], leaf["span_id"], leaf["kind"]) == (root, "agent", child, "tool")
    for s in (top, leaf):
        assert not {"input", "output", "attributes"} & set(s), s
    # Everything else is as the full answer has it.
    strip = {"input", "output", "attributes", "children"}
    assert {k: v for k, v in leaf.items() if k not in strip} == {
        k: v for k, v in full["spans"][0]["children"][0].items() if k not in strip
    }

    one = client.get(f"/v1/runs/{run_id}/spans/{child.upper()}")
    assert one.status_code == 200, one.text
    assert one.json() == {"span_id": child, "input": [1, 2], "output": {"a": big}, "attributes": {"k": "v"}}

    assert_problem(call(live, "GET", f"/v1/runs/{run_id}/spans/{'0' * 15}1"), 404, "not_found")
    assert_problem(call(live, "GET", f"/v1/runs/{new_run_id()}/spans/{child}"), 404, "not_found")
    assert_problem(call(live, "GET", f"/v1/runs/{run_id}/spans/xyz"), 400, "invalid_query", "span_id")
    assert_problem(call(live, "GET", f"/v1/runs/{run_id}", params={"payloads": "nope"}), 400, "invalid_query")
    assert call(live, "GET", f"/v1/runs/{run_id}/spans/{child}", key=None).status_code == 401
