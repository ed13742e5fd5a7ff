from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from controlroom.accounts.projects import Project
from controlroom.budget import ledger
from controlroom.cost import Usage
from controlroom.errors import (
    ControlroomError,
    PayloadTooLarge,
    internal_error,
)
from controlroom.events import RunId, SpanId
from controlroom.server.deps import ProjectDep, StoreDep, authorized_project
from controlroom.server.responses import JSONResponse, request_problem
from controlroom.server.schemas import Problem, Text
from controlroom.store.engine import LedgerBusy

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
    cap_usd: Text = Field(max_length=40, description="Daily cap in USD, a decimal string")
    agent: Text | None = Field(
        None, max_length=256, description="Only this agent's calls; omit for the whole project"
    )
    timezone: Text | None = Field(
        None, max_length=64, description="IANA timezone of the day boundary (default: the project's)"
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
    provider: Text | None = Field(None, max_length=256)
    model: Text = Field(min_length=1, max_length=256)
    agent: Text = Field("", max_length=256)
    input_tokens: int = Field(ge=0, le=10**9, description="An upper bound of the prompt's tokens")
    max_output_tokens: int | None = Field(None, ge=1, le=10**7)
    run_id: RunId | None = None
    span_id: SpanId | None = None
    reservation_id: str | None = Field(
        None,
        pattern=ledger.RESERVATION_ID.pattern,
        description="An id chosen by the client (16 to 32 letters, digits, '-' or '_'; e.g. 32 random hex "
        "digits): the request becomes idempotent — sent again, it holds nothing more and answers the first "
        "reservation. Omitted: the server chooses one.",
    )


class BudgetHold(BaseModel):
    agent: str | None
    day: str
    resets_at: str


class ReservationOut(BaseModel):
    reservation_id: str | None
    hold_usd: str
    budgets: list[BudgetHold]
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
    outcome: Text = Field(max_length=64, description="completed, failed_before_generation or unknown")
    usage: UsageIn | None = None
    cost_usd: Text | None = Field(None, max_length=40)


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


# The two calls on every paid call's path — reserve and settle — skip FastAPI's per-request machinery
# (middleware, dependency injection, response validation), which costs several times the ledger
# work itself. They are plain ASGI endpoints that the app dispatches to before anything else (see
# ``dispatch``), also registered as routes so that other methods get FastAPI's answers, and
# documented in the OpenAPI document from the same models (see FAST_PATH_DOCS). On SQLite the
# ledger transaction runs on the event loop when the write lock is free (tens of microseconds, no
# thread hop) and in a worker thread when it is not.

logger = logging.getLogger(__name__)
LedgerCall = Callable[[Any, Project, Any, dict[str, Any], bool], dict[str, Any]]


class _FastEndpoint:
    def __init__(self, body_model: type[BaseModel], call: LedgerCall, status: int) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(body_model)
        self.call = call
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        try:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            project = await authorized_project(header, scope["app"].state.keys)
            body = await _read(receive, 65_536)
            try:
                parsed = self.adapter.validate_json(body)
            except ValidationError as e:
                raise request_problem(e.errors(include_url=False)) from None
            state, params = scope["app"].state, scope["path_params"]
            try:
                result = self.call(state, project, parsed, params, False)
            except LedgerBusy:
                result = await anyio.to_thread.run_sync(self.call, state, project, parsed, params, True)
            status, payload = self.status, orjson.dumps(result)
        except ControlroomError as e:
            status, payload, headers = e.status, orjson.dumps(e.problem()), e.headers()
        except Exception:
            logger.exception("unhandled error in %s", scope["path"])
            status, payload = 500, orjson.dumps(internal_error())
        media = b"application/json" if status < 400 else b"application/problem+json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", media),
                    (b"content-length", str(len(payload)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _read(receive: Receive, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _reserve(
    state: Any, project: Project, body: ReservationIn, _: dict[str, Any], wait: bool
) -> dict[str, Any]:
    return ledger.reserve(
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


def _settle(
    state: Any, project: Project, body: SettleIn, params: dict[str, Any], wait: bool
) -> dict[str, Any]:
    usage = Usage(**body.usage.model_dump()) if body.usage else None
    return ledger.settle(
        state.store,
        project=project,
        pricers=state.pricers,
        reservation_id=params["reservation_id"],
        outcome=body.outcome,
        usage=usage,
        cost_usd=body.cost_usd,
        wait=wait,
    )


RESERVE_PATH = "/v1/budget/reservations"
SETTLE_PATH = "/v1/budget/reservations/{reservation_id}/settle"
_reserve_endpoint = _FastEndpoint(ReservationIn, _reserve, 201)
_settle_endpoint = _FastEndpoint(SettleIn, _settle, 200)
fast_routes = [
    Route(RESERVE_PATH, _reserve_endpoint, methods=["POST"]),
    Route(SETTLE_PATH, _settle_endpoint, methods=["POST"]),
]
_SETTLE_PREFIX, _SETTLE_SUFFIX = RESERVE_PATH + "/", "/settle"


def dispatch(scope: Scope) -> _FastEndpoint | None:
    """The fast endpoint for a request, with its path parameters set in ``scope``; None for every
    other request (FastAPI routes it)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == RESERVE_PATH:
        scope["path_params"] = {}
        return _reserve_endpoint
    if path.startswith(_SETTLE_PREFIX) and path.endswith(_SETTLE_SUFFIX):
        rid = path[len(_SETTLE_PREFIX) : -len(_SETTLE_SUFFIX)]
        if rid and "/" not in rid:
            scope["path_params"] = {"reservation_id": rid}
            return _settle_endpoint
    return None


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _op(
    summary: str,
    description: str,
    body: type[BaseModel],
    ok: int,
    out: type[BaseModel],
    params: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "tags": ["budget"],
        "summary": summary,
        "description": description,
        "parameters": params,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
        },
        "responses": {
            str(ok): {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{out.__name__}"}}},
            },
            "400": {"description": "The body is not JSON (invalid_json)", "content": _PROBLEM},
            "401": {"description": "Missing or invalid API key", "content": _PROBLEM},
            "402": {
                "description": "Refused: daily_cost_cap_reached (reason: cap_reached, held_by_in_flight_calls "
                "or unpriced_model), with a Retry-After header",
                "content": _PROBLEM,
            },
            "404": {"description": "No such reservation", "content": _PROBLEM},
            "409": {"description": "The reservation_id is another project's", "content": _PROBLEM},
            "413": {"description": "The body is larger than 64 KiB", "content": _PROBLEM},
            "422": {"description": "The body does not fit the schema", "content": _PROBLEM},
            "503": {"description": "The budget ledger's database cannot be reached", "content": _PROBLEM},
        },
    }


FAST_PATH_DOCS: dict[str, Any] = {
    RESERVE_PATH: {
        "post": _op(
            "Reserve a call's worst-case cost before making it",
            "Holds `input_tokens` x the dearest input rate + `max_output_tokens` (default: 32768) x the output "
            "rate against every cap that applies; 402 if any would be crossed. With no cap, nothing is held "
            "(`reservation_id` is null).",
            ReservationIn,
            201,
            ReservationOut,
            [],
        )
    },
    SETTLE_PATH: {
        "post": _op(
            "Settle a reservation with the call's actual cost (idempotent)",
            "`completed`: the cost of `usage` (or the reported `cost_usd`); `failed_before_generation`: the hold "
            "is released; `unknown`: settled at the full hold. A second settle changes nothing.",
            SettleIn,
            200,
            SettleOut,
            [{"name": "reservation_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
}
FAST_PATH_MODELS: tuple[type[BaseModel], ...] = (
    ReservationIn,
    ReservationOut,
    BudgetHold,
    SettleIn,
    SettleOut,
    UsageIn,
)
