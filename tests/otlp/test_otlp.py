"""OTLP/HTTP ingest against a real server: the real OpenTelemetry SDK exporter, the JSON encoding,
golden payloads per attribute convention, arrival out of order, and bad input."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.trace import Status, StatusCode
from otel_helpers import (
    exporting_provider,
    flat,
    json_to_protobuf,
    recording_provider,
    to_otlp_json,
    to_protobuf,
)
from sqlalchemy import func, select

from conftest import LiveServer
from controlroom.store.tables import events
from tests_support import wait_for

GOLDEN = Path(__file__).parent / "golden"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def run_view(live: LiveServer, run_id: str, spans: int, status: str | None = None) -> dict[str, Any]:
    with live.client() as http:

        def ready() -> dict[str, Any] | None:
            r = http.get(f"/v1/runs/{run_id}")
            body: dict[str, Any] = r.json()
            ok = r.status_code == 200 and body["counts"]["span"] == spans
            return body if ok and (status is None or body["status"] == status) else None

        return wait_for(ready)


def by_name(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in flat(view["spans"])}


def log_size(live: LiveServer) -> int:
    with live.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def log_rows(live: LiveServer) -> set[tuple[str, bytes]]:
    """The run log as (event id, body) pairs."""
    with live.store.read() as conn:
        return {(i, bytes(b)) for i, b in conn.execute(select(events.c.event_id, events.c.body))}


def post(live: LiveServer, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with live.client() as http:
        return http.post("/v1/traces", content=body, headers=headers)


def test_real_sdk_exporter_genai_spans(live: LiveServer) -> None:
    with exporting_provider(live.url, live.key) as provider:
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span(
            "invoke_agent travel",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "travel-agent",
                "gen_ai.usage.input_tokens": 5000,  # the agent's roll-up of its calls: not counted again
            },
        ) as root:
            run_id = format(root.get_span_context().trace_id, "032x")
            for i in range(2):
                with tracer.start_as_current_span(
                    "chat gpt-4o",
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 1200 + i,
                        "gen_ai.usage.output_tokens": 300,
                        "gen_ai.usage.cache_read.input_tokens": 200,
                    },
                ):
                    pass
            with tracer.start_as_current_span(
                "execute_tool book", attributes={"gen_ai.operation.name": "execute_tool"}
            ) as tool:
                tool.set_status(Status(StatusCode.ERROR, "no seats left"))
                tool.set_attribute("error.type", "NoSeats")
    view = run_view(live, run_id, 4, "succeeded")
    # per call: (1000 + i) uncached x $2.50/M + 200 cached x $1.25/M + 300 x $10/M
    expected = sum((1000 + i) * 2.5 + 200 * 1.25 + 300 * 10 for i in range(2)) / 1e6
    assert float(view["cost_usd"]) == pytest.approx(expected, abs=1e-12)
    assert (
        view["agent"] == "travel-agent" and view["environment"] == "prod" and view["agent_version"] == "2.1.0"
    )
    assert view["usage"]["input_tokens"] == 2401 and view["counts"]["llm"] == 2
    tool_span = by_name(view)["execute_tool book"]
    assert tool_span["kind"] == "tool" and tool_span["error"] == {
        "type": "NoSeats",
        "message": "no seats left",
    }


@pytest.mark.parametrize("encoding", ["json", "json+gzip", "protobuf+deflate", "protobuf+gzip"])
def test_encodings_answer_in_the_request_content_type(live: LiveServer, encoding: str) -> None:
    with recording_provider() as (provider, exporter):
        with provider.get_tracer("app").start_as_current_span(
            "chat",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 2,
            },
        ) as s:
            run_id = format(s.get_span_context().trace_id, "032x")
        spans = exporter.get_finished_spans()
    as_json = encoding.startswith("json")
    body = to_otlp_json(spans) if as_json else to_protobuf(spans)
    headers = dict(JSON if as_json else PROTOBUF)
    if encoding.endswith("gzip"):
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding.endswith("deflate"):
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    r = post(live, body, headers)
    assert r.status_code == 200
    if as_json:
        assert r.headers["content-type"].startswith("application/json") and r.json() == {}
    else:
        assert r.headers["content-type"] == "application/x-protobuf"
        assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    view = run_view(live, run_id, 1, "succeeded")
    assert view["usage"]["input_tokens"] == 10


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("convention", ["genai_current", "genai_legacy", "openinference", "openllmetry"])
@pytest.mark.parametrize("wire", ["json", "protobuf"])
def test_golden_payloads(live: LiveServer, convention: str, wire: str) -> None:
    expected = golden("expected")[convention]
    doc = golden(convention)
    body = json.dumps(doc).encode() if wire == "json" else json_to_protobuf(doc)
    assert post(live, body, JSON if wire == "json" else PROTOBUF).status_code == 200
    view = run_view(live, expected["run_id"], expected["counts"]["span"], expected["status"])
    for key in (
        "agent",
        "status",
        "usage",
        "cost_usd",
        "counts",
        "error",
        "session_id",
        "user_id",
        "inputs",
        "output",
    ):
        if key in expected:
            assert view[key] == expected[key], key
    spans = by_name(view)
    for name, want in expected["spans"].items():
        for key, value in want.items():
            assert spans[name][key] == value, (name, key)
    if "failing_span" in expected:
        assert view["failing_span_id"] == spans[expected["failing_span"]]["span_id"]
    if "errored_span" in expected:
        errored = [s for s in flat(view["spans"]) if s["status"] == "error"]
        assert [(s["name"], s["error"]) for s in errored] == [
            (expected["errored_span"]["name"], expected["errored_span"]["error"])
        ]
    with live.client() as http:
        costs = http.get("/v1/costs/daily", params={"since": "2026-10-01", "until": "2026-11-30"}).json()
    assert costs["total"]["calls"] == expected["calls"]
    assert costs["total"]["cost_usd"] == expected["cost_usd"]


def test_out_of_order_duplicated_and_rootless(live: LiveServer) -> None:
    with recording_provider(service="billing-service") as (provider, exporter):
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span(
            "invoke_agent billing",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "billing"},
        ) as root:
            run_id = format(root.get_span_context().trace_id, "032x")
            with (
                tracer.start_as_current_span("chain"),
                tracer.start_as_current_span(
                    "chat",
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 1000,
                        "gen_ai.usage.output_tokens": 100,
                    },
                ),
            ):
                pass
        with tracer.start_as_current_span("orphan-root") as lost:
            rootless_id = format(lost.get_span_context().trace_id, "032x")
            with tracer.start_as_current_span(
                "chat",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 10,
                    "gen_ai.usage.output_tokens": 1,
                },
            ):
                pass
        spans = exporter.get_finished_spans()
    chat, chain, root_span, orphan_chat, _lost_root = spans
    # the child before its parent, the root last, the child again (a retried export)
    for batch in ([chat], [chain, chat], [root_span], [chat], [orphan_chat]):
        assert post(live, to_protobuf(batch), PROTOBUF).status_code == 200
    view = run_view(live, run_id, 3, "succeeded")
    assert view["agent"] == "billing" and view["counts"]["llm"] == 1
    assert float(view["cost_usd"]) == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6, abs=1e-12)
    assert [s["name"] for s in view["spans"]] == ["invoke_agent billing"]
    assert view["spans"][0]["children"][0]["children"][0]["name"] == "chat"
    orphan = run_view(live, rootless_id, 1)  # shown as a run all the same
    assert orphan["status"] == "running" and orphan["agent"] == "billing-service"
    assert orphan["spans"][0]["orphan"] is True
    with live.client() as http:
        assert http.get("/v1/costs/daily").json()["total"]["calls"] == 2


def test_some_bad_spans_are_rejected_and_the_rest_kept(live: LiveServer) -> None:
    doc = golden("genai_current")
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["spanId"] = "abc"  # wrong length
    r = post(live, json.dumps(doc).encode(), JSON)
    assert r.status_code == 200
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "spanId must be 8 bytes" in partial["errorMessage"]
    assert log_size(live) > 0


BAD_INPUTS = [
    ("random bytes", b"\xff\x00\x13garbage\x99" * 10, PROTOBUF, 400, None),
    ("truncated protobuf", None, PROTOBUF, 400, None),
    ("wrong content type", b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("no content type", b"{}", {}, 415, "unsupported_media_type"),
    ("malformed json", b"{not json", JSON, 400, "invalid_json"),
    ("json not otlp", b"[1, 2]", JSON, 422, "validation_failed"),
    ("trace id of the wrong length", None, JSON, 400, "invalid_event"),
    ("bad gzip", b"\x1f\x8bnope", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "invalid_encoding"),
]


@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_4xx_and_harms_nothing(
    live: LiveServer, case: str, body: bytes | None, headers: dict[str, str], status: int, code: str | None
) -> None:
    good = golden("genai_current")
    assert post(live, json.dumps(good).encode(), JSON).status_code == 200
    before = log_size(live)
    if case == "truncated protobuf":
        body = json_to_protobuf(good)[:-7]
    elif case == "trace id of the wrong length":
        for s in good["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            s["traceId"] = "abcd"
        body = json.dumps(good).encode()
    assert body is not None
    r = post(live, body, headers)
    assert r.status_code in (400, 415, 422) if code is None else r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json" and problem["detail"]
    if code is not None:
        assert problem["code"] == code
    assert log_size(live) == before
    run_view(live, "000000000000000000000000000000a1", 4, "succeeded")


def test_oversized_body_is_413(live: LiveServer) -> None:
    r = post(live, b"\x0a" * (live.settings.max_body_bytes + 1), PROTOBUF)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_missing_key_is_401(live: LiveServer) -> None:
    r = httpx.post(f"{live.url}/v1/traces", content=json.dumps(golden("genai_current")), headers=JSON)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_fuzzed_requests_never_cause_a_5xx_nor_lose_data(live: LiveServer) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = golden("genai_current")
    assert post(live, json.dumps(good).encode(), JSON).status_code == 200
    valid_pb = json_to_protobuf(good)
    accepted = log_rows(live)

    def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
        buf = bytearray(data)
        for pos, value in flips:
            buf[pos % len(buf)] = value
        return bytes(buf)

    bodies = st.one_of(
        st.binary(max_size=2048),
        st.builds(
            mutate,
            st.just(valid_pb),
            st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
        ),
        st.builds(lambda n: valid_pb[:n], st.integers(0, len(valid_pb))),
    )
    json_bodies = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "resourceSpans",
                        "scopeSpans",
                        "spans",
                        "traceId",
                        "spanId",
                        "attributes",
                        "key",
                        "value",
                        "stringValue",
                        "intValue",
                        "status",
                        "code",
                        "startTimeUnixNano",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    ).map(lambda doc: json.dumps(doc).encode())

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=bodies, as_json=st.booleans(), json_body=json_bodies)
    def check(body: bytes, as_json: bool, json_body: bytes) -> None:
        r = post(live, json_body if as_json else body, JSON if as_json else PROTOBUF)
        assert r.status_code < 500, r.text

    check()
    assert accepted <= log_rows(live)  # every event accepted before is still there, unchanged
    # mutated copies may add spans to the golden trace, but its own four are intact
    original = {s["spanId"]: s["name"] for s in good["resourceSpans"][0]["scopeSpans"][0]["spans"]}
    with live.client() as http:

        def originals() -> dict[str, str] | None:
            r = http.get("/v1/runs/000000000000000000000000000000a1")
            if r.status_code != 200:
                return None
            found = {s["span_id"]: s["name"] for s in flat(r.json()["spans"]) if s["span_id"] in original}
            return found if len(found) == len(original) else None

        assert wait_for(originals) == original
