"""Reads over the read model: run lists (keyset-paginated), run detail, daily cost rollups."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, and_, func, or_, select

from controlroom.errors import InvalidQuery, NotFound
from controlroom.events import RUN_STATUSES, format_ts
from controlroom.money import to_usd
from controlroom.projections.fold import COST_FIELDS, TOKEN_FIELDS, rollups
from controlroom.store.tables import cost_daily, run_tags, runs, scores, spans

GROUPS = ("agent", "provider", "model")


def usd(nanos: int | None) -> str | None:
    """Nano-dollars -> exact USD decimal string (None stays None)."""
    return None if nanos is None else to_usd(nanos)


@dataclass(frozen=True, slots=True)
class RunFilter:
    agent: str | None = None
    status: tuple[str, ...] = ()
    environment: str | None = None
    tag: str | None = None
    since: int | None = None
    until: int | None = None
    min_cost_nanos: int | None = None
    has_error: bool | None = None


def encode_cursor(started_at: int, run_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([started_at, run_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        started_at, run_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(started_at, int) or not isinstance(run_id, str) or not 0 <= started_at < 2**63:
            raise ValueError
        if len(run_id) != 32 or "\x00" in run_id:
            raise ValueError
        return started_at, run_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidQuery(
            f"cursor {cursor!r} is not a cursor this API returned", parameter="cursor"
        ) from None


def list_runs(
    conn: Connection, project_id: int, f: RunFilter, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    for s in f.status:
        if s not in RUN_STATUSES:
            raise InvalidQuery(f"status {s!r} is not one of {', '.join(RUN_STATUSES)}", parameter="status")
    if f.tag is not None:
        # Walk the tag's own index (project, tag, started_at, run_id) in order, so a rare tag does
        # not mean scanning every run; run_tags.started_at is the run's started_at.
        t = run_tags
        q = (
            select(runs)
            .select_from(t.join(runs, and_(runs.c.project_id == t.c.project_id, runs.c.run_id == t.c.run_id)))
            .where(t.c.project_id == project_id, t.c.tag == f.tag)
        )
        started, rid = t.c.started_at, t.c.run_id
    else:
        q = select(runs).where(runs.c.project_id == project_id)
        started, rid = runs.c.started_at, runs.c.run_id
    if f.agent is not None:
        q = q.where(runs.c.agent == f.agent)
    if f.status:
        q = q.where(runs.c.status.in_(f.status))
    if f.environment is not None:
        q = q.where(runs.c.environment == f.environment)
    if f.since is not None:
        q = q.where(started >= f.since)
    if f.until is not None:
        q = q.where(started < f.until)
    if f.min_cost_nanos is not None:
        q = q.where(runs.c.cost_nanos >= f.min_cost_nanos)
    if f.has_error is not None:
        q = q.where(runs.c.has_error == f.has_error)
    if cursor:
        started_at, run_id = decode_cursor(cursor)
        q = q.where(or_(started < started_at, and_(started == started_at, rid < run_id)))
    rows = conn.execute(q.order_by(started.desc(), rid.desc()).limit(limit + 1)).mappings().all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["started_at"], page[-1]["run_id"]) if len(rows) > limit else None
    return {"runs": [run_summary(r) for r in page], "next_cursor": next_cursor}


def run_summary(r: Any) -> dict[str, Any]:
    duration = (r["ended_at"] - r["started_at"]) / 1e6 if r["ended_at"] and r["started_at"] else None
    return {
        "run_id": r["run_id"],
        "agent": r["agent"],
        "status": r["status"],
        "started_at": format_ts(r["started_at"]),
        "ended_at": format_ts(r["ended_at"]),
        "duration_ms": duration,
        "model": r["model"],
        "agent_version": r["agent_version"],
        "environment": r["environment"],
        "session_id": r["session_id"],
        "user_id": r["user_id"],
        "tags": r["tags"] or [],
        "error": {"type": r["error_type"], "message": r["error_message"]} if r["error_type"] else None,
        "failing_span_id": r["failing_span_id"],
        "usage": {k: r[k] for k in TOKEN_FIELDS},
        "cost_usd": usd(r["cost_nanos"]),
        "unpriced_calls": r["unpriced_calls"],
        "counts": {k: r[f"{k}_count"] for k in ("span", "llm", "tool", "retry", "fallback", "error")},
    }


def span_view(s: Any) -> dict[str, Any]:
    duration = (s["ended_at"] - s["started_at"]) / 1e6 if s["ended_at"] and s["started_at"] else None
    has_usage = s["input_tokens"] is not None
    return {
        "span_id": s["span_id"],
        "parent_span_id": s["parent_span_id"],
        "kind": s["kind"],
        "name": s["name"],
        "status": s["status"],
        "started_at": format_ts(s["started_at"]),
        "ended_at": format_ts(s["ended_at"]),
        "duration_ms": duration,
        "input": s["input"],
        "output": s["output"],
        "attributes": s["attributes"] or {},
        "error": {"type": s["error_type"], "message": s["error_message"]} if s["error_type"] else None,
        "provider": s["provider"],
        "model": s["model"],
        "attempt": s["attempt"],
        "retry_of": s["retry_of"],
        "fallback_from": s["fallback_from"],
        "usage": {k: s[k] or 0 for k in TOKEN_FIELDS} if has_usage else None,
        "cost_usd": usd(s["cost_nanos"]),
        "cost_source": s["cost_source"],
        "reported_cost_usd": usd(s["reported_cost_nanos"]),
        "computed_cost_usd": usd(s["computed_cost_nanos"]),
    }


def get_run(conn: Connection, project_id: int, run_id: str) -> dict[str, Any]:
    row = (
        conn.execute(select(runs).where(runs.c.project_id == project_id, runs.c.run_id == run_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"run {run_id} not found (or not yet projected)", run_id=run_id)
    out = run_summary(row)
    out["inputs"], out["output"], out["metadata"] = row["inputs"], row["output"], row["metadata"] or {}
    span_rows = (
        conn.execute(select(spans).where(spans.c.project_id == project_id, spans.c.run_id == run_id))
        .mappings()
        .all()
    )
    rolled_up = rollups([dict(s) for s in span_rows])
    views = {
        s["span_id"]: {**span_view(s), "rollup": s["span_id"] in rolled_up, "orphan": False, "children": []}
        for s in span_rows
    }
    order = {s["span_id"]: (s["started_at"] or s["ended_at"] or 0, s["first_seq"]) for s in span_rows}
    parents = _acyclic_parents({sid: v["parent_span_id"] for sid, v in views.items()}, order)
    roots = []
    for sid in sorted(views, key=order.__getitem__):
        v = views[sid]
        parent = views.get(parents[sid] or "")
        if parent is None:
            v["orphan"] = v["parent_span_id"] is not None  # its parent never arrived (or names a cycle)
            roots.append(v)
        else:
            parent["children"].append(v)
    out["spans"] = roots
    out["scores"] = [
        {
            "name": s["name"],
            "value": s["value"],
            "label": s["label"],
            "comment": s["comment"],
            "span_id": s["span_id"],
            "source": s["source"],
            "evaluator": s["evaluator"],
            "ts": format_ts(s["ts"]),
        }
        for s in conn.execute(
            select(scores)
            .where(scores.c.project_id == project_id, scores.c.run_id == run_id)
            .order_by(scores.c.ts)
        ).mappings()
    ]
    return out


def _acyclic_parents(parent_of: dict[str, str | None], order: dict[str, Any]) -> dict[str, str | None]:
    """Parents as sent, except that a chain of parents that loops (spans naming each other) is cut
    at its earliest span, so every span is shown once."""
    parents = {sid: (p if p in parent_of else None) for sid, p in parent_of.items()}
    done: set[str] = set()
    for start in sorted(parents, key=order.__getitem__):
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in on_path:  # a cycle: cut it at its earliest member
                cycle = path[path.index(node) :]
                parents[min(cycle, key=order.__getitem__)] = None
                break
            path.append(node)
            on_path.add(node)
            node = parents[node]
        done.update(path)
    return parents


def parse_day(value: str, parameter: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{parameter} {value!r} is not a date (YYYY-MM-DD)", parameter=parameter) from None


def daily_costs(
    conn: Connection,
    project_id: int,
    timezone: str,
    *,
    since: str | None,
    until: str | None,
    group_by: tuple[str, ...],
) -> dict[str, Any]:
    for g in group_by:
        if g not in GROUPS:
            raise InvalidQuery(f"group_by {g!r} is not one of {', '.join(GROUPS)}", parameter="group_by")
    today = datetime.now(ZoneInfo(timezone)).date()
    end = parse_day(until, "until") if until else today
    try:
        start = parse_day(since, "since") if since else end - timedelta(days=29)
    except OverflowError:
        raise InvalidQuery(
            f"until {end} leaves no room for the default 30-day range", parameter="until"
        ) from None
    if start > end:
        raise InvalidQuery(f"since {start} is after until {end}", parameter="since")
    keys = [cost_daily.c.day, *(cost_daily.c[g] for g in group_by)]
    sums = [func.sum(cost_daily.c[c]).label(c) for c in COST_FIELDS]
    q = (
        select(*keys, *sums)
        .where(
            cost_daily.c.project_id == project_id,
            cost_daily.c.day >= start.isoformat(),
            cost_daily.c.day <= end.isoformat(),
        )
        .group_by(*keys)
        .order_by(*keys)
    )
    rows = []
    total = {"calls": 0, "cost_nanos": 0, "unpriced_calls": 0}
    for r in conn.execute(q).mappings():
        item: dict[str, Any] = {"day": r["day"]}
        for g in group_by:
            item[g] = r[g] or None
        item["calls"] = int(r["calls"])
        item["usage"] = {k: int(r[k]) for k in TOKEN_FIELDS}
        item["cost_usd"] = usd(int(r["cost_nanos"]))
        item["unpriced_calls"] = int(r["unpriced_calls"])
        for k in total:
            total[k] += int(r[k])
        rows.append(item)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "timezone": timezone,
        "group_by": list(group_by),
        "days": rows,
        "total": {
            "calls": total["calls"],
            "cost_usd": usd(total["cost_nanos"]),
            "unpriced_calls": total["unpriced_calls"],
        },
    }
