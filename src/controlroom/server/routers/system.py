from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from controlroom import __version__
from controlroom.cost import overrides as prices
from controlroom.projections.projector import Projector
from controlroom.server.auth import AdminProject, ReadProject, open_route
from controlroom.server.deps import StoreDep, in_read
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import Health, ModelPriceList, PriceIn, PriceList, PriceOut, problems
from controlroom.store.tables import projection_errors

router = APIRouter()


@router.get(
    "/v1/health",
    response_model=Health,
    responses=problems(400),
    tags=["system"],
    summary="Liveness, schema and projector lag",
    openapi_extra={"security": []},  # open: no API key
    dependencies=[open_route()],
)
async def health(request: Request, store: StoreDep) -> JSONResponse:
    """No API key needed. ``projector.lag_seconds`` is the age of the oldest event not yet folded
    into the read model (0 when caught up)."""

    def query() -> dict[str, Any]:
        with store.read() as conn:
            position, head, age_ns = Projector.lag(conn)
            set_aside = conn.execute(select(func.count()).select_from(projection_errors)).scalar_one()
        return {
            "status": "ok",
            "version": __version__,
            "database": store.dialect,
            "schema_revision": request.app.state.schema_revision,
            "projector": {
                "position": position,
                "head": head,
                "lag_events": max(0, head - position),
                "lag_seconds": age_ns / 1e9,
                "set_aside": set_aside,
            },
        }

    return JSONResponse(await run_in_threadpool(query))


@router.get(
    "/v1/prices",
    response_model=PriceList,
    responses=problems(400, 401, 403),
    tags=["cost"],
    summary="This project's price overrides",
)
async def list_prices(project: ReadProject, store: StoreDep) -> JSONResponse:
    return JSONResponse({"prices": await in_read(store, prices.list_prices, project=project)})


@router.get(
    "/v1/prices/models",
    response_model=ModelPriceList,
    responses=problems(400, 401, 403),
    tags=["cost"],
    summary="The models this project calls, with the prices that apply to them now",
)
async def model_prices(
    request: Request,
    project: ReadProject,
    store: StoreDep,
    days: Annotated[
        int, Query(ge=1, le=366, description="The period: this many days back, today included")
    ] = 30,
) -> ModelPriceList:
    """The models called in the period (at most 500), most called first, each with its price now
    in USD per million tokens (the highest tier where the price depends on the call) and its
    source: ``override`` (the project's own, see ``POST /v1/prices``), ``built_in`` (genai-prices)
    or ``unknown`` (no price: its calls are counted as unpriced)."""
    pricers = request.app.state.pricers

    def read(conn: Any) -> list[dict[str, Any]]:
        pricer = pricers.get(conn, project.id)
        return prices.models_in_use(conn, project=project, pricer=pricer, days=days, at_ns=time.time_ns())

    return ModelPriceList.model_validate({"models": await in_read(store, read)})


@router.post(
    "/v1/prices",
    response_model=PriceOut,
    status_code=201,
    tags=["cost"],
    responses=problems(400, 401, 403, 422),
    summary="Set a price override for a model",
)
async def set_price(price: PriceIn, project: AdminProject, store: StoreDep) -> JSONResponse:
    """Prices are USD per million tokens, as decimal strings. The override applies to calls at or
    after ``effective_from`` (default: always) and wins over the built-in price list. Calls already
    folded keep their cost until `controlroom rebuild`."""

    def write() -> dict[str, Any]:
        with store.write() as conn:
            return prices.set_price(conn, project=project, **price.model_dump())

    return JSONResponse(await run_in_threadpool(write), status_code=201)
