"""Fast routes: raw ASGI endpoints for the calls on every paid call's path (a reservation and its
settlement), declared like routes.

FastAPI's per-request machinery (middleware, dependency injection, response validation) costs
several times the ledger work of these calls, so the app hands their requests straight to a
:class:`FastRoute` (see :meth:`FastRoutes.match`). A fast route shares everything a client can see
with every other route: the one body reader (``deps.read_body``: size limit, gzip / deflate), the
one JSON content-type rule (``deps.json_content_type``), the one authentication
(``deps.authorized_project``), the one problem renderer (``responses.problem_response``, which the
app's exception handlers use), and request validation rendered by ``responses.request_problem``.
It is documented by a FastAPI route with the same path, body, response model and ``responses``
(registered by :meth:`FastRoutes.document`), so the OpenAPI document is generated for it as for
any route — and requests with other methods get FastAPI's answers.

A handler is a plain function. It is first called on the event loop with ``wait=False``: one that
would have to wait for a lock raises :class:`~controlroom.store.ledger.LedgerBusy` having done
nothing, and is then called again in a worker thread with ``wait=True``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import Parameter, Signature
from typing import Annotated, Any, ClassVar

import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, Security
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from controlroom.accounts.projects import Project
from controlroom.errors import ControlroomError, internal_error
from controlroom.server.auth import Permission
from controlroom.server.deps import authorized_project, bearer, json_content_type, read_raw_body
from controlroom.server.responses import problem_response, request_problem
from controlroom.store.ledger import LedgerBusy

logger = logging.getLogger(__name__)

# (app state, the key's project, the validated body, path parameters, wait) -> the response model
# The answer is the response model's members as a plain dict: on the hot path, building and
# serialising a model costs more than the ledger's own work (the OpenAPI document still declares the
# model, and tests/server/test_openapi.py validates real answers against it).
Handler = Callable[[Any, Project, Any, dict[str, str], bool], dict[str, Any]]


@dataclass
class FastRoute:
    """A fast route needs an API key of any scope (``Permission.RESERVE``): people do not reserve."""

    permission: ClassVar[Permission] = Permission.RESERVE
    path: str
    body: type[BaseModel]
    handler: Handler
    status_code: int
    max_body_bytes: int
    regex: re.Pattern[str] = field(init=False)
    adapter: TypeAdapter[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = compile_path(self.path)[0]  # the same matching as FastAPI's routes
        self.adapter = TypeAdapter(self.body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            payload = await self._respond(scope, receive)
        except ControlroomError as e:
            await problem_response(e.problem(), headers=e.headers())(scope, receive, send)
            return
        except Exception:
            logger.exception("unhandled error in %s", scope["path"])
            await problem_response(internal_error())(scope, receive, send)
            return
        # the answer's bytes, sent as they are (a Response object costs more than the ledger's work)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _respond(self, scope: Scope, receive: Receive) -> bytes:
        headers = _headers(scope)
        project = await authorized_project(headers.get("authorization", ""), scope["app"].state.keys)
        json_content_type(headers.get("content-type"))
        raw = await read_raw_body(
            receive, headers.get("content-length"), headers.get("content-encoding"), self.max_body_bytes
        )
        try:
            body = self.adapter.validate_json(raw)
        except ValidationError as e:
            raise request_problem([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
        state, params = scope["app"].state, scope["path_params"]
        try:
            result = self.handler(state, project, body, params, False)
        except LedgerBusy:
            result = await anyio.to_thread.run_sync(self.handler, state, project, body, params, True)
        return orjson.dumps(result)


_WANTED = frozenset({b"authorization", b"content-type", b"content-length", b"content-encoding"})


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers a fast route reads (names are lower case in ASGI; the last one wins)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}


class FastRoutes:
    """A set of fast routes, POST only, each declared with :meth:`post`."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self.routes: list[FastRoute] = []
        self.max_body_bytes = max_body_bytes
        self._docs = APIRouter()

    def post(
        self,
        path: str,
        *,
        body: type[BaseModel],
        response_model: type[BaseModel],
        status_code: int,
        responses: dict[int | str, dict[str, Any]],
        summary: str,
        description: str,
        tags: list[str],
        path_params: dict[str, Any] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare ``handler`` as the fast route ``POST path`` and document it like a route with
        this body, response model, responses and (``path_params``: name -> ``fastapi.Path(...)``)
        path parameters."""

        def register(handler: Handler) -> Handler:
            self.routes.append(FastRoute(path, body, handler, status_code, self.max_body_bytes))
            self._docs.add_api_route(
                path,
                _documentation(body, path_params or {}),
                methods=["POST"],
                response_model=response_model,
                status_code=status_code,
                responses=responses,
                summary=summary,
                description=description,
                tags=list(tags),
                operation_id=handler.__name__.strip("_"),
                dependencies=[Security(bearer)],
            )
            return handler

        return register

    def match(self, scope: Scope) -> FastRoute | None:
        """The fast route of a request, with its path parameters set in ``scope``; None for every
        other request (FastAPI routes it)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        for route in self.routes:
            m = route.regex.match(scope["path"])
            if m is not None:
                scope["path_params"] = m.groupdict()
                return route
        return None

    def document(self) -> APIRouter:
        """FastAPI routes that document the fast routes (their endpoints never run: the app hands
        every POST to a fast route's path to the fast route first)."""
        return self._docs


def _documentation(body: type[BaseModel], path_params: dict[str, Any]) -> Callable[..., Any]:
    """An endpoint whose signature declares ``body`` and the path parameters, for FastAPI to
    document."""

    async def endpoint(**_: Any) -> None:
        raise AssertionError("a fast route's request reached its documentation route")

    params = [
        Parameter(name, Parameter.KEYWORD_ONLY, annotation=Annotated[str, spec])
        for name, spec in path_params.items()
    ]
    params.append(Parameter("body", Parameter.KEYWORD_ONLY, annotation=Annotated[body, Body()]))
    endpoint.__signature__ = Signature(params)  # type: ignore[attr-defined]
    return endpoint
