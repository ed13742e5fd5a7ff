"""The budget ledger: reserve a call's worst-case cost before it is made, settle its actual cost
after. Admission is one conditional update per budget — ``settled + unguarded + held + hold <= cap``
— inside one transaction, so concurrent callers can never overshoot a cap, on SQLite (one writer)
and PostgreSQL (row locks, the condition re-checked on the locked row). The statements and the
ledger's connections are ``controlroom.store.ledger``'s; this module decides, in nano-dollars.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from controlroom.accounts.projects import Project, check_timezone
from controlroom.budget.days import day_bounds_ns, day_buckets, local_day, utc_seconds
from controlroom.cost import Pricer
from controlroom.cost.overrides import PricerCache
from controlroom.errors import Conflict, ControlroomError, NotFound, ValidationFailed
from controlroom.money import Usage, ceil_nanos, parse_usd, to_usd
from controlroom.store import ledger as db
from controlroom.store.engine import Store
from controlroom.store.ledger import LedgerTx

# No output-token limit is known for most models: a call that names no max_tokens is held at this.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
IN_FLIGHT_RETRY_SECONDS = 2  # Retry-After of a refusal that only the calls in flight cause
HOLD_SECONDS = 600.0  # a hold not settled by then is settled at the full hold (setting: hold_seconds)
# A reservation id: the server's 32 hex digits, or one the client chose.
RESERVATION_ID = re.compile(r"^[A-Za-z0-9_-]{16,32}$")
OUTCOMES = ("completed", "failed_before_generation", "unknown")


@dataclass(frozen=True, slots=True)
class Budget:
    id: int
    project_id: int
    agent: str  # "" = the whole project
    cap_nanos: int
    timezone: str


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget's figures for its current day, in nano-dollars."""

    agent: str | None  # None = the whole project
    cap_nanos: int
    timezone: str
    day: date
    settled_nanos: int  # including the unguarded spend
    unguarded_nanos: int  # spend seen only in traces (calls no reservation guarded)
    held_nanos: int  # held by calls in flight
    resets_at_ns: int  # the end of the day

    @property
    def remaining_nanos(self) -> int:
        return max(0, self.cap_nanos - self.settled_nanos - self.held_nanos)


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """One budget a reservation holds against, on its day."""

    agent: str | None
    day: date
    resets_at_ns: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted reservation; with no cap that applies, nothing is held and there is no id."""

    reservation_id: str | None
    hold_nanos: int
    budgets: tuple[BudgetHold, ...]
    expires_at_ns: int | None


@dataclass(frozen=True, slots=True)
class Settlement:
    reservation_id: str
    state: str  # settled, released or expired
    actual_nanos: int
    hold_nanos: int


class BudgetRefused(ControlroomError):
    """402: the call would cross a cap (or cannot be bounded). Its problem document carries the
    budget's figures (USD) and the ``reason``: cap_reached, held_by_in_flight_calls or
    unpriced_model."""

    status, code, title = 402, "daily_cost_cap_reached", "Daily cost cap reached"

    def __init__(self, detail: str, *, reason: str, status: BudgetStatus, **extra: Any) -> None:
        super().__init__(
            detail,
            reason=reason,
            **extra,
            agent=status.agent,
            cap_usd=to_usd(status.cap_nanos),
            timezone=status.timezone,
            day=status.day.isoformat(),
            settled_usd=to_usd(status.settled_nanos),
            unguarded_usd=to_usd(status.unguarded_nanos),
            held_usd=to_usd(status.held_nanos),
            remaining_usd=to_usd(status.remaining_nanos),
            resets_at=utc_seconds(status.resets_at_ns),
        )
        self.budget_status, self.reason = status, reason

    def headers(self) -> dict[str, str]:
        if self.reason == "unpriced_model":  # waiting would not help
            return {}
        if self.reason == "held_by_in_flight_calls":  # room comes back as the calls in flight end
            return {"Retry-After": str(IN_FLIGHT_RETRY_SECONDS)}
        return {"Retry-After": str(retry_after_seconds(self.budget_status.resets_at_ns))}


def _nanos(value: str, name: str) -> int:
    try:
        return parse_usd(value, name)
    except ValueError as e:
        raise ValidationFailed(str(e), field=name) from None


# -- budgets --------------------------------------------------------------------------------------
def set_budget(
    store: Store,
    conn: Connection,
    *,
    project: Project,
    agent: str | None,
    cap_usd: str,
    timezone: str | None = None,
) -> Budget:
    existing = get_budget(conn, project_id=project.id, agent=agent or "")
    # a cap changed without naming a timezone keeps the one it had
    tz = check_timezone(timezone or (existing.timezone if existing else project.timezone))
    cap = _nanos(cap_usd, "cap_usd")
    db.upsert_budget(conn, store.insert, project_id=project.id, agent=agent or "", cap_nanos=cap, timezone=tz)
    found = get_budget(conn, project_id=project.id, agent=agent or "")
    assert found is not None
    return found


def get_budget(conn: Connection, *, project_id: int, agent: str) -> Budget | None:
    found = db.budget_rows(conn, project_id=project_id, agent=agent)
    return Budget(**found[0]) if found else None


def list_budgets(conn: Connection, *, project_id: int) -> list[Budget]:
    """The project's budgets, in the order they were made."""
    return [Budget(**r) for r in db.budget_rows(conn, project_id=project_id)]


