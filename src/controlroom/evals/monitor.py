"""Regressions that surface by themselves: every so often, each project's evaluator scores are
split per series (agent, evaluator, evaluator version, score name) into a recent window and a
baseline — the window before it, or (``compare="agent_version"``) the runs of the agent's previous
version — and tested together (:func:`controlroom.evals.regressions.detect`: at least 20 scores a
side, a drop of at least the margin, significant after Benjamini-Hochberg).

A flagged series opens a regression (one open per series) with its evidence in words and its
worst runs; a check that flags it again refreshes the evidence. An open regression resolves after
two clean windows: two checks a window apart that do not flag it.

Windows are about when the judged runs started, not when they were scored: a backfill that scores
last month today puts last month's scores in last month.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import Connection, select, update

from controlroom.errors import ValidationFailed
from controlroom.evals.regressions import Finding, Sample, SeriesKey, SeriesPair, detect
from controlroom.store.engine import Store
from controlroom.store.tables import eval_regressions, eval_settings, projects, runs, scores

DAY = 86_400.0
CLEAN_WINDOWS_TO_RESOLVE = 2


@dataclass(frozen=True, slots=True)
class Settings:
    """A project's regression detection. ``compare``: ``window`` (the recent window against the
    ``baseline_days`` before it) or ``agent_version`` (each agent's latest version against the one
    before, both within the lookback of ``recent_days + baseline_days``)."""

    recent_days: float = 1.0
    baseline_days: float = 7.0
    margin: float = 0.05
    q: float = 0.05
    min_scores: int = 20
    compare: str = "window"

    def __post_init__(self) -> None:
        checks = (
            ("recent_days", 0 < self.recent_days <= 90, "more than 0 and at most 90"),
            ("baseline_days", 0 < self.baseline_days <= 365, "more than 0 and at most 365"),
            ("margin", 0 <= self.margin < 1, "0 or more and less than 1"),
            ("q", 0 < self.q <= 0.5, "more than 0 and at most 0.5"),
            ("min_scores", 2 <= self.min_scores <= 100_000, "2 to 100000"),
            ("compare", self.compare in ("window", "agent_version"), "window or agent_version"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ValidationFailed(f"{name} {getattr(self, name)!r} must be {what}", field=name)


def get_settings(conn: Connection, *, project_id: int) -> Settings:
    doc = conn.execute(
        select(eval_settings.c.settings).where(eval_settings.c.project_id == project_id)
    ).scalar()
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in (doc or {}).items() if k in known})


def set_settings(store: Store, conn: Connection, *, project_id: int, settings: Settings) -> Settings:
    values = {"settings": asdict(settings), "updated_at": time.time_ns()}
    stmt = store.insert(eval_settings).values(project_id=project_id, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["project_id"], set_=values))
    return settings


@dataclass(frozen=True, slots=True)
class Regression:
    id: int
    project_id: int
    agent: str
    evaluator: str
    evaluator_version: str
    name: str
    state: str
    opened_at: int
    resolved_at: int | None
    checked_at: int
    clean_windows: int
    evidence: str
    details: dict[str, Any]


def _regression(r: Any) -> Regression:
    return Regression(
        r.id,
        r.project_id,
        r.agent,
        r.evaluator,
        r.evaluator_version,
        r.name,
        r.state,
        r.opened_at,
        r.resolved_at,
        r.checked_at,
        r.clean_windows,
        r.evidence,
        dict(r.details),
    )


def list_regressions(
    conn: Connection, *, project_id: int, state: str | None = "open", limit: int = 100
) -> list[Regression]:
    q = select(eval_regressions).where(eval_regressions.c.project_id == project_id)
    if state is not None:
        q = q.where(eval_regressions.c.state == state)
    return [
        _regression(r) for r in conn.execute(q.order_by(eval_regressions.c.opened_at.desc()).limit(limit))
    ]


# -- the check ---------------------------------------------------------------------------------------


def series(conn: Connection, *, project_id: int, settings: Settings, now: int) -> list[SeriesPair]:
    """The project's series over the lookback, split as ``settings`` says."""
    recent_start = now - int(settings.recent_days * DAY * 1e9)
    start = recent_start - int(settings.baseline_days * DAY * 1e9)
    rows = conn.execute(
        select(
            runs.c.agent,
            scores.c.evaluator,
            scores.c.evaluator_version,
            scores.c.name,
            scores.c.kind,
            scores.c.normalised,
            scores.c.run_id,
            runs.c.started_at,
            runs.c.agent_version,
        )
        .join(runs, (runs.c.project_id == scores.c.project_id) & (runs.c.run_id == scores.c.run_id))
        .where(
            scores.c.project_id == project_id,
            scores.c.source == "evaluator",
            scores.c.normalised.is_not(None),
            scores.c.evaluator.is_not(None),
            runs.c.started_at >= start,
            runs.c.started_at < now,
        )
        .order_by(runs.c.started_at)
    )
    grouped: dict[SeriesKey, list[Any]] = defaultdict(list)
    for r in rows:
        key = SeriesKey(r.agent or "", r.evaluator, r.evaluator_version or "", r.name)
        grouped[key].append(r)
    pairs = []
    for key, rs in grouped.items():
        kind = "boolean" if all(r.kind == "boolean" for r in rs) else "numeric"
        if settings.compare == "window":
            base = [r for r in rs if r.started_at < recent_start]
            recent = [r for r in rs if r.started_at >= recent_start]
        else:
            versions = list(dict.fromkeys(r.agent_version for r in rs if r.agent_version is not None))
            if len(versions) < 2:
                continue
            base = [r for r in rs if r.agent_version == versions[-2]]
            recent = [r for r in rs if r.agent_version == versions[-1]]
        if not base or not recent:
            continue
        pairs.append(
            SeriesPair(
                key,
                Sample([r.normalised for r in base], [r.run_id for r in base], kind),  # type: ignore[arg-type]
                Sample([r.normalised for r in recent], [r.run_id for r in recent], kind),  # type: ignore[arg-type]
            )
        )
    return pairs


