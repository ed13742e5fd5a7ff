"""Per-project price overrides, for private, fine-tuned or not-yet-listed models.

Overrides are append-only rows with an ``effective_from`` time: a call is priced by the newest
override in force at the call's time, so setting a price never rewrites history, and a rebuild
prices every call as it was priced when it was folded.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, insert, select, text

from controlroom.accounts.projects import Project
from controlroom.cost import PriceOverride, Pricer
from controlroom.errors import ValidationFailed
from controlroom.events import format_ts, parse_ts
from controlroom.store.engine import LedgerTx
from controlroom.store.tables import price_overrides


def parse_rate(value: str | None, name: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise ValidationFailed(f"{name} is required (USD per million tokens)", field=name)
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValidationFailed(f"{name} {value!r} is not a decimal number", field=name) from None
    if d.is_finite() and d.as_tuple().exponent < -12 and d != 0:  # type: ignore[operator]
        raise ValidationFailed(f"{name} {value!r} has more than 12 decimal places", field=name)
    if not d.is_finite() or d < 0 or d > 10_000:
        raise ValidationFailed(
            f"{name} {value!r} must be between 0 and 10000 USD per million tokens", field=name
        )
    return format(d.normalize(), "f")


def set_price(
    conn: Connection,
    *,
    project: Project,
    model: str,
    provider: str | None,
    input_per_mtok: str,
    output_per_mtok: str,
    cache_read_per_mtok: str | None = None,
    cache_write_per_mtok: str | None = None,
    effective_from: str | int | None = None,
) -> dict[str, Any]:
    if not model or len(model) > 256:
        raise ValidationFailed("model must be 1-256 characters", field="model")
    try:
        eff = parse_ts(effective_from, future_ok=True) if effective_from is not None else 0
    except ValueError as e:
        raise ValidationFailed(f"effective_from: {e}", field="effective_from") from None
    values = {
        "project_id": project.id,
        "model": model,
        "provider": provider or None,
        "input_per_mtok": parse_rate(input_per_mtok, "input_per_mtok", required=True),
        "output_per_mtok": parse_rate(output_per_mtok, "output_per_mtok", required=True),
        "cache_read_per_mtok": parse_rate(cache_read_per_mtok, "cache_read_per_mtok", required=False),
        "cache_write_per_mtok": parse_rate(cache_write_per_mtok, "cache_write_per_mtok", required=False),
        "effective_from": eff,
        "created_at": time.time_ns(),
    }
    values["id"] = conn.execute(
        insert(price_overrides).values(values).returning(price_overrides.c.id)
    ).scalar_one()
    return _out(values)


def list_prices(conn: Connection, *, project: Project) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(price_overrides)
        .where(price_overrides.c.project_id == project.id)
        .order_by(price_overrides.c.id)
    ).mappings()
    return [_out(r) for r in rows]


def _out(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "model": r["model"],
        "provider": r["provider"],
        "input_per_mtok": r["input_per_mtok"],
        "output_per_mtok": r["output_per_mtok"],
        "cache_read_per_mtok": r["cache_read_per_mtok"],
        "cache_write_per_mtok": r["cache_write_per_mtok"],
        "effective_from": format_ts(r["effective_from"]) if r["effective_from"] else None,
    }


_OVERRIDES = (
    "SELECT model, provider, input_per_mtok, output_per_mtok, cache_read_per_mtok, cache_write_per_mtok,"
    " effective_from FROM price_overrides WHERE project_id = :project_id ORDER BY id"
)


class PricerCache:
    """A Pricer per project, rebuilt only when the project's overrides change (its price-lookup
    cache is worth keeping)."""

    def __init__(self) -> None:
        self._pricers: dict[int, tuple[tuple[Any, ...], Pricer]] = {}
        self._lock = threading.Lock()

    def get(self, conn: Connection | LedgerTx, project_id: int) -> Pricer:
        if isinstance(conn, LedgerTx):
            rows = tuple(tuple(r.values()) for r in conn.rows(_OVERRIDES, {"project_id": project_id}))
        else:
            rows = tuple(tuple(r) for r in conn.execute(text(_OVERRIDES), {"project_id": project_id}).all())
        cached = self._pricers.get(project_id)
        if cached is not None and cached[0] == rows:
            return cached[1]
        pricer = Pricer(
            PriceOverride(
                model=m,
                provider=p,
                input_per_mtok=Decimal(i),
                output_per_mtok=Decimal(o),
                cache_read_per_mtok=Decimal(cr) if cr is not None else None,
                cache_write_per_mtok=Decimal(cw) if cw is not None else None,
                effective_from_ns=eff,
            )
            for m, p, i, o, cr, cw, eff in rows
        )
        with self._lock:
            self._pricers[project_id] = (rows, pricer)
        return pricer
