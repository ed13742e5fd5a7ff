"""The schema: the append-only run log, projects and keys, and the read model derived from the log.

Times are integer epoch nanoseconds (UTC); money is integer nano-dollars (1e-9 USD).
Migrations under ``migrations/versions`` create exactly this; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (monotonic, fast); PostgreSQL gets BIGINT.
SeqInt = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(postgresql.JSONB(), "postgresql")

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    # agent: send events, read, reserve, request and claim approvals; admin: also manage the project
    Column("scope", String(16), nullable=False, server_default="agent"),
    # when it last authenticated a request, to within KEY_USE_RESOLUTION (null: never)
    Column("last_used_at", BigInteger),
)

# People. A user has a role per project (memberships); sessions are rows, so revoking one is a
# write the next request sees; login failures are counted here so throttling holds across processes.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(128), nullable=False, unique=True),  # lower-case
    Column("name", String(256), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("password_changed_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("role", String(16), nullable=False),  # viewer / approver / admin
    Column("created_at", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the cookie's token
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # absolute expiry
    Column("revoked_at", BigInteger),
)

# Approvals: the control state of each request (the run log has every transition as an event,
# written in the same transaction as the row's compare-and-set update).
approvals = Table(
    "approvals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("span_id", String(16)),
    Column("agent", String(256), nullable=False),
    Column("action", String(256), nullable=False),
    Column("arguments", Json),
    Column("arguments_hash", String(64), nullable=False),
    Column("idempotency_key", String(256), nullable=False),
    Column("started_by", String(256)),  # who started the run (four eyes: they may not approve it)
    Column("status", String(16), nullable=False),
    Column("min_role", String(16), nullable=False),
    Column("four_eyes", Boolean, nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("decided_at", BigInteger),
    Column("decided_by", Integer, ForeignKey("users.id")),
    Column("decided_role", String(16)),
    Column("reason", Text),
    Column("claimed_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("error", Json),
    UniqueConstraint("project_id", "run_id", "idempotency_key", "arguments_hash"),
    Index("ix_approvals_queue", "project_id", "status", "requested_at"),
    Index("ix_approvals_expiry", "status", "expires_at"),
)

approval_policies = Table(
    "approval_policies",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("action", String(256), primary_key=True),
    Column("min_role", String(16), nullable=False),
    Column("four_eyes", Boolean, nullable=False),
    Column("expires_after_seconds", Float),
    Column("updated_at", BigInteger, nullable=False),
    # the webhooks told of the action's approval events: NULL every webhook of the project, [] none
    Column("notify_webhooks", Json),
)

# Outgoing webhooks (approval notifications) and the log of their deliveries.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("format", String(16), nullable=False),  # json / slack
    Column("secret", String(128), nullable=False),  # HMAC-SHA256 key; the receiver verifies with it
    Column("event_types", Json, nullable=False),  # which approval.* events it receives
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event_id", String(64), nullable=False),  # the log event it tells of: enqueued once
    Column("event_type", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("state", String(16), nullable=False),  # pending / delivered / failed (gave up)
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    UniqueConstraint("webhook_id", "event_id"),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(200), primary_key=True),  # "account:<login>" or "address:<ip>"
    Column("window_start", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
)

# The run log. Rows are only ever inserted: no UPDATE or DELETE touches this table.
events = Table(
    "events",
    metadata,
    Column("seq", SeqInt, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),  # canonical JSON (UTF-8)
    UniqueConstraint("project_id", "event_id"),
    Index("ix_events_project_id_run_id", "project_id", "run_id"),
)

# How far each log consumer of the worker runtime (controlroom.workers) has read: the seq of the
# last event it is done with. The read model's consumer is "read_model".
consumer_positions = Table(
    "consumer_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Events the projector could not fold (kept in the log, skipped by the read model; see the log).
projection_errors = Table(
    "projection_errors",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("project_id", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("agent", String(256)),
    Column("status", String(16), nullable=False),
    Column("inputs", Json),
    Column("output", Json),
    Column("model", String(256)),
    Column("agent_version", String(256)),
    Column("environment", String(256)),
    Column("session_id", String(256)),
    Column("user_id", String(256)),
    Column("tags", Json),
    Column("metadata", Json),
    Column("started_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("has_start", Boolean, nullable=False, server_default="0"),  # run.started seen
    Column("end_status", String(16)),  # what run.ended said; abandoned is derived on top
    Column("abandoned_at", BigInteger),
    Column("failing_span_id", String(16)),
    Column("error_type", String(256)),
    Column("error_message", Text),
    Column("end_error_type", String(256)),
    Column("end_error_message", Text),
    Column("end_failing_span_id", String(16)),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_nanos", BigInteger, nullable=False, server_default="0"),
    Column("unpriced_calls", Integer, nullable=False, server_default="0"),
    Column("span_count", Integer, nullable=False, server_default="0"),
    Column("llm_count", Integer, nullable=False, server_default="0"),
    Column("tool_count", Integer, nullable=False, server_default="0"),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("fallback_count", Integer, nullable=False, server_default="0"),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("has_error", Boolean, nullable=False, server_default="0"),
    # calls the budget refused (a cap reached, held by calls in flight, or a model without a price)
    Column("refused_count", Integer, nullable=False, server_default="0"),
    Column("last_event_at", BigInteger, nullable=False),  # server clock, for the abandoned sweep
    Column("first_seq", BigInteger, nullable=False),
    Index("ix_runs_list", "project_id", "started_at", "run_id"),
    Index("ix_runs_agent", "project_id", "agent", "started_at", "run_id"),
    Index("ix_runs_status", "project_id", "status", "started_at", "run_id"),
    Index("ix_runs_environment", "project_id", "environment", "started_at", "run_id"),
    Index("ix_runs_cost", "project_id", "cost_nanos"),
    Index("ix_runs_open", "status", "last_event_at"),
    Index(
        "ix_runs_refused",
        "project_id",
        "started_at",
        "run_id",
        sqlite_where=text("refused_count > 0"),
        postgresql_where=text("refused_count > 0"),
    ),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("tag", String(256), primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("started_at", BigInteger),
    Index("ix_run_tags_list", "project_id", "tag", "started_at", "run_id"),
)

spans = Table(
    "spans",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16)),
    Column("kind", String(16)),
    Column("name", String(256)),
    Column("status", String(16), nullable=False),  # running / ok / error
    Column("started_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("input", Json),
    Column("output", Json),
    Column("attributes", Json),
    Column("error_type", String(256)),
    Column("error_message", Text),
    Column("provider", String(256)),
    Column("model", String(256)),
    Column("attempt", Integer),
    Column("retry_of", String(16)),
    Column("fallback_from", String(16)),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cache_read_tokens", BigInteger),
    Column("cache_write_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    Column("reported_cost_nanos", BigInteger),
    Column("computed_cost_nanos", BigInteger),
    Column("cost_nanos", BigInteger),
    Column("cost_source", String(16)),  # reported / computed / unknown; NULL for spans without usage
    Column("first_seq", BigInteger, nullable=False),
)

cost_daily = Table(
    "cost_daily",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD in the project's timezone
    Column("agent", String(256), primary_key=True),
    Column("provider", String(256), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("unpriced_calls", BigInteger, nullable=False),
)

scores = Table(
    "scores",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("span_id", String(16)),
    Column("name", String(256), nullable=False),
    Column("value", Float),
    Column("label", String(256)),
    Column("comment", Text),
    Column("source", String(16), nullable=False),
    Column("evaluator", String(256)),
    Column("ts", BigInteger, nullable=False),
    Column("evaluator_version", String(64)),
    Column("kind", String(16)),  # boolean / numeric / categorical; NULL: not said (sdk, before evals)
    Column("normalised", Float),  # the value on 0..1, higher is better (evaluators' scores)
    Column("author", String(128)),  # the person who gave a human score
    Index("ix_scores_run", "project_id", "run_id"),
    Index("ix_scores_name", "project_id", "name", "ts"),
    Index("ix_scores_series", "project_id", "evaluator", "evaluator_version", "name", "ts"),
)

# Evals: configurations (which evaluator over which runs, when), jobs (a batch over a window of
# runs, or the rolling post-run job of a configuration), items (one per evaluator version and run:
# the unique key that keeps a run from being judged twice), the post-run queue, and regressions.
eval_configs = Table(
    "eval_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("evaluator", String(512), nullable=False),  # a built-in's name, or module:attribute
    Column("params", Json, nullable=False),
    Column("selector", Json, nullable=False),  # agents, environments, tags, sample_rate
    Column("trigger", String(16), nullable=False),  # post_run / schedule / manual
    Column("schedule", String(128)),  # cron (5 fields), in ``timezone``
    Column("timezone", String(64), nullable=False),
    Column("window_seconds", Float),  # a scheduled job's window of past runs
    Column("grace_seconds", Float, nullable=False),  # post-run: wait this long after the end
    Column("next_run_at", BigInteger),  # the schedule's next time
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("paused_at", BigInteger),
    UniqueConstraint("project_id", "name"),
)

eval_jobs = Table(
    "eval_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("config_id", Integer, ForeignKey("eval_configs.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # post_run / scheduled / backfill
    Column("state", String(16), nullable=False),  # queued / running / done / failed / cancelled
    Column("since_ns", BigInteger),  # the window of runs (started at), batch jobs
    Column("until_ns", BigInteger),
    Column("cursor", String(64)),  # where a batch job is in its window (keyset), to resume
    Column("total", Integer),  # runs in the window (batch jobs, when known)
    Column("processed", Integer, nullable=False, server_default="0"),
    Column("scored", Integer, nullable=False, server_default="0"),
    Column("not_applicable", Integer, nullable=False, server_default="0"),
    Column("errors", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("note", Text),  # why runs were skipped, or why the job failed
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("lease_until", BigInteger),  # a running batch job's worker holds it until then
    Index("ix_eval_jobs_state", "state", "created_at"),
    Index("ix_eval_jobs_project", "project_id", "id"),
)

eval_items = Table(
    "eval_items",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("evaluator", String(256), primary_key=True),
    Column("evaluator_version", String(64), primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("job_id", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # claimed / scored / not_applicable / error
    Column("claimed_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Column("error_type", String(256)),
    Column("error_message", Text),
    Index("ix_eval_items_job", "job_id", "state"),
)

eval_postrun = Table(
    "eval_postrun",
    metadata,
    Column("config_id", Integer, primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Index("ix_eval_postrun_due", "due_at"),
)

eval_regressions = Table(
    "eval_regressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("agent", String(256), nullable=False),
    Column("evaluator", String(256), nullable=False),
    Column("evaluator_version", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("state", String(16), nullable=False),  # open / resolved
    Column("opened_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger),
    Column("checked_at", BigInteger, nullable=False),
    Column("clean_windows", Integer, nullable=False, server_default="0"),
    Column("clean_since", BigInteger),  # the end of the last window counted clean
    Column("evidence", Text, nullable=False),
    Column("details", Json, nullable=False),  # the test: sides, change, CI, p, q, worst runs
    Index("ix_eval_regressions_open", "project_id", "state", "opened_at"),
)

eval_settings = Table(  # a project's regression detection settings (absent: the defaults)
    "eval_settings",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("settings", Json, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# An LLM judge's answers (evals/judge.py), so the same prompt to the same model with the same
# parameters is asked once: key is the sha256 of them. Control state, not derived from the log.
judge_cache = Table(
    "judge_cache",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("choice", String(256), nullable=False),
    Column("reasoning", Text, nullable=False),
    Column("judge_run_id", String(32)),  # the judge's run that answered
    Column("created_at", BigInteger, nullable=False),
)

price_overrides = Table(
    "price_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False, index=True),
    Column("provider", String(256)),
    Column("model", String(256), nullable=False),
    Column("input_per_mtok", String(40), nullable=False),  # decimal USD per million tokens, exact
    Column("output_per_mtok", String(40), nullable=False),
    Column("cache_read_per_mtok", String(40)),
    Column("cache_write_per_mtok", String(40)),
    Column("effective_from", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Spend that no reservation accounted for (calls made without the budget guard, or known only from
# traces), per 15-minute UTC bucket: every timezone's midnight falls on such a boundary, so the
# cap can add up any budget's local day. Part of the read model.
unguarded_spend = Table(
    "unguarded_spend",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("bucket", BigInteger, primary_key=True),  # UTC epoch seconds // 900
    Column("agent", String(256), primary_key=True),
    Column("cost_nanos", BigInteger, nullable=False),
)

# Spend per UTC hour, agent and model (the overview's hourly costs and cost spikes), summed over
# the model calls' costs at their start like cost_daily. Part of the read model.
cost_hourly = Table(
    "cost_hourly",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # UTC epoch seconds // 3600
    Column("agent", String(256), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
)

# Runs per UTC hour of their start and status (the overview's runs per hour): a run counts once, in
# its start's hour, with its current status. Part of the read model.
runs_hourly = Table(
    "runs_hourly",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # UTC epoch seconds // 3600
    Column("status", String(16), primary_key=True),
    Column("runs", BigInteger, nullable=False),
)

# Runs that succeeded per 15-minute UTC bucket of their start (the costs view's cost per successful
# run: a day in any timezone is whole buckets), per agent and per the model-call groups the run made:
# ``grouping`` "run" counts each run once (provider and model ""), "provider" once per provider it
# called, "model" once per model, "provider_model" once per (provider, model). Part of the read model.
run_outcomes = Table(
    "run_outcomes",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("grouping", String(16), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),  # UTC epoch seconds // 900
    Column("agent", String(256), primary_key=True),
    Column("provider", String(256), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("succeeded_runs", BigInteger, nullable=False),
)

# -- the daily cost cap (control state, written synchronously; not derived from the log) ------
budgets = Table(
    "budgets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("agent", String(256), nullable=False),  # "" = the whole project
    Column("cap_nanos", BigInteger, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("project_id", "agent"),
)

budget_days = Table(
    "budget_days",
    metadata,
    Column("budget_id", Integer, primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD in the budget's timezone
    Column("settled_nanos", BigInteger, nullable=False),
    Column("held_nanos", BigInteger, nullable=False),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("agent", String(256), nullable=False),
    Column("run_id", String(32)),
    Column("span_id", String(16)),
    Column("provider", String(256)),
    Column("model", String(256)),
    Column("hold_nanos", BigInteger, nullable=False),
    Column("holds", Json, nullable=False),  # [[budget_id, day], ...]
    Column("state", String(16), nullable=False),  # held / settled / released / expired
    Column("actual_nanos", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("settled_at", BigInteger),
    Index("ix_reservations_open", "state", "expires_at"),
)

READ_MODEL_TABLES = (
    runs,
    run_tags,
    spans,
    cost_daily,
    scores,
    unguarded_spend,
    cost_hourly,
    runs_hourly,
    run_outcomes,
)