def _details(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "test": f.test,
        "baseline": {"n": f.baseline_n, "mean": f.baseline_mean},
        "recent": {"n": f.recent_n, "mean": f.recent_mean},
        "change": f.change,
        "ci": list(f.ci),
        "p": f.p,
        "q": f.q,
        "worst_run_ids": list(f.worst_run_ids),
    }


@dataclass(frozen=True, slots=True)
class CheckResult:
    tested: int
    opened: int
    refreshed: int
    resolved: int


def check(store: Store, *, project_id: int, now: int | None = None) -> CheckResult:
    """Test the project's series now and open, refresh or resolve its regressions."""
    now = time.time_ns() if now is None else now
    with store.read() as conn:
        settings = get_settings(conn, project_id=project_id)
        pairs = series(conn, project_id=project_id, settings=settings, now=now)
    findings = detect(pairs, margin=settings.margin, q=settings.q, min_n=settings.min_scores)
    flagged = {
        (f.key.agent, f.key.evaluator, f.key.evaluator_version, f.key.score_name): f
        for f in findings
        if f.flagged
    }
    window_ns = int(settings.recent_days * DAY * 1e9)
    opened = refreshed = resolved = 0
    with store.write() as conn:
        open_now = {
            (r.agent, r.evaluator, r.evaluator_version, r.name): r
            for r in list_regressions(conn, project_id=project_id, state="open", limit=100_000)
        }
        for key, f in flagged.items():
            values = {
                "evidence": f.evidence,
                "details": _details(f),
                "checked_at": now,
                "clean_windows": 0,
                "clean_since": None,
            }
            if key in open_now:
                conn.execute(
                    update(eval_regressions).where(eval_regressions.c.id == open_now[key].id).values(**values)
                )
                refreshed += 1
            else:
                agent, evaluator, version, name = key
                conn.execute(
                    eval_regressions.insert().values(
                        project_id=project_id,
                        agent=agent,
                        evaluator=evaluator,
                        evaluator_version=version,
                        name=name,
                        state="open",
                        opened_at=now,
                        **values,
                    )
                )
                opened += 1
        for key, reg in open_now.items():
            if key in flagged:
                continue
            since = conn.execute(
                select(eval_regressions.c.clean_since).where(eval_regressions.c.id == reg.id)
            ).scalar()
            values2: dict[str, Any] = {"checked_at": now}
            if since is None:
                values2 |= {"clean_windows": 1, "clean_since": now}
            elif now - since >= window_ns:
                values2 |= {"clean_windows": reg.clean_windows + 1, "clean_since": now}
                if reg.clean_windows + 1 >= CLEAN_WINDOWS_TO_RESOLVE:
                    values2 |= {"state": "resolved", "resolved_at": now}
                    resolved += 1
            conn.execute(update(eval_regressions).where(eval_regressions.c.id == reg.id).values(**values2))
    return CheckResult(len(findings), opened, refreshed, resolved)


def check_all(store: Store, *, now: int | None = None) -> int:
    """Check every project that has evaluator scores; returns the regressions opened."""
    with store.read() as conn:
        ids = [
            r.id
            for r in conn.execute(select(projects.c.id))
            if conn.execute(
                select(scores.c.event_id)
                .where(scores.c.project_id == r.id, scores.c.source == "evaluator")
                .limit(1)
            ).first()
        ]
    return sum(check(store, project_id=pid, now=now).opened for pid in ids)
