"""The budget ledger: reserve a call's worst-case cost before it is made, settle its actual cost
after. Admission is one conditional UPDATE per budget — ``settled + unguarded + held + hold <= cap``
— inside one transaction, so concurrent callers can never overshoot a cap, on SQLite (one writer)
and PostgreSQL (row locks, the condition re-checked on the locked row).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, delete, select, text

from controlroom.accounts.projects import Project, check_timezone
from controlroom.budget.days import day_bounds_ns, day_buckets, local_day
from controlroom.cost import Pricer
from controlroom.cost.overrides import PricerCache
from controlroom.errors import Conflict, ControlroomError, NotFound, ValidationFailed
from controlroom.events import format_ts
from controlroom.money import Usage, ceil_nanos, parse_usd, to_usd
from controlroom.store.engine import LedgerTx, Store
from controlroom.store.tables import budget_days, budgets

# No output-token limit is known for most models: a call that names no max_tokens is held at this.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
IN_FLIGHT_RETRY_SECONDS = 2  # Retry-After of a refusal that only the calls in flight cause
HOLD_SECONDS = 600.0  # a hold not settled by then is settled at the full hold (setting: hold_seconds)


class BudgetRefused(ControlroomError):
    status, code, title = 402, "daily_cost_cap_reached", "Daily cost cap reached"

    def headers(self) -> dict[str, str]:
        resets, reason = self.extra.get("resets_at"), self.extra.get("reason")
        if not resets or reason == "unpriced_model":  # waiting would not help
            return {}
        if reason == "held_by_in_flight_calls":  # room comes back as the calls in flight end
            return {"Retry-After": str(IN_FLIGHT_RETRY_SECONDS)}
        return {"Retry-After": str(retry_after_seconds(resets))}


@dataclass(frozen=True, slots=True)
class Budget:
    id: int
    project_id: int
    agent: str  # "" = the whole project
    cap_nanos: int
    timezone: str


usd = to_usd


def to_nanos(value: str | Decimal, name: str) -> int:
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
    cap = to_nanos(cap_usd, "cap_usd")
    now = time.time_ns()
    stmt = store.insert(budgets).values(
        project_id=project.id, agent=agent or "", cap_nanos=cap, timezone=tz, created_at=now, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["project_id", "agent"], set_={"cap_nanos": cap, "timezone": tz, "updated_at": now}
        )
    )
    found = get_budget(conn, project_id=project.id, agent=agent or "")
    assert found is not None
    return found


def get_budget(conn: Connection, *, project_id: int, agent: str) -> Budget | None:
    row = conn.execute(
        select(
            budgets.c.id, budgets.c.project_id, budgets.c.agent, budgets.c.cap_nanos, budgets.c.timezone
        ).where(budgets.c.project_id == project_id, budgets.c.agent == agent)
    ).first()
    return Budget(*row) if row else None


def delete_budget(conn: Connection, *, project_id: int, agent: str) -> None:
    existing = get_budget(conn, project_id=project_id, agent=agent)
    if existing is not None:  # SQLite may give a later budget the same id: it must start at zero
        conn.execute(delete(budget_days).where(budget_days.c.budget_id == existing.id))
    if (
        conn.execute(
            delete(budgets).where(budgets.c.project_id == project_id, budgets.c.agent == agent)
        ).rowcount
        == 0
    ):
        raise NotFound(f"no budget for {'agent ' + repr(agent) if agent else 'the project'}")


# A reservation id: the server's 32 hex digits, or one the client chose.
RESERVATION_ID = re.compile(r"^[A-Za-z0-9_-]{16,32}$")

# The hot path (a reservation and its settlement per paid call) runs these plain statements through
# Store.ledger(): building SQLAlchemy expressions per call would cost more than the database work.
_APPLICABLE = (
    "SELECT id, project_id, agent, cap_nanos, timezone FROM budgets"
    " WHERE project_id = :project_id AND agent IN ('', :agent) ORDER BY id"
)
_OPEN_DAY = (
    "INSERT INTO budget_days (budget_id, day, settled_nanos, held_nanos) VALUES (:budget_id, :day, 0, 0)"
    " ON CONFLICT DO NOTHING"
)
_UNGUARDED_SQL = (
    "(SELECT COALESCE(SUM(cost_nanos), 0) FROM unguarded_spend WHERE project_id = :project_id"
    " AND bucket >= :lo AND bucket < :hi{agent})"
)
_ADMIT = {
    scoped: "UPDATE budget_days SET held_nanos = held_nanos + :hold WHERE budget_id = :budget_id AND day = :day"
    " AND settled_nanos + held_nanos + :hold + "
    + _UNGUARDED_SQL.format(agent=" AND agent = :agent" if scoped else "")
    + " <= :cap"
    for scoped in (False, True)
}
_SETTLE_DAY = (
    "UPDATE budget_days SET held_nanos = held_nanos - :hold, settled_nanos = settled_nanos + :actual"
    " WHERE budget_id = :budget_id AND day = :day"
)
_RESERVATION = (
    "SELECT id, provider, model, hold_nanos, holds, state, actual_nanos FROM reservations"
    " WHERE id = :id AND project_id = :project_id"
)
_NEW_RESERVATION = {
    dialect: "INSERT INTO reservations (id, project_id, agent, run_id, span_id, provider, model, hold_nanos, holds,"
    " state, created_at, expires_at) VALUES (:id, :project_id, :agent, :run_id, :span_id, :provider, :model,"
    f" :hold, {holds}, 'held', :created_at, :expires_at) ON CONFLICT (id) DO NOTHING"
    for dialect, holds in (("sqlite", ":holds"), ("postgresql", "CAST(:holds AS JSONB)"))
}
_EXISTING = "SELECT project_id, hold_nanos, holds, expires_at FROM reservations WHERE id = :id"
_RELEASED_UNSEEN = {
    dialect: "INSERT INTO reservations (id, project_id, agent, provider, model, hold_nanos, holds, state,"
    f" actual_nanos, created_at, expires_at, settled_at) VALUES (:id, :project_id, '', NULL, '', 0, {empty},"
    " 'released', 0, :now, :now, :now) ON CONFLICT (id) DO NOTHING"
    for dialect, empty in (("sqlite", "'[]'"), ("postgresql", "CAST('[]' AS JSONB)"))
}
_PROJECT_BUDGETS = "SELECT id, agent, timezone FROM budgets WHERE project_id = :project_id"
_CORRECT_EXPIRED = (
    "UPDATE reservations SET state = :state, actual_nanos = :actual, settled_at = :now"
    " WHERE id = :id AND state = 'expired'"
)
_CLOSE_RESERVATION = (
    "UPDATE reservations SET state = :state, actual_nanos = :actual, settled_at = :now"
    " WHERE id = :id AND state = 'held'"
)


def applicable(tx: LedgerTx, project_id: int, agent: str) -> list[Budget]:
    """The project's budget and the agent's own, in id order (the order rows are locked in)."""
    return [Budget(**r) for r in tx.rows(_APPLICABLE, {"project_id": project_id, "agent": agent})]


_DAY_FIGURES = "SELECT settled_nanos, held_nanos FROM budget_days WHERE budget_id = :budget_id AND day = :day"
_UNGUARDED = {
    scoped: "SELECT " + _UNGUARDED_SQL.format(agent=" AND agent = :agent" if scoped else "") + " AS n"
    for scoped in (False, True)
}


def _rows(db: Connection | LedgerTx, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(db, LedgerTx):
        return db.rows(sql, params)
    return [dict(r) for r in db.execute(text(sql), params).mappings()]


def status(db: Connection | LedgerTx, b: Budget, now_ns: int | None = None) -> dict[str, Any]:
    """Today's figures for a budget: settled (incl. unguarded), held, remaining, reset time. Inside
    a ledger transaction (``LedgerTx``) too, so a refusal is explained without another connection."""
    now = now_ns or time.time_ns()
    day = local_day(now, b.timezone)
    found = _rows(db, _DAY_FIGURES, {"budget_id": b.id, "day": day.isoformat()})
    settled, held = (found[0]["settled_nanos"], found[0]["held_nanos"]) if found else (0, 0)
    lo, hi = day_buckets(day, b.timezone)
    params = {"project_id": b.project_id, "lo": lo, "hi": hi, "agent": b.agent}
    unguarded = int(_rows(db, _UNGUARDED[bool(b.agent)], params)[0]["n"])
    spent = settled + unguarded
    return {
        "agent": b.agent or None,
        "cap_usd": usd(b.cap_nanos),
        "timezone": b.timezone,
        "day": day.isoformat(),
        "settled_usd": usd(spent),
        "unguarded_usd": usd(unguarded),
        "held_usd": usd(held),
        "remaining_usd": usd(max(0, b.cap_nanos - spent - held)),
        "resets_at": resets_at(b, now),
    }


def resets_at(b: Budget, now_ns: int) -> str:
    _, end = day_bounds_ns(local_day(now_ns, b.timezone), b.timezone)
    return _utc_seconds(end)


def _utc_seconds(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


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
) -> dict[str, Any]:
    """Hold the call's worst-case cost against every applicable budget, or raise BudgetRefused.

    ``reservation_id`` (chosen by the client) makes the request idempotent: sent again — a retry
    after a lost answer — it holds nothing more and answers the first reservation.
    ``wait=False``: raise LedgerBusy, having done nothing, rather than wait for the write lock."""
    now = now_ns or time.time_ns()
    rid = reservation_id or os.urandom(16).hex()
    expires = now + int(hold_seconds * 1e9)
    with store.ledger(wait=wait) as tx:
        applying = applicable(tx, project.id, agent)
        if not applying:
            return {"reservation_id": None, "hold_usd": "0", "budgets": []}
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
                **status(tx, applying[0], now),
            )
        days = [local_day(now, b.timezone) for b in applying]
        holds = [[b.id, d.isoformat()] for b, d in zip(applying, days, strict=True)]
        # The reservation's row first: a request sent again (a retry after a lost answer) finds
        # it and is answered as the first one was, before anything is held again; on
        # PostgreSQL the insert waits for a concurrent request with the same id to finish.
        inserted = tx.run(
            _NEW_RESERVATION[store.dialect],
            {
                "id": rid,
                "project_id": project.id,
                "agent": agent,
                "run_id": run_id,
                "span_id": span_id,
                "provider": provider,
                "model": model,
                "hold": hold,
                "holds": orjson.dumps(holds).decode(),
                "created_at": now,
                "expires_at": expires,
            },
        )
        if inserted != 1:
            return _replayed(tx, project, rid)  # nothing was held by this request
        for b, local in zip(applying, days, strict=True):
            day = local.isoformat()
            lo, hi = day_buckets(local, b.timezone)
            tx.run(_OPEN_DAY, {"budget_id": b.id, "day": day})
            granted = tx.run(
                _ADMIT[bool(b.agent)],
                {
                    "hold": hold,
                    "budget_id": b.id,
                    "day": day,
                    "project_id": b.project_id,
                    "lo": lo,
                    "hi": hi,
                    "agent": b.agent,
                    "cap": b.cap_nanos,
                },
            )
            if granted != 1:  # figures read before the transaction rolls back (its row with it)
                raise _refusal(tx, b, hold, now)
    return {
        "reservation_id": rid,
        "hold_usd": usd(hold),
        "budgets": [
            {"agent": b.agent or None, "day": day, "resets_at": resets_at(b, now)}
            for b, (_, day) in zip(applying, holds, strict=True)
        ],
        "expires_at": format_ts(expires),
    }


def _replayed(tx: LedgerTx, project: Project, rid: str) -> dict[str, Any]:
    """The answer to a reservation's first request, for a retry of it."""
    (r,) = tx.rows(_EXISTING, {"id": rid})
    if r["project_id"] != project.id:
        raise Conflict(f"reservation id {rid!r} is already in use; choose another", field="reservation_id")
    if not _holds(r):  # released before it was ever held (see settle): it must not hold now
        raise Conflict(
            f"reservation {rid!r} was released before it was reserved; choose another id",
            field="reservation_id",
        )
    known = {b["id"]: b for b in tx.rows(_PROJECT_BUDGETS, {"project_id": project.id})}
    held = []
    for budget_id, day in _holds(r):
        b = known.get(budget_id)
        if b is not None:  # (a budget deleted since is left out)
            _, end = day_bounds_ns(date.fromisoformat(day), b["timezone"])
            held.append({"agent": b["agent"] or None, "day": day, "resets_at": _utc_seconds(end)})
    return {
        "reservation_id": rid,
        "hold_usd": usd(r["hold_nanos"]),
        "budgets": held,
        "expires_at": format_ts(r["expires_at"]),
    }


