"""Eval configurations: which evaluator (a built-in by name, or ``module:attribute`` of your own)
with which parameters, over which runs (agents, environments, tags, a sampling rate), and when —
``post_run`` (each run, a grace period after it ends), ``schedule`` (a cron schedule in a timezone,
over a window of past runs) or ``manual`` (only when asked: ``evals run``, a backfill).

A configuration is checked when it is saved: the evaluator must resolve, its parameters must be
accepted, the schedule must parse. Sampling is deterministic by run id: the same runs are chosen
every time, by every worker.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import time
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.evals.evaluator import Evaluator
from controlroom.store.engine import Store
from controlroom.store.tables import eval_configs, eval_jobs

TRIGGERS = ("post_run", "schedule", "manual")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
DEFAULT_GRACE_SECONDS = 30.0
MAX_GRACE_SECONDS = 86_400.0
MAX_WINDOW_SECONDS = 366 * 86_400.0


@dataclass(frozen=True, slots=True)
class Selector:
    """Which runs: any of ``agents`` (empty: all), any of ``environments``, with any of ``tags``,
    and a deterministic sample of ``sample_rate`` of them by run id."""

    agents: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    sample_rate: float = 1.0

    def __post_init__(self) -> None:
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ValidationFailed(
                f"sample_rate {rate!r} must be more than 0 and at most 1", field="sample_rate"
            )
        for name in ("agents", "environments", "tags"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
                raise ValidationFailed(f"{name} must be a list of non-empty strings", field=name)
            object.__setattr__(self, name, tuple(values))

    def sampled(self, run_id: str) -> bool:
        """The same answer for a run every time (a hash of its id, not a random draw)."""
        if self.sample_rate >= 1:
            return True
        digest = hashlib.sha256(run_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.sample_rate

    def matches(self, agent: str | None, environment: str | None, tags: Any) -> bool:
        if self.agents and agent not in self.agents:
            return False
        if self.environments and environment not in self.environments:
            return False
        return not self.tags or any(t in self.tags for t in (tags or ()))

    def as_json(self) -> dict[str, Any]:
        return {
            "agents": list(self.agents),
            "environments": list(self.environments),
            "tags": list(self.tags),
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> Selector:
        doc = doc or {}
        return cls(
            tuple(doc.get("agents") or ()),
            tuple(doc.get("environments") or ()),
            tuple(doc.get("tags") or ()),
            float(doc.get("sample_rate", 1.0)),
        )


@dataclass(frozen=True, slots=True)
class EvalConfig:
    id: int
    project_id: int
    name: str
    evaluator: str  # a built-in's name, or module:attribute
    params: dict[str, Any]
    selector: Selector
    trigger: str
    schedule: str | None
    timezone: str
    window_seconds: float | None
    grace_seconds: float
    next_run_at: int | None
    created_at: int
    paused_at: int | None
    _resolved: list[Evaluator[..., Any]] = field(default_factory=list, compare=False, repr=False)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def claim_first(self) -> bool:
        """Whether a run must be claimed before it is judged: anything but a model-free built-in
        (your own evaluator, the LLM judge: judging twice would cost twice)."""
        from controlroom.evals.builtins import BUILTINS

        costly = getattr(self.resolve(), "estimated_cost_per_run_usd", None) is not None
        return self.evaluator not in BUILTINS or costly

    def resolve(self) -> Evaluator[..., Any]:
        """The evaluator, made once per configuration object."""
        if not self._resolved:
            self._resolved.append(resolve(self.evaluator, self.params))
        return self._resolved[0]


def resolve(spec: str, params: dict[str, Any]) -> Evaluator[..., Any]:
    """A built-in by name (made with ``params``), or ``module:attribute``: an evaluator (no
    params), or a function that makes one from ``params``. ValidationFailed says what is wrong."""
    from controlroom.evals.builtins import BUILTINS, builtin

    if spec in BUILTINS:
        try:
            return builtin(spec, **params)
        except (TypeError, ValueError) as e:
            raise ValidationFailed(str(e), field="params") from None
    if ":" not in spec:
        known = ", ".join(sorted(BUILTINS))
        raise ValidationFailed(
            f"evaluator {spec!r} is neither a built-in ({known}) nor module:attribute", field="evaluator"
        )
    module_name, _, attribute = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as e:  # an import can raise anything
        raise ValidationFailed(
            f"evaluator {spec!r} cannot be imported here: {type(e).__name__}: {e}", field="evaluator"
        ) from None
    if isinstance(found, Evaluator):
        if params:
            raise ValidationFailed(f"evaluator {spec!r} takes no params", field="params")
        return found
    if callable(found) and params:
        try:
            made = found(**params)
        except (TypeError, ValueError) as e:
            raise ValidationFailed(f"evaluator {spec!r}: {e}", field="params") from None
        if isinstance(made, Evaluator):
            return made
    raise ValidationFailed(
        f"evaluator {spec!r} is not an @controlroom.evaluator function (nor a function making one from params)",
        field="evaluator",
    )


def next_time(schedule: str, timezone: str, after_ns: int) -> int:
    """The schedule's first time after ``after_ns`` (epoch ns), the cron read in ``timezone``."""
    from croniter import croniter

    start = datetime.fromtimestamp(after_ns / 1e9, zoneinfo.ZoneInfo(timezone))
    nxt = croniter(schedule, start).get_next(datetime)
    return int(nxt.timestamp()) * 10**9


