"""Helpers for tests: waiting on a condition (never a fixed sleep), the read model's contents."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select

from controlroom.store.engine import Store
from controlroom.store.tables import READ_MODEL_TABLES

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met within {timeout} s: {predicate.__qualname__} -> {value!r}"
            )
        time.sleep(interval)


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The read model, table by table, sorted; without the columns that record arrival."""
    out = {}
    with store.read() as conn:
        for table in READ_MODEL_TABLES:
            rows = conn.execute(select(table)).all()
            cols = [c.name for c in table.c]
            # last_event_at / first_seq record when and in what order events arrived, not what they say
            keep = [i for i, c in enumerate(cols) if c not in ("last_event_at", "first_seq")]
            out[table.name] = sorted(tuple(r[i] for i in keep) for r in rows)
    return out
