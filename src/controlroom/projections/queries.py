"""Reads over the read model: run lists (keyset-paginated), run detail, daily cost rollups, as
typed objects in domain units (epoch ns, nano-dollars, ``Usage``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, literal_column, or_, select

from controlroom.errors import InvalidQuery, NotFound
from controlroom.events import RUN_STATUSES
from controlroom.money import Usage
from controlroom.projections.fold import COST_FIELDS, TOKEN_FIELDS, rollups
from controlroom.projections.outcomes import Outcome, outcomes
from controlroom.store.tables import approvals, cost_daily, run_tags, runs, scores, spans

GROUPS = ("agent", "provider", "model")
COUNTS = ("span", "llm", "tool", "retry", "fallback", "error")
_CURSOR = re.compile(r"([0-9]{1,18}|[1-8][0-9]{18})_([0-9a-f]{32})")  # started_at < 2**63
# ordered by a score: the score (a float's repr) and the run id
_SCORE_CURSOR = re.compile(r"s(-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[-+]?[0-9]+)?)_([0-9a-f]{32})")
CURSOR_PATTERN = f"^({_CURSOR.pattern}|{_SCORE_CURSOR.pattern})$"
ORDERS = ("newest", "score_asc", "score_desc")
"""A page cursor: the last run's started_at (epoch ns) and run id."""


@dataclass(frozen=True, slots=True)
class RunError:
    type: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    agent: str | None
    status: str
    started_at_ns: int | None
    ended_at_ns: int | None
    model: str | None
    agent_version: str | None
    environment: str | None
    session_id: str | None
    user_id: str | None
    tags: tuple[str, ...]
    error: RunError | None
    failing_span_id: str | None
    usage: Usage
    cost_nanos: int | None
    unpriced_calls: int
    counts: dict[str, int]  # per COUNTS: spans, llm calls, tool calls, retries, fallbacks, errors
    refused_calls: int = 0  # calls the budget refused (fold.CAP_REFUSALS)


@dataclass(frozen=True, slots=True)
class BriefScore:
    name: str
    value: float | None
    label: str | None
    source: str


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[RunSummary]
    next_cursor: str | None
    scores: dict[str, list[BriefScore]] = field(default_factory=dict)  # by run id


