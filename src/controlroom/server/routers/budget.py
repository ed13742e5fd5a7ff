from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from controlroom.budget import ledger
from controlroom.cost import Usage
from controlroom.events import RunId, SpanId
from controlroom.server.deps import ProjectDep, StoreDep
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import Problem

router = APIRouter(tags=["budget"])
REFUSED: dict[int | str, dict[str, Any]] = {
    402: {
        "model": Problem,
        "description": "Refused: daily_cost_cap_reached (reason: cap_reached, "
        "held_by_in_flight_calls or unpriced_model), with a Retry-After header",
    },
    404: {"model": Problem},
    422: {"model": Problem},
}


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cap_usd: str = Field(description="Daily cap in USD, a decimal string")
    agent: str | None = Field(None, description="Only this agent's calls; omit for the whole project")
    timezone: str | None = Field(
        None, description="IANA timezone of the day boundary (default: the project's)"
    )


class BudgetStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str | None
    cap_usd: str
    timezone: str
    day: str
    settled_usd: str
    unguarded_usd: str
    held_usd: str
    remaining_usd: str
    resets_at: str


class BudgetList(BaseModel):
    budgets: list[BudgetStatus]


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str | None = None
    model: str = Field(min_length=1, max_length=256)
    agent: str = Field("", max_length=256)
    input_tokens: int = Field(ge=0, le=10**9, description="An upper bound of the prompt's tokens")
    max_output_tokens: int | None = Field(None, ge=1, le=10**7)
    run_id: RunId | None = None
    span_id: SpanId | None = None


class ReservationOut(BaseModel):
    reservation_id: str | None
    hold_usd: str
    budgets: list[BudgetStatus]
    expires_at: str | None = None


class UsageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_tokens: int = Field(0, ge=0, le=10**12)
    output_tokens: int = Field(0, ge=0, le=10**12)
    cache_read_tokens: int = Field(0, ge=0, le=10**12)
    cache_write_tokens: int = Field(0, ge=0, le=10**12)
    reasoning_tokens: int = Field(0, ge=0, le=10**12)


class SettleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(description="completed, failed_before_generation or unknown")
    usage: UsageIn | None = None
    cost_usd: str | None = None


class SettleOut(BaseModel):
    reservation_id: str
    state: str
    actual_usd: str
    hold_usd: str


@router.put("/v1/budgets", response_model=BudgetStatus, responses=REFUSED, summary="Set a daily cost cap")
async def put_budget(body: BudgetIn, project: ProjectDep, store: StoreDep) -> JSONResponse:
    """A cap for the project, or for one agent of it. Calls are refused before they are made once
    the day's settled spend (including spend seen only in traces) plus what calls in flight hold
    would cross it."""

    def write() -> dict[str, Any]:
        with store.write() as conn:
            b = ledger.set_budget(
                store, conn, project=project, agent=body.agent, cap_usd=body.cap_usd, timezone=body.timezone
            )
            return ledger.status(conn, b)

    return JSONResponse(await run_in_threadpool(write))


@router.get("/v1/budgets", response_model=BudgetList, summary="Budgets with today's spend")
async def list_budgets(project: ProjectDep, store: StoreDep) -> JSONResponse:
    def read() -> dict[str, Any]:
        with store.read() as conn:
            from controlroom.store.tables import budgets

            rows = conn.execute(
                budgets.select().where(budgets.c.project_id == project.id).order_by(budgets.c.id)
            ).mappings()
            items = [
                ledger.Budget(r["id"], r["project_id"], r["agent"], r["cap_nanos"], r["timezone"])
                for r in rows
            ]
            return {"budgets": [ledger.status(conn, b) for b in items]}

    return JSONResponse(await run_in_threadpool(read))


@router.delete("/v1/budgets", status_code=204, responses=REFUSED, summary="Remove a cap")
async def delete_budget(
    project: ProjectDep,
    store: StoreDep,
    agent: Annotated[str | None, Query(description="Omit for the project's cap")] = None,
) -> None:
    def write() -> None:
        with store.write() as conn:
            ledger.delete_budget(conn, project_id=project.id, agent=agent or "")

    await run_in_threadpool(write)


@router.post(
    "/v1/budget/reservations",
    status_code=201,
    response_model=ReservationOut,
    responses=REFUSED,
    summary="Reserve a call's worst-case cost before making it",
)
async def reserve(
    body: ReservationIn, request: Request, project: ProjectDep, store: StoreDep
) -> JSONResponse:
    """Holds ``input_tokens`` x the dearest input rate + ``max_output_tokens`` (default: 32768) x the
    output rate against every cap that applies; 402 if any would be crossed. With no cap, nothing
    is held (``reservation_id`` is null)."""

    def write() -> dict[str, Any]:
        return ledger.reserve(
            store,
            project=project,
            pricers=request.app.state.pricers,
            agent=body.agent,
            provider=body.provider,
            model=body.model,
            input_tokens=body.input_tokens,
            max_output_tokens=body.max_output_tokens,
            run_id=body.run_id,
            span_id=body.span_id,
        )

    return JSONResponse(await run_in_threadpool(write), status_code=201)


@router.post(
    "/v1/budget/reservations/{reservation_id}/settle",
    response_model=SettleOut,
    responses=REFUSED,
    summary="Settle a reservation with the call's actual cost (idempotent)",
)
async def settle(
    reservation_id: str, body: SettleIn, request: Request, project: ProjectDep, store: StoreDep
) -> JSONResponse:
    def write() -> dict[str, Any]:
        usage = Usage(**body.usage.model_dump()) if body.usage else None
        return ledger.settle(
            store,
            project=project,
            pricers=request.app.state.pricers,
            reservation_id=reservation_id,
            outcome=body.outcome,
            usage=usage,
            cost_usd=body.cost_usd,
        )

    return JSONResponse(await run_in_threadpool(write))
