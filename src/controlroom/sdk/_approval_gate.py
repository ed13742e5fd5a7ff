"""The approval gate: a sensitive action runs only once a person approved it, once, with exactly
the approved arguments.

:class:`ApprovalGate` (what :func:`controlroom.approval` returns) asks when it is used, not when
it is made: ``with`` and :meth:`~ApprovalGate.grant` wait on the calling thread, ``async with`` and
``await`` leave the event loop free. Each ask is an ``approval`` span of the current run (a run of
its own outside any run), bound on the server to (run, action, arguments) and an idempotency key:
the caller's ``key`` (the model's tool-call id), else the step ``action#n`` — the n-th decided
approval of this action in the run — so the same run, asked again (a restarted agent with the same
``run_id``, a re-executed graph node), finds the same requests.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from controlroom.approvals.binding import arguments_hash, canonical_json
from controlroom.sdk._approvals import (
    ROLES,
    USED,
    ApprovalError,
    ApprovalRejected,
    Ask,
    Grant,
    conversation,
    run_awaited,
    run_blocking,
)
from controlroom.sdk._client import Client, get_client
from controlroom.sdk._tracing import Span, ToolSpan, _current_run

F = TypeVar("F", bound=Callable[..., Any])
KeyFunction = Callable[[dict[str, Any]], "str | None"]

ATTRIBUTE = "controlroom.approval."


def plain_json(value: Any) -> Any:
    """``value`` as the JSON values it is approved as (tuples become lists); TypeError when it has
    no JSON form (an approver must see exactly what will run)."""
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"approval arguments must be JSON values (dict, list, str, number, bool, None): {e}"
        ) from None


def check_options(action: str, role: str | None, wait: float) -> None:
    if not isinstance(action, str) or not action:
        raise ValueError(f"an approval's action must be a non-empty string, not {action!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role={role!r} must be one of {', '.join(ROLES)}")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
        raise ValueError(f"wait={wait!r} must be a number of seconds, 0 or more")


class ApprovalGate:
    """A sensitive action's gate; see :func:`controlroom.approval`."""

    __slots__ = ("_plain", "action", "arguments", "granted", "key", "role", "wait")

    def __init__(
        self,
        action: str,
        arguments: Any,
        *,
        key: str | None = None,
        role: str | None = None,
        wait: float = 30.0,
    ) -> None:
        check_options(action, role, wait)
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key={key!r} must be a non-empty string")
        self.action = action
        self.arguments = arguments
        self._plain = plain_json(arguments)
        self.key = key
        self.role = role
        self.wait = float(wait)
        self.granted: Grant | None = None

    # -- asking --------------------------------------------------------------------------------
    def _begin(self) -> tuple[Client, Span, Ask, int | None]:
        """Open the approval span and say what to ask; the step it asks about (None with a key)."""
        client = get_client()
        if client is None:
            raise ApprovalError(
                f"controlroom.init() was not called: nobody can approve {self.action!r}, so it does not run",
                action=self.action,
            )
        span = Span(self.action, kind="approval", input=self._plain)
        span.__enter__()
        run = _current_run.get()
        assert run is not None and span.run_id == run.run_id  # a span opens a run of its own if needed
        step = None if self.key is not None else run.approval_step(self.action)
        started_by = run._fields.get("user_id")
        ask = Ask(
            run_id=run.run_id,
            action=self.action,
            arguments=self._plain,
            arguments_hash=arguments_hash(run_id=run.run_id, action=self.action, arguments=self._plain),
            idempotency_key=self.key or f"{self.action}#{step}",
            agent=run.agent,
            wait=self.wait,
            span_id=span.span_id,
            started_by=started_by if isinstance(started_by, str) else None,
            min_role=self.role,
            unchanged=lambda: plain_json(self.arguments) == self._plain,
        )
        return client, span, ask, step

    def _end(self, span: Span, step: int | None, result: Grant | BaseException) -> None:
        """Close the approval span with what became of the request."""
        approval_id: str | None
        status: str | None
        if isinstance(result, Grant):
            approval_id, status = result.approval_id, "claimed"
            decided_by, reason = result.decided_by, result.reason
        else:
            approval_id, status = getattr(result, "approval_id", None), getattr(result, "status", None)
            decided_by, reason = getattr(result, "decided_by", None), getattr(result, "reason", None)
        for name, value in (
            ("id", approval_id),
            ("status", status),
            ("decided_by", decided_by),
            ("reason", reason),
        ):
            if value is not None:
                span.set_attribute(ATTRIBUTE + name, value)
        run = _current_run.get()
        decided = isinstance(result, Grant | ApprovalRejected) or status in USED
        if step is not None and decided and run is not None:
            run.approval_decided(self.action, step)
        if isinstance(result, Grant):
            span.__exit__(None, None, None)
        else:
            span.__exit__(type(result), result, result.__traceback__)

    def grant(self) -> Grant:
        """Ask, wait (``wait`` seconds at most) and claim the grant, on this thread: the grant, or
        :class:`ApprovalRejected`, :class:`ApprovalPending`, :class:`ApprovalError`."""
        client, span, ask, step = self._begin()
        try:
            grant = run_blocking(client.approvals, conversation(client.approvals, ask))
        except BaseException as e:
            self._end(span, step, e)
            raise
        self._end(span, step, grant)
        return grant

    async def agrant(self) -> Grant:
        """:meth:`grant`, awaited: the event loop runs the agent's other tasks while it waits."""
        client, span, ask, step = self._begin()
        try:
            grant = await run_awaited(client.approvals, conversation(client.approvals, ask))
        except BaseException as e:
            self._end(span, step, e)
            raise
        self._end(span, step, grant)
        return grant

    def __await__(self) -> Any:
        return self.agrant().__await__()

    # -- the block that runs the action -----------------------------------------------------------
    def __enter__(self) -> Grant:
        self.granted = self.grant()
        return self.granted

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        if self.granted is not None:
            self.granted.executed() if e is None else self.granted.failed(e)

    async def __aenter__(self) -> Grant:
        self.granted = await self.agrant()
        return self.granted

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        if self.granted is not None:
            await (self.granted.aexecuted() if e is None else self.granted.afailed(e))