def delete_budget(conn: Connection, *, project_id: int, agent: str) -> None:
    if not db.delete_budget(conn, project_id=project_id, agent=agent):
        raise NotFound(f"no budget for {'agent ' + repr(agent) if agent else 'the project'}")


def status(conn: Connection | LedgerTx, b: Budget, now_ns: int | None = None) -> BudgetStatus:
    """Today's figures for a budget: settled (incl. unguarded), held, reset time. Inside a ledger
    transaction (``LedgerTx``) too, so a refusal is explained without another connection."""
    now = now_ns or time.time_ns()
    day = local_day(now, b.timezone)
    settled, held = db.day_figures(conn, budget_id=b.id, day=day.isoformat())
    unguarded = db.unguarded_nanos(
        conn, project_id=b.project_id, agent=b.agent, buckets=day_buckets(day, b.timezone)
    )
    return BudgetStatus(
        agent=b.agent or None,
        cap_nanos=b.cap_nanos,
        timezone=b.timezone,
        day=day,
        settled_nanos=settled + unguarded,
        unguarded_nanos=unguarded,
        held_nanos=held,
        resets_at_ns=day_bounds_ns(day, b.timezone)[1],
    )


def _hold_of(agent: str, timezone: str, day: date) -> BudgetHold:
    return BudgetHold(agent=agent or None, day=day, resets_at_ns=day_bounds_ns(day, timezone)[1])


# -- reserve / settle -----------------------------------------------------------------------------
def worst_case_nanos(
    pricer: Pricer,
    *,
    provider: str | None,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
    at_ns: int,
) -> int | None:
    """Input estimate x the dearest input rate (plain or cache write) + max output x output rate."""
    rates = pricer.rates(provider=provider, model=model, at_ns=at_ns)
    if rates is None:
        return None
    out_tokens = max_output_tokens or rates.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    cost = (
        Decimal(input_tokens) * max(rates.input, rates.cache_write)
        + Decimal(out_tokens) * rates.output
        + rates.per_request
    )
    return ceil_nanos(cost)


