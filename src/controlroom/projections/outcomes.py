"""What the spend of a day bought and what the caps stopped: per day (in the project's timezone)
and per cost group (agent, provider, model), the runs that succeeded and the calls a daily cost
cap refused. The costs view sets them beside ``cost_daily`` (cost per successful run, refusals).

- A run that succeeded counts on the day it started. Grouped by agent (or not at all) it counts
  once, in its agent's row; grouped by provider or model it counts once in each group it made a
  model call in (a run that called two models counts for both: the cost per successful run of a
  model is its spend over the successful runs that used it).
- A refused call is a span that ended with ``BudgetExceeded`` because a cap said no (the SDK
  records the call it did not make, with the cap's answer in ``controlroom.budget.*`` attributes;
  the reason one of ``fold.CAP_REFUSALS``: the SDK failing closed when it cannot reach the ledger is
  no refusal by a cap), as the runs list's ``refused_by_cap`` counts them; it counts on the day it
  was refused, in its run's agent and its own provider and model.

Days are made from 15-minute buckets of UTC time summed in SQL (every timezone's offset is a
whole number of quarter hours). Successful runs come from the ``run_outcomes`` rollup the
projector keeps (a few rows per quarter hour, whatever the number of runs and spans); refusals
from the refused spans of the runs with any (``runs.refused_count``, a partial index).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping, func, literal_column, select

from controlroom.projections.fold import CAP_REFUSALS, REFUSAL_ATTRIBUTE
from controlroom.store.tables import run_outcomes, runs, spans

REFUSAL_ERROR = "BudgetExceeded"  # the SDK's exception type for a call refused by a cap
BUCKET_NS = 900 * 10**9
LAST_DAY = date(2262, 1, 1)
NEVER = 2**63 - 1

GroupKey = tuple[str | None, ...]  # the group_by keys' values, in group_by's order


@dataclass(slots=True)
class Outcome:
    succeeded_runs: int = 0
    refused_calls: int = 0


def day_bounds(start: date, end: date, timezone: str) -> tuple[int, int]:
    """[start's local midnight, the local midnight after end) in epoch nanoseconds."""
    tz = ZoneInfo(timezone)
    # epoch nanoseconds span 1970..2262: nothing is recorded outside (and SQL integers end there)
    lo = min(max(0, int(datetime(start.year, start.month, start.day, tzinfo=tz).timestamp()) * 10**9), NEVER)
    if end >= LAST_DAY:
        return lo, NEVER
    after = end + timedelta(days=1)
    hi = datetime(after.year, after.month, after.day, tzinfo=tz)
    return lo, min(int(hi.timestamp()) * 10**9, NEVER)


def outcomes(
    conn: Connection,
    project_id: int,
    timezone: str,
    *,
    start: date,
    end: date,
    group_by: tuple[str, ...],
) -> dict[tuple[date, GroupKey], Outcome]:
    """Per (day, group): runs that succeeded and calls refused by a cap, between start and end
    (inclusive, local days). Only (day, group) pairs with something to count are present."""
    lo, hi = day_bounds(start, end, timezone)
    if lo >= hi:  # days past what epoch nanoseconds hold: nothing was recorded then
        return {}
    tz = ZoneInfo(timezone)
    out: dict[tuple[date, GroupKey], Outcome] = defaultdict(Outcome)

    days: dict[int, date] = {}

    def day_of(bucket: int) -> date:  # a few thousand buckets in a month: each made once
        day = days.get(bucket)
        if day is None:
            day = days[bucket] = datetime.fromtimestamp(bucket * (BUCKET_NS // 10**9), tz).date()
        return day

    def key(row: Mapping[str, Any] | RowMapping) -> GroupKey:
        return tuple(str(row[g]) if row[g] else None for g in group_by)

    # Successful runs: the run_outcomes rollup (the projector keeps it), in the grouping asked for
    has_provider, has_model = "provider" in group_by, "model" in group_by
    grouping = {
        (False, False): "run",
        (True, False): "provider",
        (False, True): "model",
        (True, True): "provider_model",
    }[(has_provider, has_model)]
    ro = run_outcomes.c
    cols = [ro[g].label(g) for g in group_by]
    q = (
        select(ro.bucket.label("bucket"), *cols, func.sum(ro.succeeded_runs).label("n"))
        .where(
            ro.project_id == project_id,
            ro.grouping == grouping,
            ro.bucket >= lo // BUCKET_NS,
            ro.bucket < -(-hi // BUCKET_NS),
        )
        .group_by(ro.bucket, *cols)
    )
    for bucket, *values, n in conn.execute(q):  # plain rows: a month is ~10^4 of them
        group = tuple(str(v) if v else None for v in values)
        out[(day_of(int(bucket)), group)].succeeded_runs += int(n)

    # Refusals: the refused spans of runs the projector counted refusals in (runs.refused_count,
    # the runs list's refused_by_cap: one definition, fold.CAP_REFUSALS; its partial index), on the
    # day of the refusal whenever the run started. Few rows: counted here.
    refused_runs = dict(
        conn.execute(  # the partial index: a literal, so that it applies, and its order (without
            # it, SQLite's planner walks ix_runs_cost instead: every run of the project)
            select(runs.c.run_id, runs.c.agent)
            .where(runs.c.project_id == project_id, runs.c.refused_count > literal_column("0"))
            .order_by(runs.c.started_at)
        ).all()
    )
    span_bucket = (spans.c.started_at // BUCKET_NS).label("bucket")
    cols = [spans.c[g].label(g) for g in group_by if g != "agent"]
    ids = list(refused_runs)
    for i in range(0, len(ids), 500):
        q = select(span_bucket, spans.c.run_id, *cols, spans.c.attributes).where(
            spans.c.project_id == project_id,
            spans.c.run_id.in_(ids[i : i + 500]),
            spans.c.status == "error",
            spans.c.error_type == REFUSAL_ERROR,
            spans.c.started_at >= lo,
            spans.c.started_at < hi,
        )
        for r in conn.execute(q).mappings():
            if (r["attributes"] or {}).get(REFUSAL_ATTRIBUTE) in CAP_REFUSALS:
                row: dict[str, Any] = {**r, "agent": refused_runs[r["run_id"]]}
                out[(day_of(int(r["bucket"])), key(row))].refused_calls += 1
    return dict(out)
