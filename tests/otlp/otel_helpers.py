"""Real OpenTelemetry SDK pieces pointed at a controlroom server, and OTLP payload builders."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextmanager
def exporting_provider(url: str, key: str, service: str = "travel-service") -> Iterator[TracerProvider]:
    """A TracerProvider whose spans go to controlroom through the real OTLP/HTTP protobuf exporter."""
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service, "service.version": "2.1.0", "deployment.environment.name": "prod"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider
    finally:
        provider.shutdown()


@contextmanager
def recording_provider(
    service: str = "travel-service",
) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def to_protobuf(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def _map_ids(node: Any, convert: Callable[[str], str]) -> Any:
    """``node`` with every traceId / spanId / parentSpanId value converted."""
    if isinstance(node, dict):
        return {
            k: convert(v) if k in ("traceId", "spanId", "parentSpanId") else _map_ids(v, convert)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_map_ids(v, convert) for v in node]
    return node


def to_otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP/JSON encoding: lowerCamelCase, hex trace and span ids, 64-bit integers as strings."""
    doc = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    return json.dumps(_map_ids(doc, lambda v: base64.b64decode(v).hex())).encode()


def json_to_protobuf(doc: dict[str, Any]) -> bytes:
    """An OTLP/JSON document (hex ids) as the protobuf request (protobuf's JSON mapping: base64 ids)."""
    fixed = _map_ids(doc, lambda v: base64.b64encode(bytes.fromhex(v)).decode())
    return bytes(ParseDict(fixed, ExportTraceServiceRequest()).SerializeToString())


def flat(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of a run's span tree, each followed by its descendants."""
    return [x for s in tree for x in (s, *flat(s["children"]))]
