"""The API contract: every JSON response of a set of representative calls validates against the
response models in controlroom.server.schemas (``extra="forbid"``, so a field added or dropped on
either side fails here), and /openapi.json describes the same API."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import ev, new_run_id, new_span_id, wait_projected
from pydantic import BaseModel, ValidationError

from controlroom.config import Settings
from controlroom.events import CLIENT_EVENT_TYPES, SERVER_EVENT_TYPES
from controlroom.server.app import create_app
from controlroom.server.schemas import (
    DailyCosts,
    Health,
    IngestResponse,
    PriceList,
    PriceOut,
    Problem,
    RunDetail,
    RunList,
    RunListItem,
    SpanOut,
)
from controlroom.store.engine import Store

DAY_NS = 86_400 * 10**9
SEC = 10**9
D0 = (time.time_ns() // DAY_NS - 2) * DAY_NS


@pytest.fixture
def client(live: Any) -> Iterator[httpx.Client]:
    """An admin key's client: every route is open to it."""
    with live.client(admin=True) as c:
        yield c


def check(r: httpx.Response, status: int, model: type[BaseModel]) -> dict[str, Any]:
    """The response has this status and a body that ``model`` accepts; returns the body."""
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    media = r.headers["content-type"].split(";")[0]
    assert media == ("application/problem+json" if model is Problem else "application/json"), media
    doc: dict[str, Any] = r.json()
    model.model_validate(doc)
    return doc


def rich_run(run_id: str) -> list[dict[str, Any]]:
    """A run that exercises every optional part of RunDetail / SpanOut / ScoreOut."""
    root, llm, tool, orphan, retry = (new_span_id() for _ in range(5))
    t = D0
    return [
        ev(
            "run.started",
            run_id,
            t,
            {
                "agent": "contract",
                "inputs": {"q": "hello", "n": [1, 2.5, None, True]},
                "model": "gpt-4o",
                "agent_version": "1.2.3",
                "environment": "test",
                "session_id": "sess-1",
                "user_id": "user-1",
                "tags": ["a", "b"],
                "metadata": {"nested": {"k": "v"}},
            },
        ),
        ev("span.started", run_id, t + SEC, {"span_id": root, "name": "loop", "kind": "agent", "input": "x"}),
        ev(
            "span.recorded",
            run_id,
            t + 2 * SEC,
            {
                "span_id": llm,
                "parent_span_id": root,
                "name": "chat",
                "kind": "llm",
                "provider": "openai",
                "model": "gpt-4o",
                "ended_at": t + 3 * SEC,
                "usage": {
                    "input_tokens": 1200,
                    "output_tokens": 300,
                    "cache_read_tokens": 200,
                    "reasoning_tokens": 50,
                },
                "attributes": {"temperature": 0.2},
                "output": {"text": "hi"},
            },
        ),
        ev(
            "span.recorded",
            run_id,
            t + 3 * SEC,
            {
                "span_id": retry,
                "parent_span_id": root,
                "name": "chat",
                "kind": "llm",
                "model": "unknown-model-x",
                "attempt": 2,
                "retry_of": llm,
                "fallback_from": llm,
                "ended_at": t + 4 * SEC,
                "usage": {"input_tokens": 10, "output_tokens": 1},
                "cost_usd": "0.5",
            },
        ),
        ev(
            "span.recorded",
            run_id,
            t + 4 * SEC,
            {
                "span_id": tool,
                "parent_span_id": root,
                "name": "search",
                "kind": "tool",
                "ended_at": t + 5 * SEC,
                "status": "error",
                "error": {"type": "ToolError", "message": "boom"},
            },
        ),
        ev(
            "span.recorded",
            run_id,
            t + 5 * SEC,
            {
                "span_id": orphan,
                "parent_span_id": new_span_id(),
                "name": "orphan",
                "kind": "llm",
                "model": "no-such-model",
                "ended_at": t + 6 * SEC,
                "usage": {"input_tokens": 5},
            },
        ),
        ev("span.ended", run_id, t + 7 * SEC, {"span_id": root, "output": [1, 2]}),
        ev("score.recorded", run_id, t + 8 * SEC, {"name": "q", "value": 1, "span_id": llm}),
        ev(
            "score.recorded",
            run_id,
            t + 8 * SEC,
            {"name": "v", "label": "ok", "comment": "fine", "source": "evaluator", "evaluator": "judge"},
        ),
        ev(
            "run.ended",
            run_id,
            t + 9 * SEC,
            {
                "status": "failed",
                "output": {"a": 1},
                "error": {"type": "E", "message": "m"},
                "failing_span_id": tool,
            },
        ),
    ]