def reserve(
    store: Store,
    *,
    project: Project,
    pricers: PricerCache,
    agent: str,
    provider: str | None,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
    run_id: str | None = None,
    span_id: str | None = None,
    hold_seconds: float = HOLD_SECONDS,
    now_ns: int | None = None,
    wait: bool = True,
    reservation_id: str | None = None,
) -> Reservation:
    """Hold the call's worst-case cost against every applicable budget, or raise BudgetRefused.

    ``reservation_id`` (chosen by the client) makes the request idempotent: sent again — a retry
    after a lost answer — it holds nothing more and answers the first reservation.
    ``wait=False``: raise LedgerBusy, having done nothing, rather than wait for the write lock."""
    now = now_ns or time.time_ns()
    rid = reservation_id or os.urandom(16).hex()
    expires = now + int(hold_seconds * 1e9)
    with store.ledger(wait=wait) as tx:
        applying = [Budget(**r) for r in db.applicable_budgets(tx, project_id=project.id, agent=agent)]
        if not applying:
            return Reservation(reservation_id=None, hold_nanos=0, budgets=(), expires_at_ns=None)
        hold = worst_case_nanos(
            pricers.get(tx, project.id),
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            at_ns=now,
        )
        if hold is None:
            raise BudgetRefused(
                f"model {model!r} has no known price, so its cost cannot be bounded; set one with "
                f"`controlroom prices set --project {project.name} --model {model} --input USD --output USD`",
                reason="unpriced_model",
                model=model,
                provider=provider,
                status=status(tx, applying[0], now),
            )
        days = [local_day(now, b.timezone) for b in applying]
        # The reservation's row first: a request sent again (a retry after a lost answer) finds
        # it and is answered as the first one was, before anything is held again; on
        # PostgreSQL the insert waits for a concurrent request with the same id to finish.
        inserted = db.new_reservation(
            tx,
            reservation_id=rid,
            project_id=project.id,
            agent=agent,
            run_id=run_id,
            span_id=span_id,
            provider=provider,
            model=model,
            hold=hold,
            holds=[(b.id, d.isoformat()) for b, d in zip(applying, days, strict=True)],
            created_at=now,
            expires_at=expires,
        )
        if not inserted:
            return _replayed(tx, project, rid)  # nothing was held by this request
        for b, day in zip(applying, days, strict=True):
            granted = db.admit(
                tx,
                budget_id=b.id,
                day=day.isoformat(),
                hold=hold,
                cap=b.cap_nanos,
                project_id=b.project_id,
                agent=b.agent,
                buckets=day_buckets(day, b.timezone),
            )
            if not granted:  # figures read before the transaction rolls back (its row with it)
                raise _refusal(tx, b, hold, now)
    return Reservation(
        reservation_id=rid,
        hold_nanos=hold,
        budgets=tuple(_hold_of(b.agent, b.timezone, day) for b, day in zip(applying, days, strict=True)),
        expires_at_ns=expires,
    )


def _replayed(tx: LedgerTx, project: Project, rid: str) -> Reservation:
    """The answer to a reservation's first request, for a retry of it."""
    r = db.reservation(tx, rid)
    assert r is not None
    if r["project_id"] != project.id:
        raise Conflict(f"reservation id {rid!r} is already in use; choose another", field="reservation_id")
    if not r["holds"]:  # released before it was ever held (see settle): it must not hold now
        raise Conflict(
            f"reservation {rid!r} was released before it was reserved; choose another id",
            field="reservation_id",
        )
    known = {b.id: b for b in (Budget(**r) for r in db.project_budgets(tx, project_id=project.id))}
    held = tuple(
        _hold_of(known[budget_id].agent, known[budget_id].timezone, date.fromisoformat(day))
        for budget_id, day in r["holds"]
        if budget_id in known  # (a budget deleted since is left out)
    )
    return Reservation(
        reservation_id=rid, hold_nanos=r["hold_nanos"], budgets=held, expires_at_ns=r["expires_at"]
    )


def _refusal(tx: LedgerTx, b: Budget, hold: int, now: int) -> BudgetRefused:
    st = status(tx, b, now)
    reason = "cap_reached" if st.settled_nanos + hold > b.cap_nanos else "held_by_in_flight_calls"
    scope = f"agent {b.agent!r}" if b.agent else "the project"
    return BudgetRefused(
        f"the daily cost cap of ${to_usd(st.cap_nanos)} for {scope} would be crossed: "
        f"${to_usd(st.settled_nanos)} spent, ${to_usd(st.held_nanos)} held by calls in flight, "
        f"${to_usd(hold)} requested; it resets at {utc_seconds(st.resets_at_ns)}",
        reason=reason,
        requested_usd=to_usd(hold),
        status=st,
    )


