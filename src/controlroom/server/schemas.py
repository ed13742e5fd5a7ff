"""Every request and response shape of the API, declared once: the routers map domain objects to
these models, and the OpenAPI document is generated from them (request models are exactly as
strict as the validation; response models forbid unknown members, and a test validates real
responses against the published document)."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from controlroom.budget.ledger import OUTCOMES
from controlroom.events import ClientEvent, RunId, SpanId
from controlroom.money import MAX_TOKENS


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters (U+0000) are not allowed")
    return value


# Text in a request body: PostgreSQL cannot store U+0000, so it is refused up front on both databases.
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\u0000]*$"})]
USD_PATTERN = r"^0*([0-9]{1,9}(\.[0-9]*)?|\.[0-9]+)([eE]-[0-9]{1,4})?$"
"""A USD amount as a request writes it: a decimal number below a billion (exponents only negative,
as Python's ``str(Decimal)`` writes small amounts: "1E-7")."""
Usd = Annotated[str, Field(max_length=40, json_schema_extra={"pattern": USD_PATTERN})]
RATE_PATTERN = r"^0*([0-9]{1,4}(\.[0-9]{0,12})?|10000(\.0{0,12})?|\.[0-9]{1,12})$"
"""USD per million tokens: 0 to 10,000, at most 12 decimal places."""
Rate = Annotated[str, Field(max_length=40, json_schema_extra={"pattern": RATE_PATTERN})]
OptionalRate = Annotated[str, Field(max_length=40, json_schema_extra={"pattern": f"^$|{RATE_PATTERN}"})]
HEX_RUN_ID = "^[0-9a-fA-F]{32}$"
# Ids in a request: hex, not all zeros (as events.RunId / SpanId check them).
RequestRunId = Annotated[RunId, WithJsonSchema({"type": "string", "pattern": "^(?!0{32}$)[0-9a-fA-F]{32}$"})]
RequestSpanId = Annotated[
    SpanId, WithJsonSchema({"type": "string", "pattern": "^(?!0{16}$)[0-9a-fA-F]{16}$"})
]


TIMEZONES = sorted(zoneinfo.available_timezones())
FROM_2001 = "^(200[1-9]|20[1-9][0-9]|2[1-9][0-9]{2}|[3-9][0-9]{3})-"
AFTER_2000 = {"type": "string", "format": "date-time", "pattern": FROM_2001}
"""An RFC 3339 time after 2000 (the run log knows no earlier time; a year of 2001 on, so that no
UTC offset takes it back before 2000)."""
PRICE_YEARS = "^(200[1-9]|20[1-9][0-9]|21[0-9]{2}|22[0-5][0-9])-"
"""effective_from: 2001 to 2259 (epoch nanoseconds must fit 64 bits)."""


def _price_year(value: str) -> str:
    """A year out of PRICE_YEARS is refused here; what is not a time at all, by the price's own
    validation (which names what is wrong with it)."""
    if re.match(r"[0-9]{4}-", value) and not re.match(PRICE_YEARS, value):
        raise ValueError(f"effective_from {value!r} must be in the years 2001 to 2259")
    return value


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Counts in a request body: JSON integers (which include 1.0, as JSON Schema has it), never a
# string or a boolean.
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS), BeforeValidator(_whole)]
InputEstimate = Annotated[int, Field(ge=0, le=10**9), BeforeValidator(_whole)]
MaxOutputTokens = Annotated[int, Field(ge=1, le=10**7), BeforeValidator(_whole)]


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


PROBLEM_JSON = "application/problem+json"


def comma_separated(words: tuple[str, ...]) -> str:
    """The pattern of a comma-separated list of ``words`` (blank items ignored, as the routes do)."""
    word = f"\\s*({'|'.join(words)})?\\s*"
    return f"^{word}(,{word})*$"