@dataclass(slots=True)
class SpanNode:
    """A span of a run's tree (``children`` in start order)."""

    span_id: str
    parent_span_id: str | None
    kind: str | None
    name: str | None
    status: str
    started_at_ns: int | None
    ended_at_ns: int | None
    input: Any
    output: Any
    attributes: dict[str, Any]
    error: RunError | None
    provider: str | None
    model: str | None
    attempt: int | None
    retry_of: str | None
    fallback_from: str | None
    usage: Usage | None
    cost_nanos: int | None
    cost_source: str | None
    reported_cost_nanos: int | None
    computed_cost_nanos: int | None
    rollup: bool  # its usage and cost sum its descendants' calls
    orphan: bool = False  # its parent never arrived (or names a cycle)
    children: list[SpanNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Score:
    name: str
    value: float | None
    label: str | None
    comment: str | None
    span_id: str | None
    source: str
    evaluator: str | None
    ts_ns: int | None
    evaluator_version: str | None = None
    kind: str | None = None
    normalised: float | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class RunDetail:
    summary: RunSummary
    inputs: Any
    output: Any
    metadata: dict[str, Any]
    spans: list[SpanNode]  # the roots
    scores: list[Score]


@dataclass(frozen=True, slots=True)
class CostRow:
    day: date
    group: dict[str, str | None]  # the group_by keys' values (agent, provider, model)
    calls: int
    usage: Usage
    cost_nanos: int
    unpriced_calls: int
    succeeded_runs: int = 0  # see projections.outcomes
    refused_calls: int = 0


@dataclass(frozen=True, slots=True)
class DailyCosts:
    since: date
    until: date
    timezone: str
    group_by: tuple[str, ...]
    days: list[CostRow]
    calls: int
    cost_nanos: int
    unpriced_calls: int
    succeeded_runs: int = 0
    refused_calls: int = 0


@dataclass(frozen=True, slots=True)
class RunFilter:
    agent: str | None = None
    status: tuple[str, ...] = ()
    environment: str | None = None
    tag: str | None = None
    since: int | None = None
    until: int | None = None
    min_cost_nanos: int | None = None
    has_error: bool | None = None
    score_name: str | None = None  # runs with a score of this name (within score_min..score_max)
    score_min: float | None = None
    score_max: float | None = None
    order: str = "newest"  # or by the score_name score (a run's lowest of that name): score_asc, score_desc
    awaiting_approval: bool = False  # only runs with an approval request still pending
    refused_by_cap: bool = False  # only runs with a call the budget refused


def encode_cursor(started_at: int, run_id: str) -> str:
    return f"{started_at}_{run_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    m = _CURSOR.fullmatch(cursor)
    if m is None:
        raise InvalidQuery(f"cursor {cursor!r} is not a cursor this API returned", parameter="cursor")
    return int(m.group(1)), m.group(2)


def list_runs(
    conn: Connection, project_id: int, f: RunFilter, *, limit: int = 50, cursor: str | None = None
) -> RunPage:
    if f.order not in ORDERS:
        raise InvalidQuery(f"order {f.order!r} is not one of {', '.join(ORDERS)}", parameter="order")
    if f.order != "newest":
        return _runs_by_score(conn, project_id, f, limit=limit, cursor=cursor)
    for s in f.status:
        if s not in RUN_STATUSES:
            raise InvalidQuery(f"status {s!r} is not one of {', '.join(RUN_STATUSES)}", parameter="status")
    if f.tag is not None:
        # Walk the tag's own index (project, tag, started_at, run_id) in order, so a rare tag does
        # not mean scanning every run; run_tags.started_at is the run's started_at.
        t = run_tags
        q = (
            select(runs)
            .select_from(t.join(runs, and_(runs.c.project_id == t.c.project_id, runs.c.run_id == t.c.run_id)))
            .where(t.c.project_id == project_id, t.c.tag == f.tag)
        )
        started, rid = t.c.started_at, t.c.run_id
    else:
        q = select(runs).where(runs.c.project_id == project_id)
        started, rid = runs.c.started_at, runs.c.run_id
    q = _flag_filters(conn, q, project_id, f)
    if f.agent is not None:
        q = q.where(runs.c.agent == f.agent)
    if f.status:
        q = q.where(runs.c.status.in_(f.status))
    if f.environment is not None:
        q = q.where(runs.c.environment == f.environment)
    if f.since is not None:
        q = q.where(started >= f.since)
    if f.until is not None:
        q = q.where(started < f.until)
    if f.min_cost_nanos is not None:
        q = q.where(runs.c.cost_nanos >= f.min_cost_nanos)
    if f.has_error is not None:
        q = q.where(runs.c.has_error == f.has_error)
    if f.score_name is not None or f.score_min is not None or f.score_max is not None:
        scored = select(scores.c.run_id).where(
            scores.c.project_id == runs.c.project_id, scores.c.run_id == runs.c.run_id
        )
        if f.score_name is not None:  # else: a score of any name
            scored = scored.where(scores.c.name == f.score_name)
        if f.score_min is not None:
            scored = scored.where(scores.c.value >= f.score_min)
        if f.score_max is not None:
            scored = scored.where(scores.c.value <= f.score_max)
        q = q.where(scored.exists())
    if cursor:
        started_at, run_id = decode_cursor(cursor)
        q = q.where(or_(started < started_at, and_(started == started_at, rid < run_id)))
    rows = conn.execute(q.order_by(started.desc(), rid.desc()).limit(limit + 1)).mappings().all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["started_at"], page[-1]["run_id"]) if len(rows) > limit else None
    return RunPage(
        [run_summary(r) for r in page],
        next_cursor,
        _brief_scores(conn, project_id, [r["run_id"] for r in page]),
    )