def settle(
    store: Store,
    *,
    project: Project,
    pricers: PricerCache,
    reservation_id: str,
    outcome: str,
    usage: Usage | None = None,
    cost_usd: str | None = None,
    wait: bool = True,
) -> Settlement:
    """Replace the hold by the actual cost (idempotent: a second settle changes nothing).
    completed: the cost of ``usage`` priced as the projector prices it (or the reported ``cost_usd``);
    failed_before_generation: released (0); unknown (timeout, crash, cancelled stream): the full hold.
    ``wait=False``: as in reserve()."""
    if outcome not in OUTCOMES:
        raise ValidationFailed(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}", field="outcome")
    if not RESERVATION_ID.match(reservation_id):  # cannot exist (and never reaches the database)
        raise NotFound(f"no reservation {reservation_id!r}")
    now = time.time_ns()
    with store.ledger(wait=wait) as tx:
        r = _own_reservation(tx, project, reservation_id)
        if r is None and outcome == "failed_before_generation":
            # Released before its reservation arrived (the client gave up waiting for the answer, and
            # the request is still on its way or queued): remember the id, so that the reservation,
            # if it does arrive, holds nothing.
            if db.released_unseen(tx, reservation_id=reservation_id, project_id=project.id, now=now):
                return Settlement(reservation_id, "released", 0, 0)
            r = _own_reservation(tx, project, reservation_id)
        if r is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        late = r["state"] == "expired" and outcome != "unknown"
        if r["state"] != "held" and not late:
            return Settlement(reservation_id, r["state"], r["actual_nanos"] or 0, r["hold_nanos"])
        if outcome == "failed_before_generation":
            actual, state = 0, "released"
        elif outcome == "unknown":
            actual, state = r["hold_nanos"], "settled"
        elif cost_usd is not None:
            actual, state = _nanos(cost_usd, "cost_usd"), "settled"
        else:
            computed = pricers.get(tx, project.id).cost_nanos(
                provider=r["provider"], model=r["model"], usage=usage or Usage(), at_ns=now
            )
            actual, state = (r["hold_nanos"] if computed is None else computed), "settled"
        if late:  # the call outlasted its hold: what it cost replaces the full hold charged at expiry
            charged = r["actual_nanos"] or 0
            if db.close_reservation(
                tx, reservation_id=reservation_id, from_state="expired", state=state, actual=actual, now=now
            ):
                db.move_to_settled(tx, {key: (0, actual - charged) for key in r["holds"]})
        else:
            db.move_to_settled(tx, _close(tx, r, actual, state, now))
        return Settlement(reservation_id, state, actual, r["hold_nanos"])


def _own_reservation(tx: LedgerTx, project: Project, reservation_id: str) -> dict[str, Any] | None:
    r = db.reservation(tx, reservation_id)
    return r if r is not None and r["project_id"] == project.id else None


def _close(
    tx: LedgerTx, r: dict[str, Any], actual: int, state: str, now: int
) -> dict[tuple[int, str], tuple[int, int]]:
    """Mark a held reservation closed; what it moves from held to settled, per (budget, day).
    Nothing if it was closed concurrently: the first settlement stands."""
    if not db.close_reservation(
        tx, reservation_id=r["id"], from_state="held", state=state, actual=actual, now=now
    ):
        return {}
    return {key: (r["hold_nanos"], actual) for key in r["holds"]}


def expire_holds(store: Store, *, now_ns: int | None = None, limit: int = 1000) -> int:
    """Settle, at their full hold, reservations whose process never settled them."""
    now = now_ns or time.time_ns()
    with store.ledger() as tx:
        rows = db.expired_reservations(tx, now=now, limit=limit)
        moves: dict[tuple[int, str], tuple[int, int]] = {}
        for r in rows:
            for key, (hold, actual) in _close(tx, r, r["hold_nanos"], "expired", now).items():
                held, settled = moves.get(key, (0, 0))
                moves[key] = (held + hold, settled + actual)
        db.move_to_settled(tx, moves)
    return len(rows)


def retry_after_seconds(resets_at_ns: int, now_ns: int | None = None) -> int:
    return max(1, (resets_at_ns - (now_ns or time.time_ns())) // 10**9)
