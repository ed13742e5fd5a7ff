"""controlroom: the control layer for AI agents in production.

The SDK in a few lines::

    import controlroom

    controlroom.init()  # CONTROLROOM_URL and CONTROLROOM_API_KEY

    @controlroom.run("support-bot")
    def answer(question: str) -> str:
        with controlroom.llm("openai", "gpt-4o-mini", input=question) as call:
            text = ...  # the model call
            call.record(output=text, input_tokens=812, output_tokens=96)
        return text

An evaluator is a plain function over a recorded run (``controlroom.evaluator``, ``controlroom.Score``;
see ``controlroom.evals``).

Importing this package is cheap: the server, store and CLI live in submodules that the SDK never imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from controlroom.errors import ConfigError
from controlroom.evals.evaluator import Score, evaluator
from controlroom.sdk._approval_gate import ApprovalGate, ApprovedTool, KeyFunction
from controlroom.sdk._approval_gate import requires_approval as _requires_approval
from controlroom.sdk._approvals import ApprovalError, ApprovalPending, ApprovalRejected, Grant
from controlroom.sdk._client import Client, init, shutdown
from controlroom.sdk._client import get_client as _get_client
from controlroom.sdk._control import BudgetExceeded
from controlroom.sdk._fallback import call_with_fallback
from controlroom.sdk._tracing import (
    LLMSpan,
    Run,
    Span,
    ToolSpan,
    current_run,
    current_span,
    score,
)

__version__ = "0.1.0"

__all__ = [
    "ApprovalError",
    "ApprovalPending",
    "ApprovalRejected",
    "BudgetExceeded",
    "Client",
    "ConfigError",
    "Grant",
    "LLMSpan",
    "Run",
    "Score",
    "Span",
    "ToolSpan",
    "__version__",
    "approval",
    "call_with_fallback",
    "current_run",
    "current_span",
    "evaluator",
    "flush",
    "init",
    "llm",
    "requires_approval",
    "run",
    "score",
    "shutdown",
    "span",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def run(agent: F, /) -> F: ...
@overload
def run(
    agent: str,
    /,
    *,
    inputs: Any = ...,
    model: str | None = ...,
    tags: list[str] | None = ...,
    agent_version: str | None = ...,
    environment: str | None = ...,
    session_id: str | None = ...,
    user_id: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    run_id: str | None = ...,
) -> Run: ...
def run(
    agent: str | F,
    /,
    *,
    inputs: Any = None,
    model: str | None = None,
    tags: list[str] | None = None,
    agent_version: str | None = None,
    environment: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Run | F:
    """One agent run: ``with controlroom.run("support-bot", inputs=...) as r:`` or ``@controlroom.run("support-bot")``
    (as a decorator, the call's arguments are the inputs and its return value the output). An exception
    escaping it marks the run failed, at the span it came from."""
    if callable(agent):
        return Run(agent.__name__)(agent)
    return Run(
        agent,
        inputs=inputs,
        run_id=run_id,
        model=model,
        tags=tags,
        agent_version=agent_version,
        environment=environment,
        session_id=session_id,
        user_id=user_id,
        metadata=dict(metadata) if metadata else None,
    )


def span(
    name: str, *, kind: str = "other", input: Any = None, attributes: Mapping[str, Any] | None = None
) -> Span:
    """A step of the current run (kind: agent, llm, tool, retrieval, embedding, guardrail, chain, other)."""
    return Span(name, kind=kind, input=input, attributes=attributes)


def llm(
    provider: str,
    model: str,
    *,
    name: str | None = None,
    input: Any = None,
    attributes: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    attempt: int | None = None,
    retry_of: str | None = None,
    fallback_from: str | None = None,
    input_tokens_estimate: int | None = None,
) -> LLMSpan:
    """A model call; record its result with ``.record(output=, input_tokens=, output_tokens=, ...)``.

    Under a daily cost cap, entering it reserves the call's worst-case cost first (``max_tokens``
    output tokens, and ``input_tokens_estimate`` input tokens — by default the UTF-8 size of
    ``input``, an upper bound) and raises :class:`BudgetExceeded` if the cap would be crossed;
    leaving it settles the actual cost."""
    return LLMSpan(
        provider,
        model,
        name=name,
        input=input,
        attributes=attributes,
        max_tokens=max_tokens,
        attempt=attempt,
        retry_of=retry_of,
        fallback_from=fallback_from,
        input_tokens_estimate=input_tokens_estimate,
    )


@overload
def tool(name: F, /) -> F: ...
@overload
def tool(
    name: str,
    /,
    *,
    input: Any = ...,
    attributes: Mapping[str, Any] | None = ...,
    approval: bool | str = ...,
) -> ToolSpan: ...
def tool(
    name: str | F,
    /,
    *,
    input: Any = None,
    attributes: Mapping[str, Any] | None = None,
    approval: bool | str = False,
) -> ToolSpan | F:
    """A tool call: ``with controlroom.tool("lookup_order"):``, ``@controlroom.tool("lookup_order")`` or ``@controlroom.tool``.

    ``approval=True`` (or a role, ``"admin"``) makes a decorated tool wait for a person's approval of
    each call, as :func:`requires_approval` does, inside the tool's span."""
    if callable(name):
        return ToolSpan(name.__name__)(name)
    if approval:
        return ApprovedTool(
            name, role=None if approval is True else str(approval), input=input, attributes=attributes
        )
    return ToolSpan(name, input=input, attributes=attributes)