def _runs_by_score(
    conn: Connection, project_id: int, f: RunFilter, *, limit: int, cursor: str | None
) -> RunPage:
    """The runs with a ``score_name`` score (any score without it), by that score (a run's lowest
    of that name), then by run id; keyset-paged on (score, run id)."""
    for st in f.status:
        if st not in RUN_STATUSES:
            raise InvalidQuery(f"status {st!r} is not one of {', '.join(RUN_STATUSES)}", parameter="status")
    agg = (
        select(scores.c.run_id, func.min(scores.c.value).label("score"))
        .where(
            scores.c.project_id == project_id,
            scores.c.value.is_not(None),
            *([] if f.score_name is None else [scores.c.name == f.score_name]),
        )
        .group_by(scores.c.run_id)
        .subquery()
    )
    score = agg.c.score
    q = select(runs, score).join(agg, runs.c.run_id == agg.c.run_id).where(runs.c.project_id == project_id)
    q = _flag_filters(conn, q, project_id, f)
    if f.tag is not None:
        q = q.where(
            select(run_tags.c.run_id)
            .where(
                run_tags.c.project_id == project_id,
                run_tags.c.tag == f.tag,
                run_tags.c.run_id == runs.c.run_id,
            )
            .exists()
        )
    for column, value in ((runs.c.agent, f.agent), (runs.c.environment, f.environment)):
        if value is not None:
            q = q.where(column == value)
    if f.status:
        q = q.where(runs.c.status.in_(f.status))
    if f.since is not None:
        q = q.where(runs.c.started_at >= f.since)
    if f.until is not None:
        q = q.where(runs.c.started_at < f.until)
    if f.min_cost_nanos is not None:
        q = q.where(runs.c.cost_nanos >= f.min_cost_nanos)
    if f.has_error is not None:
        q = q.where(runs.c.has_error == f.has_error)
    if f.score_min is not None:
        q = q.where(score >= f.score_min)
    if f.score_max is not None:
        q = q.where(score <= f.score_max)
    ascending = f.order == "score_asc"
    if cursor:
        m = _SCORE_CURSOR.fullmatch(cursor)
        if m is None:
            raise InvalidQuery(f"cursor {cursor!r} is not a cursor of this order", parameter="cursor")
        after, rid = float(m.group(1)), m.group(2)
        if ascending:
            q = q.where(or_(score > after, and_(score == after, runs.c.run_id > rid)))
        else:
            q = q.where(or_(score < after, and_(score == after, runs.c.run_id < rid)))
    order = (score.asc(), runs.c.run_id.asc()) if ascending else (score.desc(), runs.c.run_id.desc())
    rows = conn.execute(q.order_by(*order).limit(limit + 1)).mappings().all()
    page = rows[:limit]
    next_cursor = f"s{page[-1]['score']!r}_{page[-1]['run_id']}" if len(rows) > limit else None
    return RunPage(
        [run_summary(r) for r in page],
        next_cursor,
        _brief_scores(conn, project_id, [r["run_id"] for r in page]),
    )


def _flag_filters(conn: Connection, q: Any, project_id: int, f: RunFilter) -> Any:
    """The filters on what happened to a run beside its row: a pending approval request (the few
    pending requests, read first through the queue's index, so that the runs are looked up by
    their key instead of every run of the project being checked against them), a call the budget
    refused (the runs' partial index on refused_count > 0)."""
    if f.awaiting_approval:
        pending = conn.execute(
            select(approvals.c.run_id)
            .where(approvals.c.project_id == project_id, approvals.c.status == "pending")
            .distinct()
        ).scalars()
        q = q.where(runs.c.run_id.in_(list(pending)))
    if f.refused_by_cap:
        q = q.where(runs.c.refused_count > literal_column("0"))  # a literal: the partial index
    return q


def _brief_scores(conn: Connection, project_id: int, run_ids: list[str]) -> dict[str, list[BriefScore]]:
    """The scores of a page of runs, by run, in one query."""
    out: dict[str, list[BriefScore]] = {}
    if not run_ids:
        return out
    rows = conn.execute(
        select(scores.c.run_id, scores.c.name, scores.c.value, scores.c.label, scores.c.source)
        .where(scores.c.project_id == project_id, scores.c.run_id.in_(run_ids))
        .order_by(scores.c.ts)
    )
    for r in rows:
        out.setdefault(r.run_id, []).append(BriefScore(r.name, r.value, r.label, r.source))
    return out


def _error(r: Any) -> RunError | None:
    return RunError(r["error_type"], r["error_message"]) if r["error_type"] else None