def _refusal(tx: LedgerTx, b: Budget, hold: int, now: int) -> BudgetRefused:
    st = status(tx, b, now)
    spent = to_nanos(st["settled_usd"], "settled")
    reason = "cap_reached" if spent + hold > b.cap_nanos else "held_by_in_flight_calls"
    scope = f"agent {b.agent!r}" if b.agent else "the project"
    return BudgetRefused(
        f"the daily cost cap of ${st['cap_usd']} for {scope} would be crossed: ${st['settled_usd']} spent, "
        f"${st['held_usd']} held by calls in flight, ${usd(hold)} requested; it resets at {st['resets_at']}",
        reason=reason,
        requested_usd=usd(hold),
        **st,
    )


OUTCOMES = ("completed", "failed_before_generation", "unknown")


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
) -> dict[str, Any]:
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
        found = tx.rows(_RESERVATION, {"id": reservation_id, "project_id": project.id})
        r = found[0] if found else None
        if r is None and outcome == "failed_before_generation":
            # Released before its reservation arrived (the client gave up waiting for the answer, and
            # the request is still on its way or queued): remember the id, so that the reservation,
            # if it does arrive, holds nothing.
            params = {"id": reservation_id, "project_id": project.id, "now": now}
            if tx.run(_RELEASED_UNSEEN[store.dialect], params) == 1:
                return {
                    "reservation_id": reservation_id,
                    "state": "released",
                    "actual_usd": "0",
                    "hold_usd": "0",
                }
            found = tx.rows(_RESERVATION, {"id": reservation_id, "project_id": project.id})
            r = found[0] if found else None
        if r is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        late = r["state"] == "expired" and outcome != "unknown"
        if r["state"] != "held" and not late:
            return _settled_view(r)
        if outcome == "failed_before_generation":
            actual, state = 0, "released"
        elif outcome == "unknown":
            actual, state = r["hold_nanos"], "settled"
        elif cost_usd is not None:
            actual, state = to_nanos(cost_usd, "cost_usd"), "settled"
        else:
            computed = pricers.get(tx, project.id).cost_nanos(
                provider=r["provider"], model=r["model"], usage=usage or Usage(), at_ns=now
            )
            actual, state = (r["hold_nanos"] if computed is None else computed), "settled"
        if late:  # the call outlasted its hold: what it cost replaces the full hold charged at expiry
            if tx.run(_CORRECT_EXPIRED, {"state": state, "actual": actual, "now": now, "id": r["id"]}) == 1:
                charged = r["actual_nanos"] or 0
                _move_to_settled(tx, {(b, d): [0, actual - charged] for b, d in _holds(r)})
        else:
            _apply_settlement(tx, r, actual, state, now)
        return {
            "reservation_id": reservation_id,
            "state": state,
            "actual_usd": usd(actual),
            "hold_usd": usd(r["hold_nanos"]),
        }


