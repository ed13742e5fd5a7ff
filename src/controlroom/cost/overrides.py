"""Per-project price overrides, for private, fine-tuned or not-yet-listed models.

Overrides are append-only rows with an ``effective_from`` time: a call is priced by the newest
override in force at the call's time, so setting a price never rewrites history, and a rebuild
prices every call as it was priced when it was folded.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, text

from controlroom.accounts.projects import Project
from controlroom.cost import PriceOverride, Pricer
from controlroom.cost.pricing import canonical_provider
from controlroom.errors import ValidationFailed
from controlroom.events import format_ts, parse_ts
from controlroom.store.engine import LedgerTx
from controlroom.store.tables import cost_daily, price_overrides

MAX_MODELS = 500


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


def _per_mtok(rate: Decimal) -> str:
    return format((rate * 1_000_000).normalize(), "f")


def models_in_use(
    conn: Connection, *, project: Project, pricer: Pricer, days: int, at_ns: int
) -> list[dict[str, Any]]:
    """The models the project called in its last ``days`` days (by its own day boundary), most
    called first, each with the prices that apply to a call now (USD per million tokens, the
    highest tier where the price depends on the call) and where they come from: ``override`` (the
    project's own), ``built_in`` (genai-prices) or ``unknown`` (no price: its calls cost nothing
    known and are counted as unpriced)."""
    first_day = (datetime.now(ZoneInfo(project.timezone)).date() - timedelta(days=days - 1)).isoformat()
    calls = func.sum(cost_daily.c.calls)
    rows = conn.execute(
        select(
            cost_daily.c.provider,
            cost_daily.c.model,
            calls,
            func.sum(cost_daily.c.unpriced_calls),
            func.max(cost_daily.c.day),
        )
        .where(cost_daily.c.project_id == project.id, cost_daily.c.day >= first_day)
        .group_by(cost_daily.c.provider, cost_daily.c.model)
        .order_by(calls.desc(), cost_daily.c.model, cost_daily.c.provider)
        .limit(MAX_MODELS)
    ).all()
    overrides = conn.execute(
        select(price_overrides.c.model, price_overrides.c.provider, price_overrides.c.effective_from).where(
            price_overrides.c.project_id == project.id
        )
    ).all()
    found = []
    for provider, model, n, unpriced, last_day in rows:
        rates = pricer.rates(provider=provider or None, model=model or None, at_ns=at_ns)
        overridden = any(
            o_model.strip().lower() == model.strip().lower()
            and (o_provider is None or canonical_provider(o_provider) == canonical_provider(provider))
            and (o_from or 0) <= at_ns
            for o_model, o_provider, o_from in overrides
        )
        found.append(
            {
                "provider": provider or None,
                "model": model or None,
                "calls": int(n),
                "unpriced_calls": int(unpriced),
                "last_day": last_day,
                "source": "unknown" if rates is None else "override" if overridden else "built_in",
                "input_per_mtok": None if rates is None else _per_mtok(rates.input),
                "output_per_mtok": None if rates is None else _per_mtok(rates.output),
                "cache_read_per_mtok": None if rates is None else _per_mtok(rates.cache_read),
                "cache_write_per_mtok": None if rates is None else _per_mtok(rates.cache_write),
            }
        )
    return found


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