def run_summary(r: Any) -> RunSummary:
    return RunSummary(
        run_id=r["run_id"],
        agent=r["agent"],
        status=r["status"],
        started_at_ns=r["started_at"],
        ended_at_ns=r["ended_at"],
        model=r["model"],
        agent_version=r["agent_version"],
        environment=r["environment"],
        session_id=r["session_id"],
        user_id=r["user_id"],
        tags=tuple(r["tags"] or ()),
        error=_error(r),
        failing_span_id=r["failing_span_id"],
        usage=Usage(**{k: r[k] for k in TOKEN_FIELDS}),
        cost_nanos=r["cost_nanos"],
        unpriced_calls=r["unpriced_calls"],
        counts={k: r[f"{k}_count"] for k in COUNTS},
        refused_calls=r["refused_count"],
    )


def span_node(s: Any, *, rollup: bool) -> SpanNode:
    return SpanNode(
        span_id=s["span_id"],
        parent_span_id=s["parent_span_id"],
        kind=s["kind"],
        name=s["name"],
        status=s["status"],
        started_at_ns=s["started_at"],
        ended_at_ns=s["ended_at"],
        input=s.get("input"),
        output=s.get("output"),
        attributes=s.get("attributes") or {},
        error=_error(s),
        provider=s["provider"],
        model=s["model"],
        attempt=s["attempt"],
        retry_of=s["retry_of"],
        fallback_from=s["fallback_from"],
        usage=Usage(**{k: s[k] or 0 for k in TOKEN_FIELDS}) if s["input_tokens"] is not None else None,
        cost_nanos=s["cost_nanos"],
        cost_source=s["cost_source"],
        reported_cost_nanos=s["reported_cost_nanos"],
        computed_cost_nanos=s["computed_cost_nanos"],
        rollup=rollup,
    )


PAYLOADS = ("input", "output", "attributes")  # a span's own data, beside the tree's structure


