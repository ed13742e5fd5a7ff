"""The overview: one request answering every card of the dashboard's home page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from controlroom.budget.days import utc_seconds
from controlroom.events import format_ts
from controlroom.money import to_usd
from controlroom.projections import overview as ov
from controlroom.server.auth import ReadProject
from controlroom.server.deps import StoreDep, in_read
from controlroom.server.overview_schemas import (
    ApprovalsCardOut,
    CapOut,
    CardError,
    CostCardOut,
    FailedRunOut,
    FailuresCardOut,
    HourOut,
    OverviewOut,
    QualityCardOut,
    SeriesCardOut,
    SignatureOut,
    SpikeOut,
    SpikeRule,
    TopRunOut,
)
from controlroom.server.responses import JSONResponse
from controlroom.server.routers.evals import regression_out
from controlroom.server.routers.people import approval_out
from controlroom.server.schemas import problems

router = APIRouter(tags=["overview"])


def _ts(ns: int | None) -> str | None:
    return format_ts(ns)


def _approvals(c: ov.ApprovalsCard) -> ApprovalsCardOut:
    return ApprovalsCardOut(
        pending=c.pending,
        oldest_requested_at=_ts(c.oldest_requested_at),
        near_expiry=c.near_expiry,
        near_expiry_minutes=ov.NEAR_EXPIRY_NS // (60 * 10**9),
        oldest=[approval_out(a) for a in c.oldest],
    )


def _failures(c: ov.FailuresCard, now: int) -> FailuresCardOut:
    return FailuresCardOut(
        since=_ts(c.since) or "",
        previous_since=_ts(c.previous_since) or "",
        until=_ts(now) or "",
        failed=c.failed,
        abandoned=c.abandoned,
        previous_failed=c.previous_failed,
        previous_abandoned=c.previous_abandoned,
        runs=c.runs,
        previous_runs=c.previous_runs,
        error_rate=c.error_rate,
        signatures=[
            SignatureOut(
                error_type=s.error_type,
                span_name=s.span_name,
                count=s.count,
                last_seen=_ts(s.last_seen) or "",
            )
            for s in c.signatures
        ],
        recent=[
            FailedRunOut(
                run_id=r.run_id,
                agent=r.agent,
                status=r.status,
                started_at=_ts(r.started_at),
                error_type=r.error_type,
                error_message=r.error_message,
                failing_span_id=r.failing_span_id,
                failing_span_name=r.failing_span_name,
            )
            for r in c.recent
        ],
    )


def _cap(f: ov.CapFigures) -> CapOut:
    st = f.status
    return CapOut(
        agent=st.agent,
        cap_usd=to_usd(st.cap_nanos),
        timezone=st.timezone,
        day=st.day.isoformat(),
        settled_usd=to_usd(st.settled_nanos),
        unguarded_usd=to_usd(st.unguarded_nanos),
        held_usd=to_usd(st.held_nanos),
        remaining_usd=to_usd(st.remaining_nanos),
        resets_at=utc_seconds(st.resets_at_ns),
        projected_usd=to_usd(f.projected_nanos),
    )


def _cost(c: ov.CostCard) -> CostCardOut:
    return CostCardOut(
        day=c.day,
        day_start=_ts(c.day_start) or "",
        timezone=c.timezone,
        spent_usd=to_usd(c.spent_nanos),
        rate_usd_per_hour=to_usd(c.rate_nanos_per_hour),
        projected_usd=to_usd(c.projected_nanos),
        projection_hours=ov.PROJECTION_HOURS,
        caps=[_cap(f) for f in c.caps],
        spikes=[
            SpikeOut(
                agent=s.agent,
                model=s.model,
                hour=_ts(s.hour) or "",
                cost_usd=to_usd(s.cost_nanos),
                baseline_usd=to_usd(s.baseline_nanos),
                factor=round(s.cost_nanos / s.baseline_nanos, 1) if s.baseline_nanos else None,
            )
            for s in c.spikes
        ],
        spike_rule=SpikeRule(
            days=ov.SPIKE_DAYS,
            baseline_days=ov.BASELINE_DAYS,
            factor=ov.SPIKE_FACTOR,
            min_usd=to_usd(ov.SPIKE_MIN_NANOS),
        ),
        top_runs=[
            TopRunOut(
                run_id=r.run_id,
                agent=r.agent,
                status=r.status,
                started_at=_ts(r.started_at),
                cost_usd=to_usd(r.cost_nanos),
            )
            for r in c.top_runs
        ],
    )


def _series(c: ov.SeriesCard) -> SeriesCardOut:
    return SeriesCardOut(
        window="7d" if c.window == "7d" else "24h",
        hours=[HourOut(hour=_ts(h.hour) or "", runs=h.runs, cost_usd=to_usd(h.cost_nanos)) for h in c.hours],
        cap_usd=None if c.cap_nanos is None else to_usd(c.cap_nanos),
    )


def overview_out(o: ov.Overview) -> OverviewOut:
    def card(name: str, convert: Any) -> Any:
        value = o.cards[name]
        if isinstance(value, ov.CardFailed):
            return CardError(error=str(value))
        return convert(value)

    return OverviewOut(
        now=_ts(o.now) or "",
        approvals=card("approvals", _approvals),
        failures=card("failures", lambda c: _failures(c, o.now)),
        cost=card("cost", _cost),
        quality=card("quality", lambda rs: QualityCardOut(regressions=[regression_out(r) for r in rs])),
        series=card("series", _series),
    )


@router.get(
    "/v1/overview",
    response_model=OverviewOut,
    responses=problems(400, 401, 403),
    summary="The dashboard's overview: approvals, failures, cost and spikes, regressions, hourly series",
)
async def get_overview(
    project: ReadProject,
    store: StoreDep,
    window: Annotated[
        str, Query(pattern="^(24h|7d)$", description="The hourly series' window: 24h (default) or 7d")
    ] = "24h",
) -> JSONResponse:
    """Each card is computed on its own: one that cannot be computed is answered as
    `{"error": ...}` in its place, and the others stand."""
    o = await in_read(store, ov.overview, project_id=project.id, timezone=project.timezone, window=window)
    return JSONResponse(overview_out(o).model_dump(mode="json"))
