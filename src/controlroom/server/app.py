"""The app factory: one ASGI app serving ingest, the read API, and (later) the dashboard."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from controlroom import __version__
from controlroom.config import Settings
from controlroom.cost.overrides import PricerCache
from controlroom.errors import ControlroomError, internal_error
from controlroom.server.deps import KeyCache, no_nul_in_query
from controlroom.server.responses import JSONResponse, request_problem
from controlroom.server.routers import budget, ingest, otlp, runs, system
from controlroom.server.schemas import EventBatch, Problem
from controlroom.store.engine import Store
from controlroom.workers.runtime import standard_runtime

logger = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem_response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(doc, status_code=doc["status"], media_type=PROBLEM_JSON, headers=headers)


def create_app(settings: Settings, *, store: Store | None = None, run_worker: bool = True) -> FastAPI:
    """The controlroom app. With ``run_worker`` the worker runtime (projector, sweeper, hold expiry)
    runs in a thread of this process (`serve` runs it in a child process instead)."""
    store = store or Store(settings.database_url)
    worker = (
        standard_runtime(
            store,
            batch=settings.projector_batch,
            abandon_after_seconds=settings.abandon_after_seconds,
            hold_seconds=settings.hold_seconds,
            public_url=settings.base_url,
        )
        if run_worker
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.migrate()
        app.state.schema_revision = store.current_revision()
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = _App(
        title="controlroom",
        version=__version__,
        description="The control layer for AI agents in production. Errors are RFC 9457 problem "
        "documents with a stable `code`. Authenticate with `Authorization: Bearer <project API key>`.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.keys = KeyCache(store)
    app.state.pricers = PricerCache()
    app.state.schema_revision = None
    # ingest wakes an in-process runtime at once; a separate worker process polls
    app.state.notify_projector = worker.notify if worker is not None else lambda: None
    app.router.routes[:0] = budget.fast_routes  # the cap's hot path, before FastAPI's routes
    for r in (ingest.router, otlp.router, runs.router, budget.router, system.router):
        app.include_router(r, dependencies=[Depends(no_nul_in_query)])
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class _App(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = budget.dispatch(scope)
        if endpoint is None:
            await super().__call__(scope, receive, send)
        else:  # the budget's hot path: straight to its endpoint, past every middleware
            scope["app"] = self
            await endpoint(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlroomError)
    async def _controlroom(_: Request, exc: ControlroomError) -> JSONResponse:
        return problem_response(exc.problem(), headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request_problem(exc.errors()).problem())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(
            {
                "type": f"https://controlroom.dev/problems/{code}",
                "title": str(exc.detail),
                "status": exc.status_code,
                "code": code,
                "detail": str(exc.detail),
            },
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return problem_response(internal_error())


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema = TypeAdapter(EventBatch).json_schema(ref_template="#/components/schemas/{model}")
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["EventBatch"] = schema
    doc["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{"apiKey": []}]
    # FastAPI documents its own 422 for parameter errors; this server answers them as problem
    # documents: 400 invalid_query for query/path parameters, 422 validation_failed for bodies.
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in doc["paths"].values():
        for op in path_item.values():
            responses = op.get("responses", {})
            if "422" in responses and "HTTPValidationError" in str(responses["422"]):
                has_body = "requestBody" in op
                del responses["422"]
                responses.setdefault(
                    "400", {"description": "Invalid query or path parameter", "content": problem}
                )
                if has_body:
                    responses["422"] = {"description": "The body does not fit the schema", "content": problem}
            if op.get("security") != [] and "/health" not in str(op.get("operationId", "")):
                responses.setdefault("401", {"description": "Missing or invalid API key", "content": problem})
    doc["paths"].update(budget.FAST_PATH_DOCS)
    for model in budget.FAST_PATH_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    app.openapi_schema = doc
    return doc