PROBLEM_STATUSES = {
    400: "invalid_json, invalid_encoding, invalid_event or invalid_query (a query or path parameter, "
    "NUL characters in any)",
    401: "unauthorized: missing or invalid API key",
    403: "forbidden: the key's scope or the person's role does not allow it (csrf_failed: a change with a session that did not come from this server's pages)",
    402: "daily_cost_cap_reached (reason: cap_reached, held_by_in_flight_calls or unpriced_model), "
    "with a Retry-After header unless waiting would not help",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed: the body does not fit the schema",
    429: "too_many_requests: too many failed logins (with a Retry-After header)",
    503: "service_unavailable: the database cannot be reached, or stayed locked",
}


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that answers these statuses with a problem document
    (``descriptions``: ``s404="..."`` to say more than the code)."""
    return {
        status: {
            "description": descriptions.get(f"s{status}", PROBLEM_STATUSES[status]),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


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
    refused_calls: int = Field(
        description="Calls the budget refused before they were made (a cap reached, held by calls "
        "in flight, or a model without a price): the runs list's refused_by_cap"
    )


class BriefScoreOut(_Out):
    name: str
    value: float | None
    label: str | None
    source: str


class RunListItem(RunSummary):
    scores: list[BriefScoreOut] = Field(
        description="The run's scores, oldest first (the run's page has them all)"
    )


class RunList(_Out):
    runs: list[RunListItem]
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
    input: Any = Field(None, description="Absent with payloads=false")
    output: Any = Field(None, description="Absent with payloads=false")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Absent with payloads=false")
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
        description="Its usage and cost sum its descendants' calls: not counted again in totals"
    )
    orphan: bool = Field(description="Its parent never arrived (or names a cycle): shown as a root")
    children: list[SpanOut]


class SpanPayloadOut(_Out):
    """What ``GET /v1/runs/{run_id}?payloads=false`` leaves out of a span."""

    span_id: str
    input: Any
    output: Any
    attributes: dict[str, Any]


class ScoreOut(_Out):
    name: str
    value: float | None
    label: str | None
    comment: str | None
    span_id: str | None
    source: str
    evaluator: str | None
    ts: str | None
    evaluator_version: str | None
    kind: str | None = Field(description="boolean, numeric or categorical; null when the sender did not say")
    normalised: float | None = Field(description="The value on 0..1, 1 the best (evaluators' scores)")
    author: str | None = Field(description="The person who gave a human score")


class RunApproval(_Out):
    """An approval request of the run, in short: the whole request (its full arguments) is at
    ``GET /v1/approvals/{id}``."""

    id: str
    span_id: str | None
    action: str
    status: str
    min_role: str
    arguments_hash: str
    requested_at: str
    decided_at: str | None
    decided_by: str | None
    decided_role: str | None
    reason: str | None
    completed_at: str | None


class RunDetail(RunSummary):
    inputs: Any
    output: Any
    metadata: dict[str, Any]
    spans: list[SpanOut]
    scores: list[ScoreOut]
    approvals: list[RunApproval] = Field(description="The run's approval requests, oldest first")


class CostRow(_Out):
    day: str
    agent: str | None = None
    provider: str | None = None
    model: str | None = None
    calls: int
    usage: UsageOut
    cost_usd: str | None
    unpriced_calls: int
    succeeded_runs: int = Field(
        description="Runs that succeeded, started this day; grouped by provider or model, those that "
        "made a call in the group",
    )
    refused_calls: int = Field(description="Model calls a daily cost cap refused this day")


class CostTotal(_Out):
    calls: int
    cost_usd: str | None
    unpriced_calls: int
    succeeded_runs: int
    refused_calls: int


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


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PriceIn(_In):
    model: Text = Field(min_length=1, max_length=256)
    provider: Text | None = Field(None, max_length=256)
    input_per_mtok: Rate = Field(description="USD per million input tokens (decimal string)")
    output_per_mtok: Rate
    cache_read_per_mtok: OptionalRate | None = None
    cache_write_per_mtok: OptionalRate | None = None
    effective_from: (
        Annotated[
            Text,
            AfterValidator(_price_year),
            WithJsonSchema({"type": "string", "format": "date-time", "pattern": PRICE_YEARS}),
        ]
        | None
    ) = Field(None, max_length=64, description="RFC 3339; default: always")


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


class ModelPriceOut(_Out):
    provider: str | None
    model: str | None
    calls: int = Field(description="Calls to it in the period")
    unpriced_calls: int = Field(description="Of which with no known price")
    last_day: str = Field(description="The last day (the project's) it was called")
    source: Literal["override", "built_in", "unknown"] = Field(
        description="override: the project's own price; built_in: genai-prices; unknown: no price"
    )
    input_per_mtok: str | None = Field(description="USD per million tokens, now (the highest tier)")
    output_per_mtok: str | None
    cache_read_per_mtok: str | None
    cache_write_per_mtok: str | None


class ModelPriceList(_Out):
    models: list[ModelPriceOut]


# -- budgets --------------------------------------------------------------------------------------
class BudgetIn(_In):
    cap_usd: Usd = Field(description="Daily cap in USD, a decimal string")
    agent: Text | None = Field(
        None, max_length=256, description="Only this agent's calls; omit for the whole project"
    )
    timezone: Annotated[Text, WithJsonSchema({"type": "string", "enum": TIMEZONES})] | None = Field(
        None, description="IANA timezone of the day boundary (default: the project's)"
    )


class BudgetStatusOut(_Out):
    agent: str | None
    cap_usd: str
    timezone: str
    day: str
    settled_usd: str
    unguarded_usd: str
    held_usd: str
    remaining_usd: str
    resets_at: str


class BudgetList(_Out):
    budgets: list[BudgetStatusOut]


class ReservationIn(_In):
    provider: Text | None = Field(None, max_length=256)
    model: Text = Field(min_length=1, max_length=256)
    agent: Text = Field("", max_length=256)
    input_tokens: InputEstimate = Field(description="An upper bound of the prompt's tokens")
    max_output_tokens: MaxOutputTokens | None = None
    run_id: RequestRunId | None = None
    span_id: RequestSpanId | None = None
    reservation_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{16,32}$",
        description="An id chosen by the client (16 to 32 letters, digits, '-' or '_'; e.g. 32 random hex "
        "digits): the request becomes idempotent — sent again, it holds nothing more and answers the first "
        "reservation. Omitted: the server chooses one.",
    )


class BudgetHoldOut(_Out):
    agent: str | None
    day: str
    resets_at: str


class ReservationOut(_Out):
    reservation_id: str | None
    hold_usd: str
    budgets: list[BudgetHoldOut]
    expires_at: str = Field(None, description="Absent when nothing is held")  # type: ignore[assignment]


class UsageIn(_In):
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0


class SettleIn(_In):
    outcome: Text = Field(
        max_length=64,
        json_schema_extra={"enum": list(OUTCOMES)},  # checked by the ledger, which names a wrong value
        description="completed, failed_before_generation or unknown",
    )
    usage: UsageIn | None = None
    cost_usd: Usd | None = None


class SettleOut(_Out):
    reservation_id: str
    state: str
    actual_usd: str
    hold_usd: str


DAY_SCHEMA = {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}]}
"""A day query parameter as documented (YYYY-MM-DD; empty: the default)."""