def all_spans(spans: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for s in spans:
        yield s
        yield from all_spans(s["children"])


def test_success_responses_match_the_response_models(client: httpx.Client) -> None:
    price = check(
        client.post(
            "/v1/prices",
            json={
                "model": "acme-1",
                "provider": "acme",
                "input_per_mtok": "1.00",
                "output_per_mtok": "2",
                "cache_read_per_mtok": "0.1",
                "cache_write_per_mtok": "1.25",
                "effective_from": "2020-01-01T00:00:00Z",
            },
        ),
        201,
        PriceOut,
    )
    assert price["input_per_mtok"] == "1" and price["effective_from"].startswith("2020-01-01T00:00:00")
    check(
        client.post("/v1/prices", json={"model": "m", "input_per_mtok": "0", "output_per_mtok": "0"}),
        201,
        PriceOut,
    )
    prices = check(client.get("/v1/prices"), 200, PriceList)
    assert [p["model"] for p in prices["prices"]] == ["acme-1", "m"]

    rid, bare = new_run_id(), new_run_id()
    events = rich_run(rid)
    ingest = check(client.post("/v1/events", json={"events": [*events, {"bad": 1}]}), 200, IngestResponse)
    assert ingest["accepted"] == len(events) and ingest["rejected"][0]["index"] == len(events)
    # A run with a span but no run.started: the nullable fields are null.
    span_only = ev("span.started", bare, D0, {"span_id": new_span_id(), "name": "alone", "kind": "llm"})
    gz = gzip.compress(json.dumps({"events": [span_only]}).encode())
    check(
        client.post(
            "/v1/events", content=gz, headers={"content-type": "application/json", "content-encoding": "gzip"}
        ),
        200,
        IngestResponse,
    )
    dup = check(client.post("/v1/events", json={"events": events[:2]}), 200, IngestResponse)
    assert dup == {"accepted": 0, "duplicates": 2, "rejected": []}
    wait_projected(client)

    health = check(client.get("/v1/health"), 200, Health)
    assert health["status"] == "ok" and health["projector"]["lag_events"] == 0
    assert health["projector"]["position"] == health["projector"]["head"] == len(events) + 1
    assert health["database"] in ("sqlite", "postgresql")

    detail = check(client.get(f"/v1/runs/{rid}"), 200, RunDetail)
    spans = list(all_spans(detail["spans"]))
    assert len(spans) == 5
    for s in spans:  # the nested spans too, one by one (the model is recursive)
        SpanOut.model_validate(s)
    assert {s["cost_source"] for s in spans} == {"computed", "reported", "unknown", None}
    assert any(s.get("orphan") for s in spans) and any(s["error"] for s in spans)
    assert len(detail["scores"]) == 2 and detail["error"] == {"type": "E", "message": "m"}
    bare_detail = check(client.get(f"/v1/runs/{bare}"), 200, RunDetail)
    assert bare_detail["agent"] is None and bare_detail["ended_at"] is None

    page = check(client.get("/v1/runs", params={"limit": 1}), 200, RunList)
    assert page["next_cursor"] is not None
    page2 = check(client.get("/v1/runs", params={"limit": 1, "cursor": page["next_cursor"]}), 200, RunList)
    assert page2["next_cursor"] is None
    listed = check(
        client.get("/v1/runs", params={"status": "failed,running", "has_error": "true"}), 200, RunList
    )
    for summary in listed["runs"]:
        RunListItem.model_validate(summary)
    check(client.get("/v1/runs", params={"agent": "nobody"}), 200, RunList)

    for params in ({}, {"group_by": "agent"}, {"group_by": "agent,provider,model"}, {"since": "2020-01-01"}):
        costs = check(client.get("/v1/costs/daily", params=params), 200, DailyCosts)
        assert costs["total"]["calls"] == 3  # two priced or reported LLM calls and one unknown
        assert costs["total"]["unpriced_calls"] == 1


def test_error_responses_are_problem_documents(live: Any, client: httpx.Client) -> None:
    rid = new_run_id()
    cases: list[tuple[httpx.Response, int, str, set[str]]] = [
        (
            client.post("/v1/events", content=b"{", headers={"content-type": "application/json"}),
            400,
            "invalid_json",
            set(),
        ),
        (client.post("/v1/events", json={"events": [{"id": "x"}]}), 400, "invalid_event", {"rejected"}),
        (client.post("/v1/events", json={"nope": 1}), 400, "invalid_event", set()),
        (
            client.post(
                "/v1/events",
                content=b"x",
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            ),
            400,
            "invalid_encoding",
            set(),
        ),
        (client.get("/v1/runs", params={"status": "nope"}), 400, "invalid_query", {"parameter"}),
        (client.get("/v1/runs", params={"limit": 0}), 400, "invalid_query", {"errors"}),
        (client.get("/v1/costs/daily", params={"group_by": "x"}), 400, "invalid_query", {"parameter"}),
        (httpx.get(f"{live.url}/v1/runs"), 401, "unauthorized", set()),
        (client.get(f"/v1/runs/{rid}"), 404, "not_found", {"run_id"}),
        (client.get("/nowhere"), 404, "not_found", set()),
        (client.delete("/v1/runs"), 405, "method_not_allowed", set()),
        (client.post("/v1/events", json={"events": [{}] * 1001}), 413, "payload_too_large", {"limit"}),
        (
            client.post("/v1/events", content=b"{}", headers={"content-type": "text/csv"}),
            415,
            "unsupported_media_type",
            set(),
        ),
        (
            client.post("/v1/prices", json={"model": "m", "input_per_mtok": "x", "output_per_mtok": "1"}),
            422,
            "validation_failed",
            {"field"},
        ),
    ]
    wrong_method = next(r for r, status, _, _ in cases if status == 405)  # DELETE /v1/runs
    assert wrong_method.headers["allow"] == "GET"  # what the path does answer
    assert client.put("/v1/prices").headers["allow"] == "GET, POST"
    for r, status, code, extra in cases:
        doc = check(r, status, Problem)
        assert (doc["status"], doc["code"]) == (status, code), doc
        assert doc["type"] == f"https://controlroom.dev/problems/{code}"
        assert set(doc) == {"type", "title", "status", "code", "detail"} | extra, doc
        assert doc["detail"]


def test_the_models_catch_drift() -> None:
    """The checks above can fail: an unknown or a missing member is refused, at any depth."""
    usage = dict.fromkeys(
        ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"), 0
    )
    counts = dict.fromkeys(("span", "llm", "tool", "retry", "fallback", "error"), 0)
    summary = {
        **dict.fromkeys(RunListItem.model_fields, None),
        "run_id": "ab" * 16,
        "status": "running",
        "tags": [],
        "usage": usage,
        "unpriced_calls": 0,
        "counts": counts,
        "refused_calls": 0,
        "scores": [],
    }
    RunList.model_validate({"runs": [summary], "next_cursor": None})  # the baseline is valid
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RunList.model_validate({"runs": [summary], "next_cursor": None, "total": 0})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RunList.model_validate(
            {"runs": [{**summary, "counts": {**counts, "cached": 0}}], "next_cursor": None}
        )
    with pytest.raises(ValidationError, match="Field required"):
        RunList.model_validate(
            {"runs": [{k: v for k, v in summary.items() if k != "cost_usd"}], "next_cursor": None}
        )
    with pytest.raises(ValidationError, match="Field required"):
        RunList.model_validate({"runs": []})


# -- /openapi.json --------------------------------------------------------------------------------

ROUTES = {
    "/v1/events": {"post"},
    "/v1/runs": {"get"},
    "/v1/runs/{run_id}": {"get"},
    "/v1/costs/daily": {"get"},
    "/v1/health": {"get"},
    "/v1/prices": {"get", "post"},
}
RESPONSE_MODELS = {
    ("/v1/events", "post", "200"): IngestResponse,
    ("/v1/runs", "get", "200"): RunList,
    ("/v1/runs/{run_id}", "get", "200"): RunDetail,
    ("/v1/costs/daily", "get", "200"): DailyCosts,
    ("/v1/health", "get", "200"): Health,
    ("/v1/prices", "get", "200"): PriceList,
    ("/v1/prices", "post", "201"): PriceOut,
}


@pytest.fixture
def openapi(live: Any) -> dict[str, Any]:
    r = httpx.get(f"{live.url}/openapi.json")  # no key needed
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


@pytest.fixture(scope="module")
def app_openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document the app serves, built in-process (it depends on neither the database nor the
    server; test_openapi_lists_every_route_and_the_event_batch fetches it over HTTP)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'cr.db'}"
    store = Store(url)
    try:
        return create_app(Settings.load(env={}, database_url=url), store=store, run_worker=False).openapi()
    finally:
        store.dispose()


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def literals(doc: dict[str, Any], schema: Any, seen: set[str] | None = None) -> set[str]:
    """Every const / enum string reachable from ``schema``."""
    seen = set() if seen is None else seen
    out: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref is not None:
            if ref in seen:
                return out
            seen.add(ref)
            return literals(doc, resolve(doc, schema), seen)
        if isinstance(schema.get("const"), str):
            out.add(schema["const"])
        out.update(v for v in schema.get("enum", ()) if isinstance(v, str))
        for value in schema.values():
            out |= literals(doc, value, seen)
    elif isinstance(schema, list):
        for value in schema:
            out |= literals(doc, value, seen)
    return out