# -- decorators ---------------------------------------------------------------------------------


def call_arguments(
    sig: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """A call's arguments by parameter name, defaults included (``self`` and ``cls`` left out); the
    call's own TypeError when they do not fit the function."""
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}


def requires_approval(
    action: str | None = None,
    *,
    role: str | None = None,
    wait: float = 30.0,
    key: KeyFunction | None = None,
) -> Callable[[F], F]:
    """See :func:`controlroom.requires_approval`."""
    check_options(action or "-", role, wait)
    if key is not None and not callable(key):
        raise TypeError("key= of requires_approval is a function of the call's arguments (a dict)")

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        name = action or fn.__name__

        def gate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ApprovalGate:
            arguments = call_arguments(sig, args, kwargs)
            return ApprovalGate(
                name, arguments, key=None if key is None else key(arguments), role=role, wait=wait
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with gate(args, kwargs):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with gate(args, kwargs):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


class ApprovedTool(ToolSpan):
    """``@controlroom.tool(name, approval=...)``: each call is a tool span, inside it the approval,
    then (granted) the function."""

    __slots__ = ("role",)

    def __init__(
        self, name: str, *, role: str | None, input: Any = None, attributes: Mapping[str, Any] | None = None
    ) -> None:
        check_options(name, role, 0)
        super().__init__(name, input=input, attributes=attributes)
        self.role = role

    def __call__(self, fn: F) -> F:
        return super().__call__(requires_approval(self.name, role=self.role)(fn))

    def __enter__(self) -> Span:
        raise TypeError(
            f"controlroom.tool({self.name!r}, approval=...) decorates a function; in a with block, "
            "use `with controlroom.approval(action, arguments):` instead"
        )

    async def __aenter__(self) -> Span:
        return self.__enter__()