def _apply_settlement(tx: LedgerTx, r: Any, actual: int, state: str, now: int) -> None:
    _move_to_settled(tx, _close(tx, r, actual, state, now))


def _close(tx: LedgerTx, r: Any, actual: int, state: str, now: int) -> dict[tuple[int, str], list[int]]:
    """Mark a reservation settled; what it moves from held to settled, per (budget, day). Nothing
    if it was settled concurrently: the first settlement stands."""
    if tx.run(_CLOSE_RESERVATION, {"state": state, "actual": actual, "now": now, "id": r["id"]}) != 1:
        return {}
    return {(budget_id, day): [r["hold_nanos"], actual] for budget_id, day in _holds(r)}


def _holds(r: Any) -> list[list[Any]]:
    """A reservation's [[budget_id, day], ...] (JSON text on SQLite, parsed on PostgreSQL)."""
    holds = r["holds"]
    return list(orjson.loads(holds) if isinstance(holds, str | bytes) else holds)


def _move_to_settled(tx: LedgerTx, moves: dict[tuple[int, str], list[int]]) -> None:
    """Day rows in (budget id, day) order, the order reservations lock them in: no deadlock."""
    for (budget_id, day), (hold, actual) in sorted(moves.items()):
        tx.run(_SETTLE_DAY, {"hold": hold, "actual": actual, "budget_id": budget_id, "day": day})


