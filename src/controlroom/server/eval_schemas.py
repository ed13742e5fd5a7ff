"""Request and response shapes of the evals API: configurations, jobs, regressions, settings and
scores (declared once; the router maps domain objects to them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from controlroom.server.people_schemas import StoredJson
from controlroom.server.schemas import AFTER_2000, RequestRunId, RequestSpanId, Text, _In, _Out, _whole

ConfigName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Time = Annotated[str, Field(max_length=64, json_schema_extra=AFTER_2000)]
Trigger = Literal["post_run", "schedule", "manual"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ShortList = Annotated[list[Annotated[Text, Field(min_length=1, max_length=256)]], Field(max_length=100)]


class SelectorModel(_In):
    agents: ShortList = Field(default_factory=list, description="Only runs of these agents (empty: all)")
    environments: ShortList = Field(default_factory=list)
    tags: ShortList = Field(default_factory=list, description="Runs with any of these tags")
    sample_rate: float = Field(1.0, gt=0, le=1, description="A deterministic sample by run id")


class SelectorOut(_Out):
    agents: list[str]
    environments: list[str]
    tags: list[str]
    sample_rate: float


class ConfigIn(_In):
    name: ConfigName
    evaluator: Text = Field(
        min_length=1, max_length=512, description="A built-in's name, or module:attribute of your own"
    )
    params: dict[Text, StoredJson] = Field(default_factory=dict, description="The evaluator's parameters")
    selector: SelectorModel = Field(default_factory=SelectorModel)
    trigger: Trigger = "manual"
    schedule: Text | None = Field(None, max_length=128, description="Cron (5 fields), for trigger schedule")
    timezone: Text = Field("UTC", max_length=64, description="The schedule's timezone (IANA)")
    window_seconds: float | None = Field(
        None, gt=0, le=366 * 86_400, description="A scheduled job's window of past runs"
    )
    grace_seconds: float = Field(
        30.0, ge=0, le=86_400, description="Post-run: wait this long after a run ends"
    )


class ConfigPatch(_In):
    paused: bool


class JobOut(_Out):
    id: int
    config: str
    kind: Literal["post_run", "scheduled", "backfill"]
    state: JobState
    since: str | None
    until: str | None
    total: int | None = Field(description="Runs in the window the selector chooses (batch jobs)")
    processed: int
    scored: int
    not_applicable: int
    errors: int
    skipped: int
    note: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class ConfigOut(_Out):
    name: str
    evaluator: str
    evaluator_name: str
    evaluator_version: str
    params: dict[str, Any]
    selector: SelectorOut
    trigger: Trigger
    schedule: str | None
    timezone: str
    window_seconds: float | None
    grace_seconds: float
    next_run_at: str | None
    paused: bool
    created_at: str
    jobs: list[JobOut] = Field(description="Its latest jobs, newest first (the post-run job's counts grow)")


class ConfigList(_Out):
    configs: list[ConfigOut]


class RunJobIn(_In):
    since: Time | None = Field(None, description="Runs that started at or after (RFC 3339)")
    until: Time | None = Field(None, description="Runs that started before (RFC 3339; default now)")
    dry_run: bool = Field(False, description="Only say how many runs it would judge, and at what cost")


class PreviewOut(_Out):
    runs: int
    estimated_cost_usd: str | None = Field(description="For an evaluator that pays per run (the LLM judge)")


class ItemError(_Out):
    run_id: str
    type: str
    message: str | None


class JobDetail(JobOut):
    recent_errors: list[ItemError]


class JobList(_Out):
    jobs: list[JobOut]


class Side(_Out):
    n: int
    mean: float


class RegressionOut(_Out):
    id: int
    agent: str
    evaluator: str
    evaluator_version: str
    name: str
    state: Literal["open", "resolved"]
    opened_at: str
    resolved_at: str | None
    checked_at: str
    clean_windows: int
    evidence: str
    test: str
    baseline: Side
    recent: Side
    change: float
    ci: list[float]
    p: float
    q: float
    worst_run_ids: list[str]


class RegressionList(_Out):
    regressions: list[RegressionOut]


class CheckOut(_Out):
    tested: int
    opened: int
    refreshed: int
    resolved: int


class EvalSettings(_In):
    recent_days: float = Field(1.0, gt=0, le=90)
    baseline_days: float = Field(7.0, gt=0, le=365)
    margin: float = Field(0.05, ge=0, lt=1, description="The least drop (0..1 scale) that is flagged")
    q: float = Field(0.05, gt=0, le=0.5, description="Benjamini-Hochberg false discovery rate")
    min_scores: Annotated[int, BeforeValidator(_whole)] = Field(
        20, ge=2, le=100_000, description="Scores needed on each side"
    )
    compare: Literal["window", "agent_version"] = "window"


class EvalSettingsOut(_Out):
    recent_days: float
    baseline_days: float
    margin: float
    q: float
    min_scores: int
    compare: Literal["window", "agent_version"]


class ScoreIn(_In):
    """A value, a label, or both."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["value"], "properties": {"value": {"type": "number"}}},
                {"required": ["label"], "properties": {"label": {"type": "string"}}},
            ]
        }
    )

    run_id: RequestRunId
    name: Text = Field(min_length=1, max_length=256)
    value: float | None = Field(None, allow_inf_nan=False)
    label: Text | None = Field(None, min_length=1, max_length=256)
    comment: Text | None = Field(None, max_length=8192)
    span_id: RequestSpanId | None = None


class ScoreCreated(_Out):
    event_id: str
    run_id: str
    name: str
    source: Literal["sdk", "human"]
    author: str | None


class DailyScore(_Out):
    day: str
    agent: str | None
    evaluator: str | None
    evaluator_version: str | None
    name: str
    source: str
    scores: int
    mean_value: float | None
    mean_normalised: float | None = Field(description="0..1, 1 the best (evaluators' scores)")
    passed: int | None = Field(description="Boolean scores: how many were true")


class DailyScores(_Out):
    timezone: str
    days: list[DailyScore]
