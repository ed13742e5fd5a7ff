"""The overview's read model: what is waiting for a person, what is failing, what is burning money,
what got worse — each card computed on its own (``cards``), so one that cannot be computed does not
take the others down.

Times are epoch nanoseconds, money nano-dollars. The rules (stated in docs/dashboard.md):

- **Cost spike**: an (agent, model)'s spend in one UTC hour of the last ``SPIKE_DAYS`` days against
  its baseline, the median of its spend in the same hour of the ``BASELINE_DAYS`` days before (an
  hour without calls counts as 0). The hour is a spike when its spend is above ``SPIKE_FACTOR`` x
  the baseline *and* at least ``SPIKE_MIN_NANOS`` above it (so a quiet series does not flag cents).
- **Projection** to the end of a budget's day: what it has settled so far, plus the spend rate of
  the last ``PROJECTION_HOURS`` hours (the hourly rollup) times the hours left in its day.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, literal_column, select

from controlroom.approvals import requests as ap
from controlroom.budget import ledger
from controlroom.budget.days import day_bounds_ns, local_day
from controlroom.evals import monitor
from controlroom.events import RUN_STATUSES
from controlroom.store.tables import approvals, cost_hourly, runs, runs_hourly, spans

logger = logging.getLogger(__name__)

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS

NEAR_EXPIRY_NS = 15 * 60 * 10**9  # a pending request expiring within 15 minutes is "near expiry"
APPROVALS_INLINE = 5  # the oldest pending requests shown on the card
FAILED = ("failed", "abandoned")
SIGNATURES = 5
RECENT_FAILURES = 5
SPIKE_DAYS = 7  # spikes are looked for in the hours of the last 7 days
BASELINE_DAYS = 7  # against the same hour of day on the 7 days before each
SPIKE_FACTOR = 3.0  # above 3x the baseline ...
SPIKE_MIN_NANOS = 1_500_000_000  # ... and at least $1.50 above it
MAX_SPIKES = 20
PROJECTION_HOURS = 3
TOP_RUNS = 5
REGRESSIONS = 10
WINDOWS = {"24h": 24, "7d": 24 * 7}  # the series' windows, in hours


class CardFailed(Exception):
    """A card could not be computed (the others are answered all the same)."""


@dataclass(frozen=True, slots=True)
class ApprovalsCard:
    pending: int
    oldest_requested_at: int | None
    near_expiry: int
    oldest: list[ap.Approval]


@dataclass(frozen=True, slots=True)
class Signature:
    error_type: str | None
    span_name: str | None
    count: int
    last_seen: int


@dataclass(frozen=True, slots=True)
class FailedRun:
    run_id: str
    agent: str | None
    status: str
    started_at: int | None
    error_type: str | None
    error_message: str | None
    failing_span_id: str | None
    failing_span_name: str | None


@dataclass(frozen=True, slots=True)
class FailuresCard:
    since: int  # the last 24 h: [since, now)
    previous_since: int  # the 24 h before: [previous_since, since)
    failed: int  # failed + abandoned runs started in the last 24 h
    abandoned: int
    previous_failed: int
    previous_abandoned: int
    runs: int  # every run started in the last 24 h
    previous_runs: int
    signatures: list[Signature]
    recent: list[FailedRun]

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.runs if self.runs else None


@dataclass(frozen=True, slots=True)
class CapFigures:
    status: ledger.BudgetStatus
    projected_nanos: int  # settled + recent rate x hours left in the budget's day


@dataclass(frozen=True, slots=True)
class Spike:
    agent: str
    model: str
    hour: int  # start of the UTC hour, epoch ns
    cost_nanos: int
    baseline_nanos: int  # median of the same hour on the BASELINE_DAYS days before


@dataclass(frozen=True, slots=True)
class TopRun:
    run_id: str
    agent: str | None
    status: str
    started_at: int | None
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class CostCard:
    day: str  # today, in the project's timezone
    day_start: int
    timezone: str
    spent_nanos: int  # model calls started today (hourly rollup, whole hours since local midnight)
    rate_nanos_per_hour: int  # the last PROJECTION_HOURS hours' rate
    projected_nanos: int  # spent + rate x hours left today
    caps: list[CapFigures]
    spikes: list[Spike]
    top_runs: list[TopRun]


@dataclass(frozen=True, slots=True)
class HourBucket:
    hour: int  # start, epoch ns
    runs: dict[str, int]  # status -> runs started in the hour
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class SeriesCard:
    window: str
    hours: list[HourBucket]
    cap_nanos: int | None  # the project-wide daily cap, if any


def _hour(ns: int) -> int:
    return ns // HOUR_NS


# -- approvals ----------------------------------------------------------------------------------


def approvals_card(conn: Connection, project_id: int, now: int) -> ApprovalsCard:
    pending = and_(approvals.c.project_id == project_id, approvals.c.status == "pending")
    count, oldest, near = conn.execute(
        select(
            func.count(),
            func.min(approvals.c.requested_at),
            func.count(approvals.c.expires_at).filter(
                approvals.c.expires_at >= now, approvals.c.expires_at < now + NEAR_EXPIRY_NS
            ),  # past its expiry already: the sweeper's, not a person's (it can no longer be decided)
        ).where(pending)
    ).one()
    queue = ap.queue(conn, project_id=project_id, status="pending", limit=APPROVALS_INLINE) if count else []
    return ApprovalsCard(pending=count, oldest_requested_at=oldest, near_expiry=near, oldest=queue)


# -- failures -----------------------------------------------------------------------------------


def failures_card(conn: Connection, project_id: int, now: int) -> FailuresCard:
    since, previous = now - DAY_NS, now - 2 * DAY_NS
    in_48h = and_(runs.c.project_id == project_id, runs.c.started_at >= previous, runs.c.started_at < now)
    recent = runs.c.started_at >= since
    counts: dict[tuple[str, bool], int] = {}
    for status, last, total in conn.execute(  # one range per status of ix_runs_status
        select(runs.c.status, func.count().filter(recent), func.count())
        .where(in_48h, runs.c.status.in_(RUN_STATUSES))
        .group_by(runs.c.status)
    ):
        counts[(status, True)] = last
        counts[(status, False)] = total - last

    def n(statuses: tuple[str, ...], last: bool) -> int:
        return sum(v for (s, w), v in counts.items() if s in statuses and w == last)

    span_name = spans.c.name
    joined = runs.outerjoin(
        spans,
        and_(
            spans.c.project_id == runs.c.project_id,
            spans.c.run_id == runs.c.run_id,
            spans.c.span_id == runs.c.failing_span_id,
        ),
    )
    failed_24h = and_(
        runs.c.project_id == project_id, runs.c.status.in_(FAILED), recent, runs.c.started_at < now
    )
    sigs = [
        Signature(error_type=t, span_name=s, count=c, last_seen=last)
        for t, s, c, last in conn.execute(
            select(runs.c.error_type, span_name, func.count().label("n"), func.max(runs.c.started_at))
            .select_from(joined)
            .where(failed_24h)
            .group_by(runs.c.error_type, span_name)
            .order_by(func.count().desc(), func.max(runs.c.started_at).desc())
            .limit(SIGNATURES)
        )
    ]
    latest = [
        FailedRun(
            run_id=r.run_id,
            agent=r.agent,
            status=r.status,
            started_at=r.started_at,
            error_type=r.error_type,
            error_message=r.error_message,
            failing_span_id=r.failing_span_id,
            failing_span_name=r.name,
        )
        for r in conn.execute(
            select(
                runs.c.run_id,
                runs.c.agent,
                runs.c.status,
                runs.c.started_at,
                runs.c.error_type,
                runs.c.error_message,
                runs.c.failing_span_id,
                span_name,
            )
            .select_from(joined)
            .where(failed_24h)
            .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            .limit(RECENT_FAILURES)
        )
    ]
    return FailuresCard(
        since=since,
        previous_since=previous,
        failed=n(FAILED, True),
        abandoned=n(("abandoned",), True),
        previous_failed=n(FAILED, False),
        previous_abandoned=n(("abandoned",), False),
        runs=sum(v for (_, w), v in counts.items() if w),
        previous_runs=sum(v for (_, w), v in counts.items() if not w),
        signatures=sigs,
        recent=latest,
    )


# -- cost ---------------------------------------------------------------------------------------


def find_spikes(
    hourly: dict[tuple[str, str], dict[int, int]], first_hour: int, last_hour: int
) -> list[Spike]:
    """The spikes among ``hourly`` ((agent, model) -> {UTC hour number: cost}) in the hours
    [first_hour, last_hour], by the module's rule; the biggest excess first."""
    found: list[Spike] = []
    for (agent, model), by_hour in hourly.items():
        for h in range(first_hour, last_hour + 1):
            cost = by_hour.get(h, 0)
            if cost < SPIKE_MIN_NANOS:
                continue
            baseline = int(statistics.median(by_hour.get(h - 24 * d, 0) for d in range(1, BASELINE_DAYS + 1)))
            if cost > SPIKE_FACTOR * baseline and cost - baseline >= SPIKE_MIN_NANOS:
                found.append(Spike(agent, model, h * HOUR_NS, cost, baseline))
    found.sort(key=lambda s: (-(s.cost_nanos - s.baseline_nanos), -s.hour))
    return found[:MAX_SPIKES]