def test_openapi_lists_every_route_and_the_event_batch(
    openapi: dict[str, Any], app_openapi: dict[str, Any]
) -> None:
    assert openapi["openapi"].startswith("3.")
    assert openapi["info"]["title"] == "controlroom"
    assert {path: set(ops) for path, ops in openapi["paths"].items() if path in ROUTES} == ROUTES
    assert set(ROUTES) <= set(openapi["paths"])

    schemas = openapi["components"]["schemas"]
    for name in ("EventBatch", "Problem", *(m.__name__ for m in RESPONSE_MODELS.values())):
        assert name in schemas, name
    # The request body of POST /v1/events is the EventBatch.
    body = openapi["paths"]["/v1/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}

    batch = schemas["EventBatch"]
    assert batch["required"] == ["events"]
    items = batch["properties"]["events"]["items"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(items["discriminator"]["mapping"]) == set(CLIENT_EVENT_TYPES)
    types = set()
    for option in items["oneOf"]:
        event = resolve(openapi, option)
        assert event.get("additionalProperties") is False
        assert set(event["required"]) == {"id", "type", "run_id", "ts", "body"}
        types.add(event["properties"]["type"]["const"])
    assert types == set(CLIENT_EVENT_TYPES)
    reachable = literals(openapi, batch)
    assert set(CLIENT_EVENT_TYPES) <= reachable
    assert not set(SERVER_EVENT_TYPES) & reachable  # run.abandoned is the server's

    # The component schemas of the responses list the same fields as the models.
    for model in RESPONSE_MODELS.values():
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields), model.__name__
    # Errors are documented as problem documents, with their media type.
    for path, code in (("/v1/events", "413"), ("/v1/events", "415"), ("/v1/runs/{run_id}", "404")):
        op = next(iter(openapi["paths"][path].values()))
        assert op["responses"][code]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert openapi["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    # The doc-only tests below read the app's document directly: it is the one served.
    assert openapi == app_openapi


def test_openapi_success_responses_reference_their_models(app_openapi: dict[str, Any]) -> None:
    openapi = app_openapi
    wrong = {}
    for (path, method, status), model in RESPONSE_MODELS.items():
        schema = openapi["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        if schema != {"$ref": f"#/components/schemas/{model.__name__}"}:
            wrong[f"{method.upper()} {path} {status}"] = schema
    assert not wrong, wrong


def test_openapi_documents_only_errors_the_server_sends(app_openapi: dict[str, Any]) -> None:
    openapi = app_openapi
    documented = {
        f"{method.upper()} {path}": sorted(op["responses"])
        for path, ops in openapi["paths"].items()
        for method, op in ops.items()
        if "HTTPValidationError" in str(op["responses"].get("422", ""))
    }
    assert documented == {}


def test_openapi_event_timestamps_allow_rfc3339_strings(app_openapi: dict[str, Any]) -> None:
    openapi = app_openapi
    ts = openapi["components"]["schemas"]["RunStarted"]["properties"]["ts"]
    options = ts.get("anyOf", [ts])
    assert {"integer", "string"} <= {o.get("type") for o in options}, ts


def test_every_span_in_the_tree_has_the_same_members(client: httpx.Client) -> None:
    rid, root = new_run_id(), new_span_id()
    events = [
        ev("run.started", rid, D0, {"agent": "shape"}),
        ev("span.started", rid, D0 + SEC, {"span_id": root, "name": "root"}),
        ev(
            "span.started",
            rid,
            D0 + 2 * SEC,
            {"span_id": new_span_id(), "name": "kid", "parent_span_id": root},
        ),
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3
    wait_projected(client)
    spans = list(all_spans(client.get(f"/v1/runs/{rid}").json()["spans"]))
    assert len(spans) == 2
    assert [set(s) for s in spans] == [set(SpanOut.model_fields)] * 2
