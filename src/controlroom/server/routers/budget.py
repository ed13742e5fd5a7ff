"""Daily cost caps (budgets) and the reservations on every paid call's path (fast routes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from controlroom.accounts.projects import Project
from controlroom.budget import ledger
from controlroom.budget.days import utc_seconds
from controlroom.events import format_ts
from controlroom.money import Usage, to_usd
from controlroom.server.auth import AdminProject, Permission, ReadProject
from controlroom.server.deps import QueryText, StoreDep, in_read
from controlroom.server.fastpath import FastRoutes
from controlroom.server.schemas import (
    BudgetIn,
    BudgetList,
    BudgetStatusOut,
    ReservationIn,
    ReservationOut,
    SettleIn,
    SettleOut,
    problems,
)

router = APIRouter(tags=["budget"])
fast = FastRoutes(max_body_bytes=65_536)


def status_out(st: ledger.BudgetStatus) -> BudgetStatusOut:
    return BudgetStatusOut(
        agent=st.agent,
        cap_usd=to_usd(st.cap_nanos),
        timezone=st.timezone,
        day=st.day.isoformat(),
        settled_usd=to_usd(st.settled_nanos),
        unguarded_usd=to_usd(st.unguarded_nanos),
        held_usd=to_usd(st.held_nanos),
        remaining_usd=to_usd(st.remaining_nanos),
        resets_at=utc_seconds(st.resets_at_ns),
    )


@router.put(
    "/v1/budgets",
    response_model=BudgetStatusOut,
    responses=problems(400, 401, 403, 422),
    summary="Set a daily cost cap",
)
async def put_budget(body: BudgetIn, project: AdminProject, store: StoreDep) -> BudgetStatusOut:
    """A cap for the project, or for one agent of it. Calls are refused before they are made once
    the day's settled spend (including spend seen only in traces) plus what calls in flight hold
    would cross it."""

    def write() -> ledger.BudgetStatus:
        with store.write() as conn:
            b = ledger.set_budget(
                store, conn, project=project, agent=body.agent, cap_usd=body.cap_usd, timezone=body.timezone
            )
            return ledger.status(conn, b)

    return status_out(await run_in_threadpool(write))


@router.get(
    "/v1/budgets",
    response_model=BudgetList,
    responses=problems(400, 401, 403),
    summary="Budgets with today's spend",
)
async def list_budgets(project: ReadProject, store: StoreDep) -> BudgetList:
    def read(conn: Any) -> list[ledger.BudgetStatus]:
        return [ledger.status(conn, b) for b in ledger.list_budgets(conn, project_id=project.id)]

    return BudgetList(budgets=[status_out(st) for st in await in_read(store, read)])


@router.delete(
    "/v1/budgets",
    status_code=204,
    responses=problems(400, 401, 403, 404, s404="not_found: no such cap"),
    summary="Remove a cap",
)
async def delete_budget(
    project: AdminProject,
    store: StoreDep,
    agent: Annotated[QueryText, Query(description="Omit for the project's cap")] = None,
) -> None:
    def write() -> None:
        with store.write() as conn:
            ledger.delete_budget(conn, project_id=project.id, agent=agent or "")

    await run_in_threadpool(write)


# The two calls on every paid call's path are fast routes (see server/fastpath.py). On SQLite the
# ledger transaction runs on the event loop when the write lock is free (tens of microseconds, no
# thread hop) and in a worker thread when it is not.


@fast.post(
    "/v1/budget/reservations",
    body=ReservationIn,
    response_model=ReservationOut,
    status_code=201,
    permission=Permission.RESERVE,
    responses=problems(
        400,
        401,
        402,
        403,
        409,
        413,
        415,
        422,
        503,
        s409="conflict: the reservation_id is another project's, or was released before it was reserved",
        s413="payload_too_large: the body is larger than 64 KiB",
        s503="service_unavailable: the budget ledger's database cannot be reached, or stayed locked",
    ),
    summary="Reserve a call's worst-case cost before making it",
    description="Holds `input_tokens` x the dearest input rate + `max_output_tokens` (default: 32768) x the "
    "output rate against every cap that applies; 402 if any would be crossed. With no cap, nothing is held "
    "(`reservation_id` is null).",
    tags=["budget"],
    operation_id="reserve",
)
def reserve(
    state: Any, project: Project, body: ReservationIn, _: dict[str, str], wait: bool
) -> dict[str, Any]:
    r = ledger.reserve(
        state.store,
        project=project,
        pricers=state.pricers,
        agent=body.agent,
        provider=body.provider,
        model=body.model,
        input_tokens=body.input_tokens,
        max_output_tokens=body.max_output_tokens,
        run_id=body.run_id,
        span_id=body.span_id,
        hold_seconds=state.settings.hold_seconds,
        wait=wait,
        reservation_id=body.reservation_id,
    )
    out: dict[str, Any] = {
        "reservation_id": r.reservation_id,
        "hold_usd": to_usd(r.hold_nanos),
        "budgets": [
            {"agent": b.agent, "day": b.day.isoformat(), "resets_at": utc_seconds(b.resets_at_ns)}
            for b in r.budgets
        ],
    }
    if r.expires_at_ns is not None:  # nothing held: no expires_at member
        out["expires_at"] = format_ts(r.expires_at_ns)
    return out  # a ReservationOut


@fast.post(
    "/v1/budget/reservations/{reservation_id}/settle",
    body=SettleIn,
    response_model=SettleOut,
    status_code=200,
    permission=Permission.RESERVE,
    responses=problems(
        400,
        401,
        403,
        404,
        413,
        415,
        422,
        503,
        s404="not_found: no such reservation",
        s413="payload_too_large: the body is larger than 64 KiB",
        s503="service_unavailable: the budget ledger's database cannot be reached, or stayed locked",
    ),
    summary="Settle a reservation with the call's actual cost (idempotent)",
    description="`completed`: the cost of `usage` (or the reported `cost_usd`); `failed_before_generation`: "
    "the hold is released; `unknown`: settled at the full hold. A second settle changes nothing.",
    tags=["budget"],
    path_params={"reservation_id": Path(description="The reservation's id")},
    operation_id="settle",
)
def settle(
    state: Any, project: Project, body: SettleIn, params: dict[str, str], wait: bool
) -> dict[str, Any]:
    s = ledger.settle(
        state.store,
        project=project,
        pricers=state.pricers,
        reservation_id=params["reservation_id"],
        outcome=body.outcome,
        usage=Usage(**body.usage.model_dump()) if body.usage else None,
        cost_usd=body.cost_usd,
        wait=wait,
    )
    return {  # a SettleOut
        "reservation_id": s.reservation_id,
        "state": s.state,
        "actual_usd": to_usd(s.actual_nanos),
        "hold_usd": to_usd(s.hold_nanos),
    }
