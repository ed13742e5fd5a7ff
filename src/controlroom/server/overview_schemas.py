"""Response shapes of ``GET /v1/overview`` (declared once; routers/overview.py maps the read
model's cards to them). A card that could not be computed is a ``CardError`` in its place."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controlroom.server.eval_schemas import RegressionOut
from controlroom.server.people_schemas import ApprovalOut
from controlroom.server.schemas import BudgetStatusOut, _Out


class CardError(_Out):
    error: str = Field(description="Why this card could not be computed (the other cards stand)")


class ApprovalsCardOut(_Out):
    pending: int
    oldest_requested_at: str | None
    near_expiry: int = Field(description="Pending requests that expire within near_expiry_minutes")
    near_expiry_minutes: int
    oldest: list[ApprovalOut] = Field(description="The longest waiting pending requests, oldest first")


class SignatureOut(_Out):
    error_type: str | None
    span_name: str | None = Field(description="The failing span's name (none known: null)")
    count: int
    last_seen: str


class FailedRunOut(_Out):
    run_id: str
    agent: str | None
    status: str
    started_at: str | None
    error_type: str | None
    error_message: str | None
    failing_span_id: str | None
    failing_span_name: str | None


class FailuresCardOut(_Out):
    since: str = Field(description="The last 24 hours start here (runs by their start)")
    previous_since: str = Field(description="The 24 hours before start here")
    until: str
    failed: int = Field(description="Failed and abandoned runs of the last 24 hours")
    abandoned: int
    previous_failed: int
    previous_abandoned: int
    runs: int
    previous_runs: int
    error_rate: float | None = Field(description="failed / runs of the last 24 hours (no runs: null)")
    signatures: list[SignatureOut] = Field(description="Error type + failing span name, most frequent first")
    recent: list[FailedRunOut]


class CapOut(BudgetStatusOut):
    projected_usd: str = Field(description="settled + the last hours' rate x the hours left in its day")


class SpikeOut(_Out):
    agent: str
    model: str
    hour: str = Field(description="Start of the UTC hour")
    cost_usd: str
    baseline_usd: str = Field(description="Median spend of the same hour on the 7 days before")
    factor: float | None = Field(description="cost / baseline (baseline 0: null)")


class TopRunOut(_Out):
    run_id: str
    agent: str | None
    status: str
    started_at: str | None
    cost_usd: str


class SpikeRule(_Out):
    days: int
    baseline_days: int
    factor: float
    min_usd: str


class CostCardOut(_Out):
    day: str
    day_start: str
    timezone: str
    spent_usd: str = Field(description="Model calls since the day's first whole hour (hourly rollup)")
    rate_usd_per_hour: str
    projected_usd: str
    projection_hours: int = Field(description="The rate is the spend of the last this many hours")
    caps: list[CapOut]
    spikes: list[SpikeOut]
    spike_rule: SpikeRule
    top_runs: list[TopRunOut] = Field(description="Today's most expensive runs")


class QualityCardOut(_Out):
    regressions: list[RegressionOut] = Field(description="Open eval regressions, newest first")


class HourOut(_Out):
    hour: str
    runs: dict[str, int] = Field(description="Runs started in the hour, by status")
    cost_usd: str


class SeriesCardOut(_Out):
    window: Literal["24h", "7d"]
    hours: list[HourOut]
    cap_usd: str | None = Field(description="The project's daily cap, if any")


class OverviewOut(_Out):
    now: str
    approvals: ApprovalsCardOut | CardError
    failures: FailuresCardOut | CardError
    cost: CostCardOut | CardError
    quality: QualityCardOut | CardError
    series: SeriesCardOut | CardError
