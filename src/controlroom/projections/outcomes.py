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
whole number of quarter hours), so one query per figure whatever the number of runs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping, func, select

from controlroom.projections.fold import CAP_REFUSALS, REFUSAL_ATTRIBUTE
from controlroom.store.tables import runs, spans

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
    lo = max(0, int(datetime(start.year, start.month, start.day, tzinfo=tz).timestamp()) * 10**9)
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
    tz = ZoneInfo(timezone)
    out: dict[tuple[date, GroupKey], Outcome] = defaultdict(Outcome)

    def day_of(bucket: int) -> date:
        return datetime.fromtimestamp(bucket * (BUCKET_NS // 10**9), tz).date()

    def key(row: RowMapping) -> GroupKey:
        return tuple(str(row[g]) if row[g] else None for g in group_by)

    run_bucket = (runs.c.started_at // BUCKET_NS).label("bucket")
    agent_only = all(g == "agent" for g in group_by)
    cols = [runs.c.agent.label("agent")] if "agent" in group_by else []
    if agent_only:
        q = (
            select(run_bucket, *cols, func.count().label("n"))
            .where(
                runs.c.project_id == project_id,
                runs.c.status == "succeeded",
                runs.c.started_at >= lo,
                runs.c.started_at < hi,
            )
            .group_by(run_bucket, *cols)
        )
    else:  # one count per model-call group the run made
        cols += [spans.c[g].label(g) for g in group_by if g != "agent"]
        q = (
            select(run_bucket, *cols, func.count(spans.c.run_id.distinct()).label("n"))
            .select_from(
                runs.join(
                    spans, (spans.c.project_id == runs.c.project_id) & (spans.c.run_id == runs.c.run_id)
                )
            )
            .where(
                runs.c.project_id == project_id,
                runs.c.status == "succeeded",
                runs.c.started_at >= lo,
                runs.c.started_at < hi,
                spans.c.cost_source.is_not(None),  # a model call (it had usage)
            )
            .group_by(run_bucket, *cols)
        )
    for r in conn.execute(q).mappings():
        out[(day_of(int(r["bucket"])), key(r))].succeeded_runs += int(r["n"])

    # Refusals: the refused spans of runs the projector counted refusals in (runs.refused_count,
    # the runs list's refused_by_cap: one definition, fold.CAP_REFUSALS), runs that started up to
    # a day before the range (a run may go on past midnight). Few rows: counted here.
    span_bucket = (spans.c.started_at // BUCKET_NS).label("bucket")
    cols = [runs.c.agent.label("agent")] if "agent" in group_by else []
    cols += [spans.c[g].label(g) for g in group_by if g != "agent"]
    q = (
        select(span_bucket, *cols, spans.c.attributes)
        .select_from(
            runs.join(spans, (spans.c.project_id == runs.c.project_id) & (spans.c.run_id == runs.c.run_id))
        )
        .where(
            runs.c.project_id == project_id,
            runs.c.refused_count > 0,
            runs.c.started_at >= lo - 86_400 * 10**9,
            runs.c.started_at < hi,
            spans.c.status == "error",
            spans.c.error_type == REFUSAL_ERROR,
            spans.c.started_at >= lo,
            spans.c.started_at < hi,
        )
    )
    for r in conn.execute(q).mappings():
        if (r["attributes"] or {}).get(REFUSAL_ATTRIBUTE) in CAP_REFUSALS:
            out[(day_of(int(r["bucket"])), key(r))].refused_calls += 1
    return dict(out)