def hourly_costs(
    conn: Connection, project_id: int, first_hour: int, last_hour: int
) -> dict[tuple[str, str], dict[int, int]]:
    out: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for agent, model, hour, cost in conn.execute(
        select(cost_hourly.c.agent, cost_hourly.c.model, cost_hourly.c.hour, cost_hourly.c.cost_nanos).where(
            cost_hourly.c.project_id == project_id,
            cost_hourly.c.hour >= first_hour,
            cost_hourly.c.hour <= last_hour,
        )
    ):
        out[(agent, model)][hour] = cost
    return out


def _spend(hourly: dict[tuple[str, str], dict[int, int]], first_hour: int, agent: str | None = None) -> int:
    """What the calls of hours >= first_hour cost (of one agent, or all)."""
    return sum(
        c
        for (a, _), by_hour in hourly.items()
        if agent in (None, a)
        for h, c in by_hour.items()
        if h >= first_hour
    )


def cost_card(conn: Connection, project_id: int, timezone: str, now: int) -> CostCard:
    now_hour = _hour(now)
    hourly = hourly_costs(conn, project_id, now_hour - 24 * (SPIKE_DAYS + BASELINE_DAYS), now_hour)
    rate_from = now_hour - PROJECTION_HOURS + 1
    rate_span_ns = now - rate_from * HOUR_NS  # the whole hours before this one, and this one so far

    def rate(agent: str | None) -> int:
        return _spend(hourly, rate_from, agent) * HOUR_NS // max(rate_span_ns, 1)

    def projected(spent: int, agent: str | None, day_end: int) -> int:
        return spent + rate(agent) * max(day_end - now, 0) // HOUR_NS

    day = local_day(now, timezone)
    day_start, day_end = day_bounds_ns(day, timezone)
    spent = _spend(hourly, -(-day_start // HOUR_NS))  # hours starting at or after local midnight
    caps = []
    for b in ledger.list_budgets(conn, project_id=project_id):
        st = ledger.status(conn, b, now)
        end = day_bounds_ns(st.day, st.timezone)[1]
        caps.append(CapFigures(st, projected(st.settled_nanos, b.agent or None, end)))
    spikes = find_spikes(hourly, now_hour - 24 * SPIKE_DAYS + 1, now_hour)
    top = [
        TopRun(r.run_id, r.agent, r.status, r.started_at, r.cost_nanos)
        for r in conn.execute(
            select(runs.c.run_id, runs.c.agent, runs.c.status, runs.c.started_at, runs.c.cost_nanos)
            # from today's runs (ix_runs_list's range), sorted: walking ix_runs_cost from the dearest
            # down would read most runs of the project early in a day ("+ 0": not that index)
            .where(
                runs.c.project_id == project_id,
                runs.c.started_at >= day_start,
                runs.c.cost_nanos + literal_column("0") > literal_column("0"),
            )
            .order_by((runs.c.cost_nanos + literal_column("0")).desc(), runs.c.run_id)
            .limit(TOP_RUNS)
        )
    ]
    return CostCard(
        day=day.isoformat(),
        day_start=day_start,
        timezone=timezone,
        spent_nanos=spent,
        rate_nanos_per_hour=rate(None),
        projected_nanos=projected(spent, None, day_end),
        caps=caps,
        spikes=spikes,
        top_runs=top,
    )


# -- quality ------------------------------------------------------------------------------------


def quality_card(conn: Connection, project_id: int) -> list[monitor.Regression]:
    return monitor.list_regressions(conn, project_id=project_id, state="open", limit=REGRESSIONS)


# -- series -------------------------------------------------------------------------------------


def series_card(conn: Connection, project_id: int, window: str, now: int) -> SeriesCard:
    hours = WINDOWS[window]
    last = _hour(now)
    first = last - hours + 1
    buckets = {h: HourBucket(h * HOUR_NS, {}, 0) for h in range(first, last + 1)}
    for hour, status, count in conn.execute(
        select(runs_hourly.c.hour, runs_hourly.c.status, runs_hourly.c.runs).where(
            runs_hourly.c.project_id == project_id,
            runs_hourly.c.hour >= first,
            runs_hourly.c.hour <= last,
        )
    ):
        buckets[hour].runs[status] = count
    for hour, cost in conn.execute(
        select(cost_hourly.c.hour, func.sum(cost_hourly.c.cost_nanos))
        .where(
            cost_hourly.c.project_id == project_id,
            cost_hourly.c.hour >= first,
            cost_hourly.c.hour <= last,
        )
        .group_by(cost_hourly.c.hour)
    ):
        b = buckets.get(int(hour))
        if b is not None:
            buckets[b.hour // HOUR_NS] = HourBucket(b.hour, b.runs, int(cost))
    cap = ledger.get_budget(conn, project_id=project_id, agent="")
    return SeriesCard(window, list(buckets.values()), cap.cap_nanos if cap else None)


# -- all of it ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    now: int
    cards: dict[str, Any]  # card name -> its dataclass (or list), or the CardFailed it raised


def overview(
    conn: Connection, *, project_id: int, timezone: str, window: str = "24h", now: int | None = None
) -> Overview:
    """Every card, each on its own: a card whose query fails is answered as its error (in a
    savepoint on PostgreSQL, so the transaction goes on for the next card)."""
    at = now or time.time_ns()
    makers: dict[str, Callable[[], Any]] = {
        "approvals": lambda: approvals_card(conn, project_id, at),
        "failures": lambda: failures_card(conn, project_id, at),
        "cost": lambda: cost_card(conn, project_id, timezone, at),
        "quality": lambda: quality_card(conn, project_id),
        "series": lambda: series_card(conn, project_id, window, at),
    }
    cards: dict[str, Any] = {}
    nested = conn.dialect.name == "postgresql"
    for name, make in makers.items():
        try:
            if nested:
                with conn.begin_nested():
                    cards[name] = make()
            else:
                cards[name] = make()
        except Exception as e:  # one card's failure is that card's answer, and logged
            logger.exception("overview card %s failed", name)
            cards[name] = CardFailed(f"{type(e).__name__}: {e}")
    return Overview(at, cards)
