"""OTLP/HTTP trace requests (protobuf or JSON) -> plain span records.

A record is a dict: trace_id, span_id, parent_span_id (hex or None), name, start_ns, end_ns,
status_code (0 unset, 1 ok, 2 error), status_message, attributes (dict of Python values), events
(list of {name, time_ns, attributes}), resource (dict). A span that is malformed (ids of the wrong
length, no times) is rejected with a reason, without rejecting the others.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson

from controlroom.errors import InvalidJSON, ValidationFailed

Record = dict[str, Any]
MAX_DEPTH = 8


class SpanRejected(ValueError):
    pass


def _check_id(raw: bytes | str, length: int, what: str) -> str:
    hexed = raw.hex() if isinstance(raw, bytes | bytearray) else str(raw).lower()
    if len(hexed) != 2 * length or any(c not in "0123456789abcdef" for c in hexed):
        raise SpanRejected(f"{what} must be {length} bytes ({2 * length} hex characters), got {raw!r:.80}")
    if hexed.count("0") == 2 * length:
        raise SpanRejected(f"{what} must not be all zeros")
    return hexed


def _parent(raw: bytes | str | None) -> str | None:
    if not raw:
        return None
    return _check_id(raw, 8, "parentSpanId")


# -- protobuf ---------------------------------------------------------------------------------
def _pb_value(v: Any, depth: int = 0) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bool_value":
        return v.bool_value
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if depth >= MAX_DEPTH:
        return None
    if which == "array_value":
        return [_pb_value(x, depth + 1) for x in v.array_value.values]
    return {kv.key: _pb_value(kv.value, depth + 1) for kv in v.kvlist_value.values}


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def decode_protobuf(body: bytes) -> Iterator[Record | SpanRejected]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ValidationFailed(f"the body is not an OTLP ExportTraceServiceRequest (protobuf): {e}") from None
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for s in ss.spans:
                try:
                    yield {
                        "trace_id": _check_id(s.trace_id, 16, "traceId"),
                        "span_id": _check_id(s.span_id, 8, "spanId"),
                        "parent_span_id": _parent(s.parent_span_id),
                        "name": s.name,
                        "start_ns": s.start_time_unix_nano,
                        "end_ns": s.end_time_unix_nano,
                        "status_code": s.status.code,
                        "status_message": s.status.message,
                        "attributes": _pb_attrs(s.attributes),
                        "events": [
                            {
                                "name": e.name,
                                "time_ns": e.time_unix_nano,
                                "attributes": _pb_attrs(e.attributes),
                            }
                            for e in s.events
                        ],
                        "resource": resource,
                        "scope": scope,
                    }
                except SpanRejected as e:
                    yield e


# -- JSON (OTLP/JSON: lowerCamelCase keys, hex ids, 64-bit integers as strings) ---------------
def _get(d: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    if camel in d:
        return d[camel]
    return d.get(snake, default)


def _json_value(v: Any, depth: int = 0) -> Any:
    if not isinstance(v, dict):
        return None
    for key, conv in (("stringValue", str), ("boolValue", bool), ("doubleValue", float), ("intValue", int)):
        if key in v:
            try:
                return conv(v[key])
            except (TypeError, ValueError, OverflowError):
                return None
    if "bytesValue" in v:
        return v["bytesValue"] if isinstance(v["bytesValue"], str) else None
    if depth >= MAX_DEPTH:
        return None
    if "arrayValue" in v:
        return [_json_value(x, depth + 1) for x in _list(_dict(v["arrayValue"]).get("values"))]
    if "kvlistValue" in v:
        return _json_attrs(_dict(v["kvlistValue"]).get("values"), depth + 1)
    return None


def _json_attrs(kvs: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(kvs, list):
        return {}
    return {
        kv["key"]: _json_value(kv.get("value"), depth)
        for kv in kvs
        if isinstance(kv, dict) and isinstance(kv.get("key"), str)
    }


def _uint(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        raise SpanRejected(f"{what} must be an integer, got {value!r:.40}") from None
    if not 0 <= n < 2**64:
        raise SpanRejected(f"{what} must be an unsigned 64-bit integer, got {n}")
    return n


STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _status_code(value: Any) -> int:
    """An integer, as OTLP/JSON requires; the enum's name is accepted too."""
    if isinstance(value, str) and value in STATUS_NAMES:
        return STATUS_NAMES[value]
    code = _uint(value, "status.code")
    if code > 2:
        raise SpanRejected(f"status.code {code} is not 0 (unset), 1 (ok) or 2 (error)")
    return code


def _json_id(value: Any, length: int, what: str) -> str:
    if not isinstance(value, str):
        raise SpanRejected(f"{what} must be a hex string")
    return _check_id(value, length, what)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def decode_json(body: bytes) -> Iterator[Record | SpanRejected]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidJSON(f"the body is not valid JSON: {e}") from None
    resource_spans = _get(doc, "resourceSpans", "resource_spans", []) if isinstance(doc, dict) else None
    if not isinstance(resource_spans, list):
        raise ValidationFailed(
            'the body is not an OTLP ExportTraceServiceRequest: expected {"resourceSpans": [...]}'
        )
    for rs in resource_spans:
        if not isinstance(rs, dict):
            yield SpanRejected("resourceSpans entries must be objects")
            continue
        resource = _json_attrs(_dict(rs.get("resource")).get("attributes"))
        for ss in _list(_get(rs, "scopeSpans", "scope_spans", [])):
            if not isinstance(ss, dict):
                yield SpanRejected("scopeSpans entries must be objects")
                continue
            scope = str(_dict(ss.get("scope")).get("name") or "")
            for s in _list(ss.get("spans")):
                try:
                    if not isinstance(s, dict):
                        raise SpanRejected("spans entries must be objects")
                    status = _dict(s.get("status"))
                    parent = _get(s, "parentSpanId", "parent_span_id")
                    yield {
                        "trace_id": _json_id(_get(s, "traceId", "trace_id"), 16, "traceId"),
                        "span_id": _json_id(_get(s, "spanId", "span_id"), 8, "spanId"),
                        "parent_span_id": _json_id(parent, 8, "parentSpanId") if parent else None,
                        "name": str(s.get("name") or ""),
                        "start_ns": _uint(
                            _get(s, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"
                        ),
                        "end_ns": _uint(_get(s, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
                        "status_code": _status_code(status.get("code", 0)),
                        "status_message": str(status.get("message") or ""),
                        "attributes": _json_attrs(s.get("attributes")),
                        "events": [
                            {
                                "name": str(e.get("name") or ""),
                                "time_ns": _uint(_get(e, "timeUnixNano", "time_unix_nano", 0), "event time"),
                                "attributes": _json_attrs(e.get("attributes")),
                            }
                            for e in _list(s.get("events"))
                            if isinstance(e, dict)
                        ],
                        "resource": resource,
                        "scope": scope,
                    }
                except SpanRejected as e:
                    yield e


def encode_response(rejected: int, message: str, *, protobuf: bool) -> bytes:
    """An ExportTraceServiceResponse, with partial_success when spans were rejected."""
    if protobuf:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = message
        return bytes(resp.SerializeToString())
    if not rejected:
        return b"{}"
    return orjson.dumps({"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}})


__all__ = ["Record", "SpanRejected", "decode_json", "decode_protobuf", "encode_response"]
