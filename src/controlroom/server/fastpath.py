"""Fast routes: raw ASGI endpoints for the calls on agents' hot paths (a paid call's reservation
and settlement, an approval's request, claim and outcome), declared like routes.

FastAPI's per-request machinery (middleware, dependency injection, response validation) costs
several times the database work of these calls, so the app hands their requests straight to a
:class:`FastRoute` (see :meth:`FastRoutes.match`). A fast route shares everything a client can see
with every other route: the one body reader (``deps.read_body``: size limit, gzip / deflate), the
one JSON content-type rule (``deps.json_content_type``), the one authorization
(``auth.authorize``, with the route's permission), the one problem renderer
(``responses.problem_response``, which the app's exception handlers use), and request validation
(path parameters and body, as FastAPI validates them) rendered by ``responses.request_problem``.
It is documented by a FastAPI route with the same path, path parameters, body, response model,
``responses`` and permission (registered by :meth:`FastRoutes.document`), so the OpenAPI document
is generated for it as for any route — and requests with other methods get FastAPI's answers.

A handler is a plain function. It is first called on the event loop with ``wait=False``: one that
would have to wait for a lock raises :class:`~controlroom.store.ledger.LedgerBusy` having done
nothing, and is then called again in a worker thread with ``wait=True``. A route declared with
``on_loop=False`` (its transaction always waits for the disk: a durable commit) is called in a
worker thread only, with ``wait=True``.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Body
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from controlroom.accounts.projects import Project
from controlroom.errors import ControlroomError, InvalidJSON, internal_error
from controlroom.server.auth import Permission, authorize, authorize_key, requires
from controlroom.server.deps import json_content_type, read_raw_body
from controlroom.server.responses import problem_response, request_problem
from controlroom.store.ledger import LedgerBusy

logger = logging.getLogger(__name__)

# (app state, the principal's project, the validated body, path parameters, wait) -> the answer:
# the response model's members as a plain dict, answered with the route's status code, or (status
# code, that dict). On the hot path, building and serialising a model costs more than the database
# work (the OpenAPI document still declares the model, and tests/server/test_openapi.py validates
# real answers against it).
Answer = dict[str, Any] | tuple[int, dict[str, Any]]
Handler = Callable[[Any, Project, Any, dict[str, str], bool], Answer]


@dataclass
class FastRoute:
    """A fast route: the principal needs ``permission``, checked as for any route."""

    path: str
    body: type[BaseModel]
    handler: Handler
    status_code: int
    permission: Permission
    max_body_bytes: int | None  # None: the server's max_body_bytes setting
    on_loop: bool = True
    path_params: dict[str, Any] = field(default_factory=dict)  # name -> fastapi.Path(...)
    regex: re.Pattern[str] = field(init=False)
    adapter: TypeAdapter[Any] = field(init=False)
    param_adapters: dict[str, TypeAdapter[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = compile_path(self.path)[0]  # the same matching as FastAPI's routes
        self.adapter = TypeAdapter(self.body)
        self.param_adapters = {n: TypeAdapter(Annotated[str, p]) for n, p in self.path_params.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, payload = await self._respond(scope, receive)
        except ControlroomError as e:
            await problem_response(e.problem(), headers=e.headers())(scope, receive, send)
            return
        except Exception:
            logger.exception("unhandled error in %s", scope["path"])
            await problem_response(internal_error())(scope, receive, send)
            return
        # the answer's bytes, sent as they are (a Response object costs more than the database work)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _respond(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        headers = _headers(scope)
        state = scope["app"].state
        key = headers.get("authorization")
        if key:  # what agents send (authorize's first step, without building a Request)
            principal = await authorize_key(key, state.keys, self.permission)
        else:  # a person's session, or nothing
            principal = await authorize(Request(scope), self.permission)
        json_content_type(headers.get("content-type"))
        raw = await read_raw_body(
            receive,
            headers.get("content-length"),
            headers.get("content-encoding"),
            self.max_body_bytes or state.settings.max_body_bytes,
        )
        params = scope["path_params"]
        body = self._validated(params, raw)
        args = (state, principal.project, body, params)
        if not self.on_loop:
            answer = await anyio.to_thread.run_sync(self.handler, *args, True)
        else:
            try:
                answer = self.handler(*args, False)
            except LedgerBusy:
                answer = await anyio.to_thread.run_sync(self.handler, *args, True)
        status, doc = answer if isinstance(answer, tuple) else (self.status_code, answer)
        return status, orjson.dumps(doc)

    def _validated(self, params: dict[str, str], raw: bytes) -> Any:
        """The body, validated with the path parameters as FastAPI validates them for its routes
        (the same parser, the same messages, every error at once): an answer does not depend on
        whether the route is a fast one."""
        errors: list[Any] = []
        for name, adapter in self.param_adapters.items():
            try:
                adapter.validate_python(params[name])
            except ValidationError as e:
                errors += [{**err, "loc": ("path", name)} for err in e.errors()]
        body = None
        if not raw:
            errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
        else:
            try:
                value = json.loads(raw)
            except ValueError:  # whatever the path parameters are
                raise InvalidJSON("the body is not valid JSON") from None
            try:
                body = self.adapter.validate_python(value, from_attributes=True)
            except ValidationError as e:
                errors += [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        if errors:
            raise request_problem(errors)
        return body


_WANTED = frozenset({b"authorization", b"content-type", b"content-length", b"content-encoding"})


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers a fast route reads (names are lower case in ASGI; the last one wins)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}


class FastRoutes:
    """A set of fast routes, POST only, each declared with :meth:`post`. ``max_body_bytes``: None
    for the server's setting (``CONTROLROOM_MAX_BODY_BYTES``)."""

    def __init__(self, *, max_body_bytes: int | None) -> None:
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
        permission: Permission,
        responses: dict[int | str, dict[str, Any]],
        summary: str,
        tags: list[str],
        description: str | None = None,
        path_params: dict[str, Any] | None = None,
        operation_id: str | None = None,
        on_loop: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Declare ``handler`` as the fast route ``POST path`` for principals with ``permission``,
        and document it like a route with this body, response model, responses and
        (``path_params``: name -> ``fastapi.Path(...)``) path parameters; by default its
        description is the handler's docstring and its operation id FastAPI's, as for any route.
        ``on_loop=False``: see the module's docstring."""

        def register(handler: Handler) -> Handler:
            params = path_params or {}
            self.routes.append(
                FastRoute(path, body, handler, status_code, permission, self.max_body_bytes, on_loop, params)
            )
            self._docs.add_api_route(
                path,
                _documentation(body, params),
                methods=["POST"],
                response_model=response_model,
                status_code=status_code,
                responses=responses,
                summary=summary,
                description=description or inspect.cleandoc(handler.__doc__ or ""),
                tags=list(tags),
                name=handler.__name__,
                operation_id=operation_id,
                dependencies=[requires(permission)],
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
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, spec])
        for name, spec in path_params.items()
    ]
    params.append(
        inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[body, Body()])
    )
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return endpoint
