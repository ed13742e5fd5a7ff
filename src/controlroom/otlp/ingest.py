"""OTLP/HTTP trace ingest: decode, map to run-log events, append durably (through the same
validation and idempotent append as /v1/events)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlroom.errors import InvalidEvent
from controlroom.otlp.decode import SpanRejected, decode_json, decode_protobuf
from controlroom.otlp.mapping import to_events
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events


@dataclass(frozen=True, slots=True)
class OTLPResult:
    accepted_spans: int
    rejected_spans: int
    message: str


def ingest_otlp(
    store: Store,
    project_id: int,
    body: bytes,
    *,
    protobuf: bool,
    max_events: int,
    on_append: Callable[[], None] | None = None,
) -> OTLPResult:
    reasons: list[str] = []
    events: list[dict[str, Any]] = []
    spans = 0
    for rec in decode_protobuf(body) if protobuf else decode_json(body):
        if isinstance(rec, SpanRejected):
            reasons.append(str(rec))
            continue
        spans += 1
        events.extend(to_events(rec))
    rejected_events: list[dict[str, Any]] = []
    if events:
        try:
            result = ingest_events(
                store, project_id, {"events": events}, max_events=max_events, on_append=on_append
            )
            rejected_events = result.rejected
        except InvalidEvent as e:
            rejected_events = e.extra.get("rejected", [])
    # a span is rejected when any of its events is (a root span also carries its run's events);
    # an event's id is trace id + span id + suffix (mapping.to_events)
    bad_spans = {events[r["index"]]["id"][32:48] for r in rejected_events}
    accepted = spans - len(bad_spans)
    rejected = len(reasons) + len(bad_spans)  # undecodable spans, and spans with a refused event
    reasons += [r["reason"] for r in rejected_events]
    if accepted == 0 and rejected:
        raise InvalidEvent(
            f"no span in the request is valid: {'; '.join(reasons[:5])}", rejected_spans=rejected
        )
    return OTLPResult(accepted, rejected, "; ".join(reasons[:10]))