def _check(
    *,
    name: str,
    trigger: str,
    schedule: str | None,
    timezone: str,
    window_seconds: float | None,
    grace_seconds: float,
) -> None:
    from controlroom.accounts.projects import check_timezone

    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationFailed(
            f"name {name!r} must be 1 to 128 letters, digits, '_', '.', ':' or '-'", field="name"
        )
    if trigger not in TRIGGERS:
        raise ValidationFailed(f"trigger {trigger!r} must be one of {', '.join(TRIGGERS)}", field="trigger")
    check_timezone(timezone)
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationFailed(f"grace_seconds {grace_seconds!r} must be 0 to 86400", field="grace_seconds")
    if trigger == "schedule":
        from croniter import croniter

        if not schedule or not croniter.is_valid(schedule) or len(schedule.split()) != 5:
            raise ValidationFailed(
                f"schedule {schedule!r} must be a cron expression of 5 fields (e.g. '0 3 * * *')",
                field="schedule",
            )
        if window_seconds is None:
            raise ValidationFailed("a scheduled configuration needs window_seconds", field="window_seconds")
    elif schedule is not None:
        raise ValidationFailed(f"schedule is only for trigger 'schedule', not {trigger!r}", field="schedule")
    if window_seconds is not None and not 0 < window_seconds <= MAX_WINDOW_SECONDS:
        raise ValidationFailed(
            f"window_seconds {window_seconds!r} must be more than 0 and at most a year",
            field="window_seconds",
        )


def _config(r: Row[Any]) -> EvalConfig:
    return EvalConfig(
        r.id,
        r.project_id,
        r.name,
        r.evaluator,
        dict(r.params or {}),
        Selector.from_json(r.selector),
        r.trigger,
        r.schedule,
        r.timezone,
        r.window_seconds,
        r.grace_seconds,
        r.next_run_at,
        r.created_at,
        r.paused_at,
    )


def create_config(
    store: Store,
    conn: Connection,
    *,
    project_id: int,
    name: str,
    evaluator: str,
    params: dict[str, Any] | None = None,
    selector: Selector | None = None,
    trigger: str = "manual",
    schedule: str | None = None,
    timezone: str = "UTC",
    window_seconds: float | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    now: int | None = None,
) -> EvalConfig:
    """Save a configuration (409 if the name is taken). A post-run one gets its rolling job (its
    progress: runs judged so far); a scheduled one its first time."""
    now = time.time_ns() if now is None else now
    params = dict(params or {})
    selector = selector or Selector()
    _check(
        name=name,
        trigger=trigger,
        schedule=schedule,
        timezone=timezone,
        window_seconds=window_seconds,
        grace_seconds=grace_seconds,
    )
    resolve(evaluator, params)  # fails now, not on the first run judged
    if conn.execute(
        select(eval_configs.c.id).where(eval_configs.c.project_id == project_id, eval_configs.c.name == name)
    ).first():
        raise Conflict(f"an eval configuration named {name!r} exists")
    next_run = next_time(schedule, timezone, now) if trigger == "schedule" and schedule else None
    config_id = conn.execute(
        eval_configs.insert()
        .values(
            project_id=project_id,
            name=name,
            evaluator=evaluator,
            params=params,
            selector=selector.as_json(),
            trigger=trigger,
            schedule=schedule,
            timezone=timezone,
            window_seconds=window_seconds,
            grace_seconds=grace_seconds,
            next_run_at=next_run,
            created_at=now,
            updated_at=now,
        )
        .returning(eval_configs.c.id)
    ).scalar_one()
    if trigger == "post_run":
        conn.execute(
            eval_jobs.insert().values(
                project_id=project_id,
                config_id=config_id,
                kind="post_run",
                state="running",
                created_at=now,
                started_at=now,
            )
        )
    return get_config(conn, project_id=project_id, name=name)


def get_config(conn: Connection, *, project_id: int, name: str) -> EvalConfig:
    row = conn.execute(
        select(eval_configs).where(eval_configs.c.project_id == project_id, eval_configs.c.name == name)
    ).first()
    if row is None:
        raise NotFound(f"no eval configuration {name!r}")
    return _config(row)


def config_by_id(conn: Connection, config_id: int) -> EvalConfig:
    row = conn.execute(select(eval_configs).where(eval_configs.c.id == config_id)).first()
    if row is None:
        raise NotFound(f"no eval configuration {config_id}")
    return _config(row)


def list_configs(
    conn: Connection, *, project_id: int | None = None, trigger: str | None = None
) -> list[EvalConfig]:
    q = select(eval_configs).order_by(eval_configs.c.project_id, eval_configs.c.name)
    if project_id is not None:
        q = q.where(eval_configs.c.project_id == project_id)
    if trigger is not None:
        q = q.where(eval_configs.c.trigger == trigger)
    return [_config(r) for r in conn.execute(q)]


def set_paused(
    conn: Connection, *, project_id: int, name: str, paused: bool, now: int | None = None
) -> EvalConfig:
    """Pause (nothing new is judged: post-run runs ending meanwhile are not queued, the schedule
    skips) or resume (a schedule resumes from now: missed times are not made up)."""
    now = time.time_ns() if now is None else now
    c = get_config(conn, project_id=project_id, name=name)
    values: dict[str, Any] = {"paused_at": now if paused else None, "updated_at": now}
    if not paused and c.trigger == "schedule" and c.schedule:
        values["next_run_at"] = next_time(c.schedule, c.timezone, now)
    conn.execute(update(eval_configs).where(eval_configs.c.id == c.id).values(**values))
    return get_config(conn, project_id=project_id, name=name)