def _settled_view(r: Any) -> dict[str, Any]:
    return {
        "reservation_id": r["id"],
        "state": r["state"],
        "actual_usd": usd(r["actual_nanos"] or 0),
        "hold_usd": usd(r["hold_nanos"]),
    }


_EXPIRED = (
    "SELECT id, hold_nanos, holds FROM reservations WHERE state = 'held' AND expires_at < :now"
    " ORDER BY expires_at LIMIT :limit"
)


def expire_holds(store: Store, *, now_ns: int | None = None, limit: int = 1000) -> int:
    """Settle, at their full hold, reservations whose process never settled them."""
    now = now_ns or time.time_ns()
    with store.ledger() as tx:
        rows = tx.rows(_EXPIRED, {"now": now, "limit": limit})
        moves: dict[tuple[int, str], list[int]] = {}
        for r in rows:
            for key, (hold, actual) in _close(tx, r, r["hold_nanos"], "expired", now).items():
                total = moves.setdefault(key, [0, 0])
                total[0] += hold
                total[1] += actual
        _move_to_settled(tx, moves)
    return len(rows)


def retry_after_seconds(resets_at_iso: str, now_ns: int | None = None) -> int:
    end = datetime.strptime(resets_at_iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC"))
    now = datetime.fromtimestamp((now_ns or time.time_ns()) / 1e9, ZoneInfo("UTC"))
    return max(1, int((end - now) / timedelta(seconds=1)))
