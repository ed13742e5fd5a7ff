"""OTLP/HTTP ingest throughput: agent traces of 6 spans with ~1 KB of message content, as
ExportTraceServiceRequest protobuf bodies of ~500 spans, posted to POST /v1/traces by several
client processes; spans/s acknowledged (durable) and the projector's lag, beside the same traces
sent through POST /v1/events (as span.recorded events).

    .venv/bin/python bench/otlp.py [--backend sqlite|postgresql] [--traces 6000] [--clients 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from typing import Any

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from common import create_key, fresh_database, log, machine_info, percentile, serve, write_result

SPANS_PER_TRACE = 6
TRACES_PER_REQUEST = 83  # ~500 spans
CONTENT = "x" * 500  # input + output: ~1 KB of message content per model call


def kv(key: str, value: str | int) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def trace_spans(now: int) -> list[Span]:
    """invoke_agent -> 2 x (chat + execute_tool) + a final chat: 6 spans."""
    trace_id = os.urandom(16)
    ids = [os.urandom(8) for _ in range(SPANS_PER_TRACE)]
    spans = [
        Span(
            trace_id=trace_id,
            span_id=ids[0],
            name="invoke_agent support",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 9_000_000,
            attributes=[kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", "support")],
        )
    ]
    for i in range(1, SPANS_PER_TRACE):
        if i % 2:
            attrs = [
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.provider.name", "openai"),
                kv("gen_ai.request.model", "gpt-4o-mini"),
                kv("gen_ai.usage.input_tokens", 800),
                kv("gen_ai.usage.output_tokens", 120),
                kv("gen_ai.input.messages", CONTENT),
                kv("gen_ai.output.messages", CONTENT),
            ]
            name = "chat gpt-4o-mini"
        else:
            attrs = [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", "lookup_order")]
            name = "execute_tool lookup_order"
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=ids[i],
                parent_span_id=ids[0],
                name=name,
                start_time_unix_nano=now + i * 1_000_000,
                end_time_unix_nano=now + i * 1_000_000 + 500_000,
                attributes=attrs,
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )
    return spans


def otlp_body(now: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "support-service"))
    ss = rs.scope_spans.add()
    for _ in range(TRACES_PER_REQUEST):
        ss.spans.extend(trace_spans(now))
    return bytes(req.SerializeToString())


def events_body(now: int) -> bytes:
    """The same traces as span.recorded events for /v1/events."""
    events: list[dict[str, Any]] = []
    for _ in range(TRACES_PER_REQUEST):
        run_id = os.urandom(16).hex()
        root = os.urandom(8).hex()
        events.append(
            {
                "id": f"{run_id}.start",
                "type": "run.started",
                "run_id": run_id,
                "ts": now,
                "body": {"agent": "support"},
            }
        )
        for i in range(SPANS_PER_TRACE):
            sid = root if i == 0 else os.urandom(8).hex()
            body: dict[str, Any] = {
                "span_id": sid,
                "name": "chat" if i % 2 else "tool",
                "kind": "agent" if i == 0 else ("llm" if i % 2 else "tool"),
                "ended_at": now + 500_000,
            }
            if i:
                body["parent_span_id"] = root
            if i % 2:
                body.update(
                    provider="openai",
                    model="gpt-4o-mini",
                    input=CONTENT,
                    output=CONTENT,
                    usage={"input_tokens": 800, "output_tokens": 120},
                )
            events.append(
                {"id": f"{run_id}{sid}", "type": "span.recorded", "run_id": run_id, "ts": now, "body": body}
            )
        events.append(
            {
                "id": f"{run_id}.end",
                "type": "run.ended",
                "run_id": run_id,
                "ts": now + 500_000,
                "body": {"status": "succeeded"},
            }
        )
    return orjson.dumps({"events": events})


def client(url: str, key: str, path: str, bodies: list[bytes], ctype: str, go: Any, out: Any) -> None:
    latencies = []
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {key}", "Content-Type": ctype}, timeout=120
    ) as http:
        go.wait()
        for body in bodies:
            t = time.perf_counter()
            r = http.post(path, content=body)
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    out.put(latencies)


def run(backend: str, route: str, traces: int, clients: int) -> dict[str, Any]:
    now = time.time_ns() - 60 * 10**9
    requests = max(clients, traces // TRACES_PER_REQUEST)
    build = otlp_body if route == "otlp" else events_body
    bodies = [build(now) for _ in range(requests)]
    path, ctype = (
        ("/v1/traces", "application/x-protobuf") if route == "otlp" else ("/v1/events", "application/json")
    )
    spans = requests * TRACES_PER_REQUEST * SPANS_PER_TRACE
    with fresh_database(backend, f"otlp_{route}") as db, serve(db) as server:
        key = create_key(db)
        ctx = multiprocessing.get_context("spawn")
        go, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=client, args=(server.url, key, path, bodies[i::clients], ctype, go, out))
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        time.sleep(1.0)  # let the client processes start before the clock does
        t0 = time.perf_counter()
        go.set()
        max_lag = 0.0
        done = 0
        latencies: list[float] = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while done < clients:
                try:
                    latencies += out.get(timeout=0.25)
                    done += 1
                except Exception:
                    pass
                max_lag = max(max_lag, http.get("/v1/health").json()["projector"]["lag_seconds"])
            acked = time.perf_counter() - t0
            while (health := http.get("/v1/health").json()["projector"])["lag_events"] > 0:
                max_lag = max(max_lag, health["lag_seconds"])
                time.sleep(0.05)
            caught_up = time.perf_counter() - t0 - acked
        for p in procs:
            p.join()
    return {
        "backend": backend,
        "route": path,
        "spans": spans,
        "clients": clients,
        "spans_per_s_acknowledged": spans / acked,
        "request_p50_ms": percentile(latencies, 50) * 1000,
        "request_p99_ms": percentile(latencies, 99) * 1000,
        "projector_max_lag_s": max_lag,
        "projector_caught_up_after_last_ack_s": caught_up,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--traces", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    results = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        for route in ("otlp", "events"):
            log(f"otlp bench: {backend} {route}")
            results.append(run(backend, route, args.traces, args.clients))
            print(json.dumps(results[-1]))
    write_result("otlp", {"machine": machine_info(), "results": results})


if __name__ == "__main__":
    main()