def approval(
    action: str, arguments: Any, *, key: str | None = None, role: str | None = None, wait: float = 30.0
) -> ApprovalGate:
    """The gate of a sensitive action: it runs only once a person approved ``action`` with exactly
    these ``arguments`` (JSON values). Nothing is asked until the gate is used::

        with controlroom.approval("refund", {"order": 1042, "usd": "30.00"}) as grant:
            refund(1042, "30.00")  # runs only when granted; reported executed, or failed if it raises

    ``async with`` (and ``grant = await controlroom.approval(...)``) waits without blocking the
    event loop; ``grant = controlroom.approval(...).grant()`` waits on this thread. The request is
    found again by its run, ``key`` (the model's tool-call id; by default the action's step in the
    run) and the arguments. Approved: the grant is claimed (once, ever) and returned. Rejected,
    expired or cancelled: :class:`ApprovalRejected`. Still pending after ``wait`` seconds:
    :class:`ApprovalPending` (the request stays pending). ``role``: the least role that may decide
    (``approver`` by default, or stricter if the action's policy says so)."""
    return ApprovalGate(action, arguments, key=key, role=role, wait=wait)


@overload
def requires_approval(action: F, /) -> F: ...
@overload
def requires_approval(
    action: str | None = ...,
    /,
    *,
    role: str | None = ...,
    wait: float = ...,
    key: KeyFunction | None = ...,
) -> Callable[[F], F]: ...
def requires_approval(
    action: str | F | None = None,
    /,
    *,
    role: str | None = None,
    wait: float = 30.0,
    key: KeyFunction | None = None,
) -> Callable[[F], F] | F:
    """A decorator (sync and ``async def`` functions): each call waits for a person's approval of
    the call's arguments (by parameter name, defaults included, as JSON) as :func:`approval` does,
    then runs the function once with exactly those arguments. ``action`` defaults to the function's
    name; ``key`` is a function of the arguments (a dict) giving the idempotency key."""
    if callable(action):
        return _requires_approval(None)(action)
    return _requires_approval(action, role=role, wait=wait, key=key)


def flush(timeout: float = 5.0) -> bool:
    """Send everything recorded so far; True if it reached the server within ``timeout`` seconds
    (otherwise it stays queued or spooled, and is sent later)."""
    client = _get_client()
    return client.flush(timeout) if client is not None else True
