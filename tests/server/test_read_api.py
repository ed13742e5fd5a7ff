"""The read API end to end through the real server: run list filters and keyset pagination, the span
tree of one run, daily cost rollups checked against figures computed here from the events sent,
and project isolation."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_support import ev, new_run_id, new_span_id, wait_projected

from controlroom.accounts import projects

DAY_NS = 86_400 * 10**9
HOUR = 3600 * 10**9
SEC = 10**9
# Midnight UTC three days ago: D0, D1 = D0 + 1 day, D2 = D0 + 2 days (all in the past).
D0 = (time.time_ns() // DAY_NS - 3) * DAY_NS
D1 = D0 + DAY_NS
D2 = D0 + 2 * DAY_NS
M = Decimal(1_000_000)


def rfc(ns: int) -> str:
    """RFC 3339 UTC, whole seconds (independent of the server's formatter)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // SEC))


def day(ns: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ns // SEC))


def started(run_id: str, ts: int, agent: str, **body: Any) -> dict[str, Any]:
    return ev("run.started", run_id, ts, {"agent": agent, **body})


def ended(run_id: str, ts: int, status: str, **body: Any) -> dict[str, Any]:
    return ev("run.ended", run_id, ts, {"status": status, **body})


def recorded(run_id: str, span_id: str, ts: int, *, dur: int = SEC, **body: Any) -> dict[str, Any]:
    body = {"span_id": span_id, "name": body.pop("name", "call"), "ended_at": ts + dur, **body}
    return ev("span.recorded", run_id, ts, body)


@pytest.fixture
def client(live: Any) -> Iterator[httpx.Client]:
    """The project's admin key: it reads, sends and sets prices."""
    with live.client(admin=True) as c:
        yield c


def post(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": len(events), "duplicates": 0, "rejected": []}


def set_price(client: httpx.Client, model: str, inp: str, out: str, **extra: Any) -> None:
    r = client.post(
        "/v1/prices", json={"model": model, "input_per_mtok": inp, "output_per_mtok": out, **extra}
    )
    assert r.status_code == 201, r.text


def list_ids(client: httpx.Client, **params: Any) -> list[str]:
    r = client.get("/v1/runs", params={"limit": 200, **params})
    assert r.status_code == 200, (params, r.text)
    assert r.json()["next_cursor"] is None
    return [x["run_id"] for x in r.json()["runs"]]


def dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# -- GET /v1/runs filters -------------------------------------------------------------------------


def test_run_list_filters(client: httpx.Client) -> None:
    set_price(client, "acme-1", "1.00", "2.00")
    r = {n: new_run_id() for n in range(1, 8)}
    llm = {"kind": "llm", "provider": "acme", "model": "acme-1"}
    events = [
        # r1: planner / prod / vip,alpha / D0 10:00 / succeeded / $1.00 exactly
        started(r[1], D0 + 10 * HOUR, "planner", environment="prod", tags=["vip", "alpha"]),
        recorded(r[1], new_span_id(), D0 + 10 * HOUR + SEC, usage={"input_tokens": 1_000_000}, **llm),
        ended(r[1], D0 + 10 * HOUR + 5 * SEC, "succeeded"),
        # r2: planner / staging / beta / D0 11:00 / failed
        started(r[2], D0 + 11 * HOUR, "planner", environment="staging", tags=["beta"]),
        ended(r[2], D0 + 11 * HOUR + SEC, "failed", error={"type": "Timeout", "message": "took too long"}),
        # r3: coder / prod / vip / D1 09:00 / still running, but a tool span errored
        started(r[3], D1 + 9 * HOUR, "coder", environment="prod", tags=["vip"]),
        recorded(r[3], new_span_id(), D1 + 9 * HOUR + SEC, kind="tool", status="error"),
        # r4: coder / no environment / no tags / D1 10:00 / cancelled
        started(r[4], D1 + 10 * HOUR, "coder"),
        ended(r[4], D1 + 10 * HOUR + SEC, "cancelled"),
        # r5: writer / prod / alpha / D2 08:00 / succeeded / $0.50
        started(r[5], D2 + 8 * HOUR, "writer", environment="prod", tags=["alpha"]),
        recorded(r[5], new_span_id(), D2 + 8 * HOUR + SEC, usage={"output_tokens": 250_000}, **llm),
        ended(r[5], D2 + 8 * HOUR + 9 * SEC, "succeeded"),
        # r6: writer / staging / D2 09:00 / succeeded / $3 reported by the client
        started(r[6], D2 + 9 * HOUR, "writer", environment="staging"),
        recorded(r[6], new_span_id(), D2 + 9 * HOUR + SEC, cost_usd="3", usage={"input_tokens": 5}, **llm),
        ended(r[6], D2 + 9 * HOUR + 2 * SEC, "succeeded"),
        # r7: only a span, no run.started: no agent, running, D2 10:00
        recorded(r[7], new_span_id(), D2 + 10 * HOUR, kind="tool"),
    ]
    post(client, events)
    wait_projected(client)

    def ids(*ns: int) -> list[str]:
        return [r[n] for n in ns]

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, ids(7, 6, 5, 4, 3, 2, 1)),
        ({"agent": "planner"}, ids(2, 1)),
        ({"agent": "coder"}, ids(4, 3)),
        ({"agent": "nobody"}, []),
        ({"status": "succeeded"}, ids(6, 5, 1)),
        ({"status": "failed,cancelled"}, ids(4, 2)),
        ({"status": " running , failed "}, ids(7, 3, 2)),
        ({"status": "running"}, ids(7, 3)),
        ({"status": "abandoned"}, []),
        ({"environment": "prod"}, ids(5, 3, 1)),
        ({"environment": "staging"}, ids(6, 2)),
        ({"tag": "vip"}, ids(3, 1)),
        ({"tag": "alpha"}, ids(5, 1)),
        ({"tag": "beta"}, ids(2)),
        ({"tag": "missing"}, []),
        ({"since": rfc(D1)}, ids(7, 6, 5, 4, 3)),
        ({"since": str(D1)}, ids(7, 6, 5, 4, 3)),  # epoch nanoseconds work too
        ({"until": rfc(D1)}, ids(2, 1)),
        ({"since": rfc(D1), "until": rfc(D2)}, ids(4, 3)),
        ({"since": rfc(D1 + 9 * HOUR)}, ids(7, 6, 5, 4, 3)),  # since is inclusive
        ({"until": rfc(D1 + 9 * HOUR)}, ids(2, 1)),  # until is exclusive
        ({"min_cost_usd": "1"}, ids(6, 1)),  # r1 costs exactly $1: included
        ({"min_cost_usd": "0.5"}, ids(6, 5, 1)),
        ({"min_cost_usd": "0.500000001"}, ids(6, 1)),
        ({"min_cost_usd": "3.000000001"}, []),
        ({"has_error": "true"}, ids(3, 2)),
        ({"has_error": "false"}, ids(7, 6, 5, 4, 1)),
        ({"agent": "writer", "min_cost_usd": "1"}, ids(6)),
        ({"environment": "prod", "has_error": "true"}, ids(3)),
        ({"tag": "vip", "status": "succeeded"}, ids(1)),
        ({"agent": "planner", "since": rfc(D1)}, []),
    ]
    failures = [
        f"{params}: got {got}, expected {want}"
        for params, want in cases
        if (got := list_ids(client, **params)) != want
    ]
    assert not failures, "\n".join(failures)

    # The summaries carry what was sent.
    runs = {x["run_id"]: x for x in client.get("/v1/runs").json()["runs"]}
    assert dec(runs[r[1]]["cost_usd"]) == Decimal("1.00")
    assert dec(runs[r[5]]["cost_usd"]) == Decimal("0.50")
    assert dec(runs[r[6]]["cost_usd"]) == Decimal(3)
    assert runs[r[2]]["error"] == {"type": "Timeout", "message": "took too long"}
    assert runs[r[2]]["status"] == "failed"
    assert runs[r[3]]["counts"]["error"] == 1 and runs[r[3]]["status"] == "running"
    assert runs[r[1]]["tags"] == ["vip", "alpha"]
    assert runs[r[1]]["started_at"].startswith(rfc(D0 + 10 * HOUR)[:-1])
    assert runs[r[1]]["duration_ms"] == 5000
    assert runs[r[7]]["agent"] is None


# -- keyset pagination ----------------------------------------------------------------------------


def walk(client: httpx.Client, **params: Any) -> list[list[str]]:
    pages = []
    cursor = None
    for _ in range(100):
        q = {"limit": 3, **params, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/runs", params=q).json()
        pages.append([x["run_id"] for x in body["runs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination does not end")


def test_keyset_pagination_walks_every_run_once_in_order(client: httpx.Client) -> None:
    # 10 runs; five of them start at the same nanosecond, so ties are broken by run_id.
    starts = [D0 + HOUR, D0 + 2 * HOUR, *([D0 + 3 * HOUR] * 5), D0 + 4 * HOUR, D0 + 5 * HOUR, D1]
    runs = [(ts, new_run_id(), "even" if i % 2 == 0 else "odd") for i, ts in enumerate(starts)]
    post(client, [started(rid, ts, agent) for ts, rid, agent in runs])
    wait_projected(client)
    expected = [rid for ts, rid, _ in sorted(runs, key=lambda x: (x[0], x[1]), reverse=True)]

    pages = walk(client)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [rid for p in pages for rid in p] == expected

    # With a filter: only the matching runs, still in order, still each once.
    even = [rid for rid in expected if any(r == rid and a == "even" for _, r, a in runs)]
    pages = walk(client, agent="even")
    assert [len(p) for p in pages] == [3, 2]
    assert [rid for p in pages for rid in p] == even

    # An exact multiple of the page size ends with next_cursor null, not an empty page.
    body = client.get("/v1/runs", params={"limit": 10}).json()
    assert len(body["runs"]) == 10 and body["next_cursor"] is None
    body = client.get("/v1/runs", params={"limit": 5, "agent": "odd"}).json()
    assert len(body["runs"]) == 5 and body["next_cursor"] is None

    # Keyset cursors: a run that starts after a walk began does not shift the walk's later pages.
    first = client.get("/v1/runs", params={"limit": 3}).json()
    newer = new_run_id()
    post(client, [started(newer, D2, "even")])
    wait_projected(client)
    rest, cursor = [], first["next_cursor"]
    while cursor:
        body = client.get("/v1/runs", params={"limit": 3, "cursor": cursor}).json()
        rest += [x["run_id"] for x in body["runs"]]
        cursor = body["next_cursor"]
    assert [x["run_id"] for x in first["runs"]] + rest == expected
    assert list_ids(client)[0] == newer


# -- GET /v1/runs/{id}: the span tree -------------------------------------------------------------


def flatten(spans: list[dict[str, Any]]) -> list[str]:
    out = []
    for s in spans:
        out.append(s["span_id"])
        out += flatten(s["children"])
    return out


def test_run_detail_span_tree(client: httpx.Client) -> None:
    rid = new_run_id()
    a, b, c, d, e, f, x = (new_span_id() for _ in range(7))
    t = D1
    events = [
        started(rid, t, "tree", inputs={"question": "why?"}, metadata={"k": "v"}),
        ev("span.started", rid, t + 1 * SEC, {"span_id": a, "name": "agent-loop", "kind": "agent"}),
        recorded(
            rid, b, t + 2 * SEC, name="search", kind="tool", parent_span_id=a, input={"q": 1}, output=[1]
        ),
        recorded(rid, d, t + 2 * SEC + SEC // 2, name="fetch", kind="retrieval", parent_span_id=b),
        # c's end arrives before its start: the result must not depend on arrival order.
        ev(
            "span.ended",
            rid,
            t + 6 * SEC,
            {"span_id": c, "status": "error", "error": {"type": "RateLimit", "message": "429"}},
        ),
        ev(
            "span.started",
            rid,
            t + 3 * SEC,
            {"span_id": c, "name": "llm-call", "kind": "llm", "parent_span_id": a, "model": "gpt-4o"},
        ),
        # e's parent x never arrives (yet): e is an orphan root; f is e's child.
        recorded(rid, e, t + 4 * SEC, name="lost-child", parent_span_id=x),
        recorded(rid, f, t + 5 * SEC, name="grandchild", parent_span_id=e),
        ev("span.ended", rid, t + 10 * SEC, {"span_id": a}),
        ev("score.recorded", rid, t + 11 * SEC, {"name": "helpful", "value": 0.75, "span_id": c}),
        ev("score.recorded", rid, t + 12 * SEC, {"name": "verdict", "label": "good", "source": "human"}),
        ended(rid, t + 12 * SEC, "failed"),
    ]
    post(client, events)
    wait_projected(client)
    run = client.get(f"/v1/runs/{rid}").json()

    roots = run["spans"]
    assert [s["span_id"] for s in roots] == [a, e]
    assert [s["orphan"] for s in roots] == [False, True]
    root = roots[0]
    assert (root["name"], root["kind"], root["status"], root["parent_span_id"]) == (
        "agent-loop",
        "agent",
        "ok",
        None,
    )
    assert root["duration_ms"] == 9000
    assert [s["span_id"] for s in root["children"]] == [b, c]  # ordered by start
    sb, sc = root["children"]
    assert [s["span_id"] for s in sb["children"]] == [d]
    assert sb["children"][0]["children"] == [] and sb["children"][0]["parent_span_id"] == b
    assert (sb["input"], sb["output"]) == ({"q": 1}, [1])
    assert sc["status"] == "error" and sc["error"] == {"type": "RateLimit", "message": "429"}
    assert (sc["name"], sc["kind"], sc["model"], sc["duration_ms"]) == ("llm-call", "llm", "gpt-4o", 3000)
    assert sc["usage"] is None and sc["cost_usd"] is None and sc["cost_source"] is None
    lost = roots[1]
    assert lost["parent_span_id"] == x
    assert [s["span_id"] for s in lost["children"]] == [f]
    assert lost["children"][0].get("orphan", False) is False  # children carry no flag (see test_contract)
    assert sorted(flatten(roots)) == sorted([a, b, c, d, e, f])  # every span exactly once

    assert run["counts"] == {"span": 6, "llm": 1, "tool": 1, "retry": 0, "fallback": 0, "error": 1}
    assert run["status"] == "failed" and run["failing_span_id"] == c
    assert run["error"] == {"type": "RateLimit", "message": "429"}
    assert run["inputs"] == {"question": "why?"} and run["metadata"] == {"k": "v"}
    assert [(s["name"], s["value"], s["label"], s["span_id"], s["source"]) for s in run["scores"]] == [
        ("helpful", 0.75, None, c, "sdk"),
        ("verdict", None, "good", None, "human"),
    ]

    # The parent arrives late: e is no longer an orphan and moves under it.
    post(
        client, [recorded(rid, x, t + 3 * SEC + SEC // 2, name="late-parent", dur=5 * SEC, parent_span_id=a)]
    )
    wait_projected(client)
    run = client.get(f"/v1/runs/{rid}").json()
    assert [s["span_id"] for s in run["spans"]] == [a]
    assert [s["span_id"] for s in run["spans"][0]["children"]] == [b, c, x]
    late = run["spans"][0]["children"][2]
    assert [s["span_id"] for s in late["children"]] == [e]
    assert late["children"][0].get("orphan", False) is False
    assert run["counts"]["span"] == 7


def test_span_parent_cycles_do_not_hide_spans(client: httpx.Client) -> None:
    rid = new_run_id()
    root, me, p, q = (new_span_id() for _ in range(4))
    post(
        client,
        [
            started(rid, D1, "cycles"),
            recorded(rid, root, D1 + SEC, name="root"),
            recorded(rid, p, D1 + 3 * SEC, name="p", parent_span_id=q),
            recorded(rid, q, D1 + 4 * SEC, name="q", parent_span_id=p),
        ],
    )
    # a span naming itself as its parent is refused at ingest
    r = client.post(
        "/v1/events", json={"events": [recorded(rid, me, D1 + 2 * SEC, name="self", parent_span_id=me)]}
    )
    assert r.status_code == 400 and "its own parent" in r.json()["rejected"][0]["reason"]
    wait_projected(client)
    run = client.get(f"/v1/runs/{rid}").json()
    assert run["counts"]["span"] == 3
    assert sorted(flatten(run["spans"])) == sorted([root, p, q])  # the loop is cut, nothing hidden


# -- /v1/costs/daily ------------------------------------------------------------------------------

ACME = (Decimal("1.00"), Decimal("2.00"))  # USD per million input / output tokens, set below
GPT_4O = (Decimal("2.50"), Decimal("10.00"))  # the public OpenAI price


def cost_spec() -> list[dict[str, Any]]:
    """The LLM calls sent by the costs test, with their cost worked out by hand (None: unknown)."""

    def price(rates: tuple[Decimal, Decimal], i: int, o: int) -> Decimal:
        return (rates[0] * i + rates[1] * o) / M

    calls = [
        # run 1: agent alpha, D0
        {"run": 1, "agent": "alpha", "at": D0 + 10 * HOUR, "provider": "acme", "model": "acme-1", "i": 1_234_567, "o": 89_012},
        {"run": 1, "agent": "alpha", "at": D0 + 11 * HOUR, "provider": "openai", "model": "gpt-4o", "i": 10_000, "o": 2_000},
        {"run": 1, "agent": "alpha", "at": D0 + 12 * HOUR, "provider": "acme", "model": "mystery-9000", "i": 100, "o": 100},
        # run 2: agent beta, D0; the second call reports its own cost
        {"run": 2, "agent": "beta", "at": D0 + 13 * HOUR, "provider": "openai", "model": "gpt-4o", "i": 1_000_000, "o": 100_000},
        {"run": 2, "agent": "beta", "at": D0 + 14 * HOUR, "provider": "openai", "model": "gpt-4o", "i": 1_000, "o": 1_000, "reported": Decimal("0.123")},
        # run 3: agent alpha, D1; no provider; an embedding counts as a call
        {"run": 3, "agent": "alpha", "at": D1 + 1 * HOUR, "provider": None, "model": "acme-1", "i": 3, "o": 7},
        {"run": 3, "agent": "alpha", "at": D1 + 2 * HOUR, "provider": None, "model": "acme-1", "i": 500, "o": 0, "kind": "embedding"},
    ]  # fmt: skip
    for call in calls:
        rates = {"acme-1": ACME, "gpt-4o": GPT_4O}.get(call["model"])
        call["computed"] = price(rates, call["i"], call["o"]) if rates else None
        call["cost"] = call.get("reported", call["computed"])
        call["span_id"] = new_span_id()
    return calls


def expected_daily(
    calls: list[dict[str, Any]], group_by: tuple[str, ...]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0), "unpriced": 0}
    )
    for call in calls:
        row = out[(day(call["at"]), *(call[g] for g in group_by))]
        row["calls"] += 1
        row["input_tokens"] += call["i"]
        row["output_tokens"] += call["o"]
        row["cost"] += call["cost"] or 0
        row["unpriced"] += call["cost"] is None
    return dict(out)


def test_daily_costs_match_hand_computed_figures(client: httpx.Client) -> None:
    set_price(client, "acme-1", "1.00", "2.00")
    calls = cost_spec()
    runs = {n: new_run_id() for n in (1, 2, 3)}
    events = [
        started(runs[1], D0 + 9 * HOUR, "alpha"),
        started(runs[2], D0 + 9 * HOUR, "beta"),
        started(runs[3], D1, "alpha"),
        recorded(runs[1], new_span_id(), D0 + 10 * HOUR, kind="tool", name="no-usage"),  # not a call
    ]
    for call in calls:
        body: dict[str, Any] = {
            "kind": call.get("kind", "llm"),
            "model": call["model"],
            "usage": {"input_tokens": call["i"], "output_tokens": call["o"]},
        }
        if call["provider"]:
            body["provider"] = call["provider"]
        if "reported" in call:
            body["cost_usd"] = str(call["reported"])
        events.append(recorded(runs[call["run"]], call["span_id"], call["at"], **body))
    post(client, events)
    wait_projected(client)
    since, until = day(D0 - DAY_NS), day(D2)

    for group_by in (
        (),
        ("agent",),
        ("model",),
        ("provider",),
        ("agent", "model"),
        ("agent", "provider", "model"),
    ):
        params = {"since": since, "until": until, **({"group_by": ",".join(group_by)} if group_by else {})}
        doc = client.get("/v1/costs/daily", params=params).json()
        assert (doc["since"], doc["until"], doc["timezone"], doc["group_by"]) == (
            since,
            until,
            "UTC",
            list(group_by),
        )
        want = expected_daily(calls, group_by)
        got = {(r["day"], *(r[g] for g in group_by)): r for r in doc["days"]}
        assert sorted(got, key=str) == sorted(want, key=str), group_by
        for key, w in want.items():
            g = got[key]
            assert g["calls"] == w["calls"], (group_by, key)
            assert g["usage"]["input_tokens"] == w["input_tokens"], (group_by, key)
            assert g["usage"]["output_tokens"] == w["output_tokens"], (group_by, key)
            assert g["usage"]["cache_read_tokens"] == 0
            assert Decimal(g["cost_usd"]) == w["cost"], (group_by, key, g["cost_usd"], w["cost"])
            assert g["unpriced_calls"] == w["unpriced"], (group_by, key)
        assert doc["total"]["calls"] == len(calls) == 7
        assert Decimal(doc["total"]["cost_usd"]) == sum(c["cost"] or 0 for c in calls)
        assert doc["total"]["unpriced_calls"] == 1

    # The hand figures, spelled out once: acme-1 1,234,567 in + 89,012 out = $1.412591, etc.
    assert sum(c["cost"] or 0 for c in calls) == Decimal("1.412591") + Decimal("0.045") + Decimal(
        "3.5"
    ) + Decimal("0.123") + Decimal("0.000017") + Decimal("0.0005")

    # A range that holds only D1 has only run 3.
    doc = client.get("/v1/costs/daily", params={"since": day(D1), "until": day(D1)}).json()
    assert [(r["day"], r["calls"]) for r in doc["days"]] == [(day(D1), 2)]
    assert Decimal(doc["total"]["cost_usd"]) == Decimal("0.000517")
    # The default window (the last 30 days up to today) holds all of it.
    doc = client.get("/v1/costs/daily").json()
    assert doc["until"] == day(time.time_ns()) and doc["total"]["calls"] == 7

    # Per span: computed, unknown (null, never $0), reported (wins over computed).
    spans = {}
    for n in (1, 2, 3):
        run = client.get(f"/v1/runs/{runs[n]}").json()
        spans.update({s["span_id"]: s for s in run["spans"]})
        mine = [c for c in calls if c["run"] == n]
        assert Decimal(run["cost_usd"]) == sum(c["cost"] or 0 for c in mine), n
        assert run["unpriced_calls"] == sum(c["cost"] is None for c in mine)
        assert run["usage"]["input_tokens"] == sum(c["i"] for c in mine)
        assert run["usage"]["output_tokens"] == sum(c["o"] for c in mine)
    for c in calls:
        s = spans[c["span_id"]]
        assert s["usage"]["input_tokens"] == c["i"] and s["usage"]["output_tokens"] == c["o"]
        assert dec(s["computed_cost_usd"]) == c["computed"], s
        if "reported" in c:
            assert s["cost_source"] == "reported"
            assert dec(s["cost_usd"]) == dec(s["reported_cost_usd"]) == c["reported"]
            assert dec(s["computed_cost_usd"]) == Decimal("0.0125")
        elif c["computed"] is None:
            assert s["cost_source"] == "unknown"
            assert s["cost_usd"] is None and s["computed_cost_usd"] is None
        else:
            assert s["cost_source"] == "computed"
            assert dec(s["cost_usd"]) == c["computed"] and s["reported_cost_usd"] is None
    unknown = next(c for c in calls if c["model"] == "mystery-9000")
    assert spans[unknown["span_id"]]["cost_usd"] is None
    assert Decimal(client.get(f"/v1/runs/{runs[1]}").json()["cost_usd"]) == Decimal("1.457591")


def test_price_override_applies_from_its_effective_time(client: httpx.Client) -> None:
    """An override with effective_from prices only calls at or after it; earlier calls fall back
    to the built-in price list (or stay unknown)."""
    set_price(client, "acme-2", "1", "1", effective_from=rfc(D1))
    rid = new_run_id()
    before, after = new_span_id(), new_span_id()
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    post(
        client,
        [
            started(rid, D0, "eff"),
            recorded(rid, before, D0 + HOUR, kind="llm", model="acme-2", usage=usage),
            recorded(rid, after, D1 + HOUR, kind="llm", model="acme-2", usage=usage),
        ],
    )
    wait_projected(client)
    spans = {s["span_id"]: s for s in client.get(f"/v1/runs/{rid}").json()["spans"]}
    assert spans[before]["cost_source"] == "unknown" and spans[before]["cost_usd"] is None
    assert spans[after]["cost_source"] == "computed" and Decimal(spans[after]["cost_usd"]) == 1
    prices = client.get("/v1/prices").json()["prices"]
    assert [(p["model"], p["input_per_mtok"], p["effective_from"][:19]) for p in prices] == [
        ("acme-2", "1", rfc(D1)[:19])
    ]


# -- project isolation ----------------------------------------------------------------------------


def test_projects_are_isolated(live: Any, client: httpx.Client) -> None:
    with live.store.write() as conn:
        other = projects.create_project(conn, name="other")
        key_b = projects.create_key(conn, project=other).key
    with live.client(key_b) as b:
        set_price(client, "acme-1", "1", "1")  # project A only
        ra, rb = new_run_id(), new_run_id()
        usage = {"input_tokens": 1_000_000, "output_tokens": 0}
        events_a = [
            started(ra, D1, "agent-a", environment="prod", tags=["t"]),
            recorded(ra, new_span_id(), D1 + SEC, kind="llm", model="acme-1", usage=usage),
        ]
        post(client, events_a)
        # Project B: its own run, plus the SAME run id and the SAME event ids as A's events.
        shared = [
            dict(e, body={**e["body"], "agent": "agent-b"}) if e["type"] == "run.started" else e
            for e in events_a
        ]
        post(b, [started(rb, D1 + HOUR, "agent-b", environment="prod", tags=["t"]), *shared])
        wait_projected(client)

        assert list_ids(client) == [ra]
        assert sorted(list_ids(b)) == sorted([ra, rb])
        for params in (
            {"agent": "agent-b"},
            {"tag": "t", "since": rfc(D1 + HOUR)},
            {"environment": "prod", "agent": "agent-b"},
        ):
            assert list_ids(client, **params) == [], params
        assert list_ids(b, agent="agent-a") == []

        r = client.get(f"/v1/runs/{rb}")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert b.get(f"/v1/runs/{rb}").status_code == 200
        # The same run id reads differently in each project, and prices do not leak across.
        run_a, run_b = client.get(f"/v1/runs/{ra}").json(), b.get(f"/v1/runs/{ra}").json()
        assert (run_a["agent"], run_b["agent"]) == ("agent-a", "agent-b")
        assert Decimal(run_a["cost_usd"]) == 1 and run_a["unpriced_calls"] == 0
        assert run_b["unpriced_calls"] == 1 and run_b["spans"][0]["cost_usd"] is None
        assert client.get("/v1/prices").json()["prices"][0]["model"] == "acme-1"
        assert b.get("/v1/prices").json() == {"prices": []}

        params = {"since": day(D1), "until": day(D1), "group_by": "agent"}
        costs_a, costs_b = (
            client.get("/v1/costs/daily", params=params).json(),
            b.get("/v1/costs/daily", params=params).json(),
        )
        assert [(x["agent"], x["calls"], x["unpriced_calls"]) for x in costs_a["days"]] == [("agent-a", 1, 0)]
        assert [(x["agent"], x["calls"], x["unpriced_calls"]) for x in costs_b["days"]] == [("agent-b", 1, 1)]
        assert Decimal(costs_a["total"]["cost_usd"]) == 1 and Decimal(costs_b["total"]["cost_usd"]) == 0
