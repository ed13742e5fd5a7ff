"""Ingest: validate a batch of client events and append the valid ones to the run log, durably.

Valid events are appended in one transaction that commits before this returns; invalid ones are
reported per index with a reason and never block the valid ones. A re-sent event id is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from controlroom.errors import InvalidEvent, PayloadTooLarge
from controlroom.events import AnyEvent, validate_event
from controlroom.store import log
from controlroom.store.engine import Store


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def ingest_events(
    store: Store,
    project_id: int,
    payload: Any,
    *,
    max_events: int,
    on_append: Callable[[], None] | None = None,
) -> IngestResult:
    """Validate and append ``payload`` (``{"events": [...]}``). Raises InvalidEvent when nothing in it
    is valid, PayloadTooLarge when it has more than ``max_events`` events."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise InvalidEvent('the body must be a JSON object {"events": [...]}')
    raw_events = payload["events"]
    if len(raw_events) > max_events:
        raise PayloadTooLarge(
            f"{len(raw_events)} events in one batch; the limit is {max_events}", limit=max_events
        )
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    received_at = time.time_ns()
    for index, raw in enumerate(raw_events):
        try:
            event = validate_event(raw)
        except ValueError as e:
            result.rejected.append({"index": index, "id": _raw_id(raw), "reason": str(e)})
            continue
        if event.id in seen:
            result.duplicates += 1
            continue
        try:
            row = event_row(project_id, event, received_at=received_at)
        except (TypeError, ValueError) as e:  # an integer beyond 64 bits, nesting too deep
            result.rejected.append(
                {"index": index, "id": event.id, "reason": f"body: cannot be stored as JSON: {e}"}
            )
            continue
        if b"\\u0000" in row["body"] or "\x00" in event.id:  # PostgreSQL cannot store U+0000 in text
            result.rejected.append(
                {
                    "index": index,
                    "id": event.id.replace("\x00", ""),
                    "reason": "NUL characters (U+0000) are not allowed in ids or text",
                }
            )
            continue
        seen.add(event.id)
        rows.append(row)
    if rows:
        with store.write() as conn:
            inserted = log.append(store, conn, rows)
        result.accepted = inserted
        result.duplicates += len(rows) - inserted
        if inserted and on_append is not None:
            on_append()
    if raw_events and not rows and not result.duplicates:
        raise InvalidEvent("no event in the batch is valid", rejected=result.rejected)
    return result


def event_row(project_id: int, event: AnyEvent, *, received_at: int) -> dict[str, Any]:
    """The log row of a validated event: its body without default values (``events.with_defaults``
    puts them back on reading)."""
    return {
        "project_id": project_id,
        "event_id": event.id,
        "type": event.type,
        "run_id": event.run_id,
        "ts": event.ts,
        "received_at": received_at,
        "body": orjson.dumps(event.body.model_dump(mode="json", exclude_defaults=True)),
    }


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None
