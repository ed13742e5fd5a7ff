"""The app factory: one ASGI app serving ingest, the read API, and the dashboard (static files)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from controlroom import __version__
from controlroom.approvals.waiting import Waiters
from controlroom.config import Settings
from controlroom.cost.overrides import PricerCache
from controlroom.errors import ControlroomError, internal_error
from controlroom.server.dashboard import Dashboard
from controlroom.server.deps import KeyCache, no_nul_in_query
from controlroom.server.responses import JSONResponse, problem_response, request_problem
from controlroom.server.routers import admin, budget, evals, ingest, otlp, overview, people, runs, system
from controlroom.server.schemas import EventBatch, Problem
from controlroom.store.engine import Store
from controlroom.workers.runtime import standard_runtime

logger = logging.getLogger(__name__)
FAST_ROUTES = (budget.fast, people.fast)
ROUTERS = (
    ingest.router,
    otlp.router,
    runs.router,
    budget.router,
    budget.fast.document(),
    people.router,
    people.fast.document(),
    people.approvals,
    admin.router,
    evals.router,
    overview.router,
    system.router,
)
# Models the document refers to by name only: problem documents, and the event batch that ingest
# validates event by event (so that one bad event does not refuse the batch).
REFERENCED_MODELS = (Problem, EventBatch)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    run_worker: bool = True,
    dashboard: Path | None = None,
) -> FastAPI:
    """The controlroom app. With ``run_worker`` the worker runtime (projector, sweeper, hold expiry)
    runs in a thread of this process (`serve` runs it in a child process instead). ``dashboard``
    is the directory of the built dashboard (default: the package's own, when it was built)."""
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
            await app.state.approval_waiters.close()
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
    app.dashboard = Dashboard(dashboard)
    app.state.settings = settings
    app.state.store = store
    app.state.keys = KeyCache(store)
    app.state.approval_waiters = Waiters(store)
    app.state.pricers = PricerCache()
    app.state.schema_revision = None
    # ingest wakes an in-process runtime at once; a separate worker process polls
    app.state.notify_projector = worker.notify if worker is not None else lambda: None
    for r in ROUTERS:
        app.include_router(r, dependencies=[Depends(no_nul_in_query)])
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class _App(FastAPI):
    dashboard: Dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for routes in FAST_ROUTES:
            route = routes.match(scope)
            if route is not None:  # straight to the fast route, past every middleware
                scope["app"] = self
                await route(scope, receive, send)
                return
        if scope["type"] == "http" and await self.dashboard.serve(scope, receive, send):
            return  # a page or a file of the dashboard: never an API path
        await super().__call__(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlroomError)
    async def _controlroom(_: Request, exc: ControlroomError) -> JSONResponse:
        return problem_response(exc.problem(), headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request_problem(exc.errors()).problem())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path (Starlette names only one route's)
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path))
        return problem_response(
            {
                "type": f"https://controlroom.dev/problems/{code}",
                "title": str(exc.detail),
                "status": exc.status_code,
                "code": code,
                "detail": str(exc.detail),
            },
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return problem_response(internal_error())


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """The methods some route answers at ``path``, the routers the app includes (unprefixed)
    walked too: FastAPI lists an included router as one entry of ``app.routes``."""

    def routes(found: Iterable[Any]) -> Iterator[Route]:
        for r in found:
            if isinstance(r, Route):
                yield r
            inner = getattr(r, "original_router", None)
            if inner is not None:
                yield from routes(inner.routes)

    return sorted({m for r in routes(app.routes) if r.path_regex.match(path) for m in r.methods or ()})


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The document FastAPI generates from the routes' declarations, with the models referred to by
    name added, and without FastAPI's own 422 HTTPValidationError: this server answers request
    validation errors with the problem documents each route declares (400 invalid_query for
    parameters, 422 validation_failed for bodies)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in REFERENCED_MODELS:
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for path_item in doc["paths"].values():
        for op in path_item.values():
            if "HTTPValidationError" in str(op["responses"].get("422", "")):
                del op["responses"]["422"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    app.openapi_schema = doc
    return doc