def get_run(conn: Connection, project_id: int, run_id: str, *, payloads: bool = True) -> RunDetail:
    """The run and its span tree; ``payloads=False`` leaves each span's input, output and attributes
    unread (``None``, ``{}``): a 2,000-span run's tree without its payloads (see get_span)."""
    row = (
        conn.execute(select(runs).where(runs.c.project_id == project_id, runs.c.run_id == run_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"run {run_id} not found (or not yet projected)", run_id=run_id)
    columns = spans.c if payloads else [c for c in spans.c if c.name not in PAYLOADS]
    span_rows = (
        conn.execute(select(*columns).where(spans.c.project_id == project_id, spans.c.run_id == run_id))
        .mappings()
        .all()
    )
    rolled_up = rollups([dict(s) for s in span_rows])
    nodes = {s["span_id"]: span_node(s, rollup=s["span_id"] in rolled_up) for s in span_rows}
    order = {s["span_id"]: (s["started_at"] or s["ended_at"] or 0, s["first_seq"]) for s in span_rows}
    parents = _acyclic_parents({sid: n.parent_span_id for sid, n in nodes.items()}, order)
    roots = []
    for sid in sorted(nodes, key=order.__getitem__):
        node = nodes[sid]
        parent = nodes.get(parents[sid] or "")
        if parent is None:
            node.orphan = node.parent_span_id is not None  # its parent never arrived (or names a cycle)
            roots.append(node)
        else:
            parent.children.append(node)
    score_rows = conn.execute(
        select(scores)
        .where(scores.c.project_id == project_id, scores.c.run_id == run_id)
        .order_by(scores.c.ts)
    ).mappings()
    return RunDetail(
        summary=run_summary(row),
        inputs=row["inputs"],
        output=row["output"],
        metadata=row["metadata"] or {},
        spans=roots,
        scores=[
            Score(
                name=s["name"],
                value=s["value"],
                label=s["label"],
                comment=s["comment"],
                span_id=s["span_id"],
                source=s["source"],
                evaluator=s["evaluator"],
                ts_ns=s["ts"],
                evaluator_version=s["evaluator_version"],
                kind=s["kind"],
                normalised=s["normalised"],
                author=s["author"],
            )
            for s in score_rows
        ],
    )


@dataclass(frozen=True, slots=True)
class SpanPayload:
    span_id: str
    input: Any
    output: Any
    attributes: dict[str, Any]


def get_span(conn: Connection, project_id: int, run_id: str, span_id: str) -> SpanPayload:
    """One span's input, output and attributes (what get_run(payloads=False) leaves out)."""
    row = (
        conn.execute(
            select(spans.c.span_id, *(spans.c[c] for c in PAYLOADS)).where(
                spans.c.project_id == project_id, spans.c.run_id == run_id, spans.c.span_id == span_id
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"span {span_id} of run {run_id} not found (or not yet projected)", span_id=span_id)
    return SpanPayload(row["span_id"], row["input"], row["output"], row["attributes"] or {})


def _acyclic_parents(parent_of: dict[str, str | None], order: dict[str, Any]) -> dict[str, str | None]:
    """Parents as sent, except that a chain of parents that loops (spans naming each other) is cut
    at its earliest span, so every span is shown once."""
    parents = {sid: (p if p in parent_of else None) for sid, p in parent_of.items()}
    done: set[str] = set()
    for start in sorted(parents, key=order.__getitem__):
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in on_path:  # a cycle: cut it at its earliest member
                cycle = path[path.index(node) :]
                parents[min(cycle, key=order.__getitem__)] = None
                break
            path.append(node)
            on_path.add(node)
            node = parents[node]
        done.update(path)
    return parents


def parse_day(value: str, parameter: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{parameter} {value!r} is not a date (YYYY-MM-DD)", parameter=parameter) from None


def daily_costs(
    conn: Connection,
    project_id: int,
    timezone: str,
    *,
    since: str | None,
    until: str | None,
    group_by: tuple[str, ...],
) -> DailyCosts:
    for g in group_by:
        if g not in GROUPS:
            raise InvalidQuery(f"group_by {g!r} is not one of {', '.join(GROUPS)}", parameter="group_by")
    today = datetime.now(ZoneInfo(timezone)).date()
    end = parse_day(until, "until") if until else today
    try:
        start = parse_day(since, "since") if since else end - timedelta(days=29)
    except OverflowError:
        raise InvalidQuery(
            f"until {end} leaves no room for the default 30-day range", parameter="until"
        ) from None
    if start > end:
        raise InvalidQuery(f"since {start} is after until {end}", parameter="since")
    keys = [cost_daily.c.day, *(cost_daily.c[g] for g in group_by)]
    sums = [func.sum(cost_daily.c[c]).label(c) for c in COST_FIELDS]
    q = (
        select(*keys, *sums)
        .where(
            cost_daily.c.project_id == project_id,
            cost_daily.c.day >= start.isoformat(),
            cost_daily.c.day <= end.isoformat(),
        )
        .group_by(*keys)
        .order_by(*keys)
    )
    found = outcomes(conn, project_id, timezone, start=start, end=end, group_by=group_by)
    days = []
    for r in conn.execute(q).mappings():
        day = date.fromisoformat(r["day"])
        group = {g: r[g] or None for g in group_by}
        o = found.pop((day, tuple(group.values())), None) or Outcome()
        days.append(
            CostRow(
                day=day,
                group=group,
                calls=int(r["calls"]),
                usage=Usage(**{k: int(r[k]) for k in TOKEN_FIELDS}),
                cost_nanos=int(r["cost_nanos"]),
                unpriced_calls=int(r["unpriced_calls"]),
                succeeded_runs=o.succeeded_runs,
                refused_calls=o.refused_calls,
            )
        )
    # days and groups with successes or refusals but no spend
    days += [
        CostRow(
            day=day,
            group=dict(zip(group_by, key, strict=True)),
            calls=0,
            usage=Usage(),
            cost_nanos=0,
            unpriced_calls=0,
            succeeded_runs=o.succeeded_runs,
            refused_calls=o.refused_calls,
        )
        for (day, key), o in found.items()
    ]
    days.sort(key=lambda d: (d.day, *("" if v is None else v for v in d.group.values())))
    return DailyCosts(
        since=start,
        until=end,
        timezone=timezone,
        group_by=group_by,
        days=days,
        calls=sum(d.calls for d in days),
        cost_nanos=sum(d.cost_nanos for d in days),
        unpriced_calls=sum(d.unpriced_calls for d in days),
        succeeded_runs=sum(d.succeeded_runs for d in days),
        refused_calls=sum(d.refused_calls for d in days),
    )
