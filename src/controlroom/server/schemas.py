"""Response shapes, for the OpenAPI document (handlers return JSON directly; a test validates
real responses against these models so the document stays true)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from controlroom.events import ClientEvent


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters (U+0000) are not allowed")
    return value


# Text in a request body: PostgreSQL cannot store U+0000, so it is refused up front on both databases.
Text = Annotated[str, AfterValidator(_no_nul)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventBatch(BaseModel):
    """A batch of run-log events (at most CONTROLROOM_MAX_BATCH_EVENTS)."""

    events: list[ClientEvent]


class Rejected(_Out):
    index: int
    id: str | None
    reason: str


class IngestResponse(_Out):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class Problem(BaseModel):
    """An RFC 9457 problem document; ``code`` is stable, extra members depend on the code."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    code: str
    detail: str


class ErrorOut(_Out):
    type: str | None
    message: str | None


class UsageOut(_Out):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class Counts(_Out):
    span: int
    llm: int
    tool: int
    retry: int
    fallback: int
    error: int


class RunSummary(_Out):
    run_id: str
    agent: str | None
    status: str
    started_at: str | None
    ended_at: str | None
    duration_ms: float | None
    model: str | None
    agent_version: str | None
    environment: str | None
    session_id: str | None
    user_id: str | None
    tags: list[str]
    error: ErrorOut | None
    failing_span_id: str | None
    usage: UsageOut
    cost_usd: str | None
    unpriced_calls: int
    counts: Counts


class RunList(_Out):
    runs: list[RunSummary]
    next_cursor: str | None


class SpanOut(_Out):
    span_id: str
    parent_span_id: str | None
    kind: str | None
    name: str | None
    status: str
    started_at: str | None
    ended_at: str | None
    duration_ms: float | None
    input: Any
    output: Any
    attributes: dict[str, Any]
    error: ErrorOut | None
    provider: str | None
    model: str | None
    attempt: int | None
    retry_of: str | None
    fallback_from: str | None
    usage: UsageOut | None
    cost_usd: str | None
    cost_source: str | None
    reported_cost_usd: str | None
    computed_cost_usd: str | None
    rollup: bool = Field(
        False, description="Its usage and cost sum its descendants' calls: not counted again in totals"
    )
    orphan: bool = False
    children: list[SpanOut]


class ScoreOut(_Out):
    name: str
    value: float | None
    label: str | None
    comment: str | None
    span_id: str | None
    source: str
    evaluator: str | None
    ts: str | None


class RunDetail(RunSummary):
    inputs: Any
    output: Any
    metadata: dict[str, Any]
    spans: list[SpanOut]
    scores: list[ScoreOut]


class CostRow(_Out):
    day: str
    agent: str | None = None
    provider: str | None = None
    model: str | None = None
    calls: int
    usage: UsageOut
    cost_usd: str | None
    unpriced_calls: int


class CostTotal(_Out):
    calls: int
    cost_usd: str | None
    unpriced_calls: int


class DailyCosts(_Out):
    since: str
    until: str
    timezone: str
    group_by: list[str]
    days: list[CostRow]
    total: CostTotal


class ProjectorHealth(_Out):
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    set_aside: int = Field(
        description="Events the projector could not fold and skipped (see projection_errors)"
    )


class Health(_Out):
    status: str
    version: str
    database: str
    schema_revision: str | None
    projector: ProjectorHealth


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text = Field(min_length=1, max_length=256)
    provider: Text | None = Field(None, max_length=256)
    input_per_mtok: Text = Field(max_length=40, description="USD per million input tokens (decimal string)")
    output_per_mtok: Text = Field(max_length=40)
    cache_read_per_mtok: Text | None = Field(None, max_length=40)
    cache_write_per_mtok: Text | None = Field(None, max_length=40)
    effective_from: Text | None = Field(None, max_length=64, description="RFC 3339; default: always")


class PriceOut(_Out):
    id: int
    model: str
    provider: str | None
    input_per_mtok: str
    output_per_mtok: str
    cache_read_per_mtok: str | None
    cache_write_per_mtok: str | None
    effective_from: str | None


class PriceList(_Out):
    prices: list[PriceOut]
