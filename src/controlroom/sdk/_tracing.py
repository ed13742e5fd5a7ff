"""Runs and spans on the agent's side: context managers and decorators that emit run-log events to
the background exporter. Nesting follows the call stack through contextvars, so every thread and
every asyncio task keeps its own current run and span.

Cost on the agent's thread is a few microseconds per span: ids from a PRNG, two dicts, two deque
appends. Inputs and outputs are serialised later, on the exporter's thread.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from controlroom.money import USAGE_FIELDS
from controlroom.sdk._client import Client, get_client
from controlroom.sdk._control import RESERVATION_ATTRIBUTE, BudgetExceeded, call_outcome, input_token_bound

logger = logging.getLogger("controlroom.sdk")

F = TypeVar("F", bound=Callable[..., Any])

_current_run: ContextVar[Run | None] = ContextVar("controlroom_run", default=None)
_current_span: ContextVar[Span | None] = ContextVar("controlroom_span", default=None)
_attempt_plan: ContextVar[AttemptPlan | None] = ContextVar("controlroom_attempt", default=None)

_rand = random.Random()
_ERROR_MARK = "__controlroom_span_id__"
MAX_MESSAGE = 8192


def _new_span_id() -> str:
    return f"{_rand.getrandbits(64) | 1:016x}"


def _new_run_id() -> str:
    return f"{_rand.getrandbits(128) | 1:032x}"


def internal_error(client: Client | None, exc: BaseException) -> None:
    """An SDK bug must never break the agent: log it; under tests (strict) re-raise it."""
    if client is not None and client.config.strict:
        raise exc
    logger.exception("controlroom SDK internal error (the agent is unaffected)", exc_info=exc)


def error_info(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)[:MAX_MESSAGE]}


def _mark(exc: BaseException, span_id: str) -> None:
    """Remember the innermost span an exception escaped from (the run's failing span)."""
    if getattr(exc, _ERROR_MARK, None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, _ERROR_MARK, span_id)


def _call_args(sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if sig is None:
        return {"args": list(args), "kwargs": kwargs} if args or kwargs else None
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}


class _Decorates:
    """Used as ``with x(...)`` it is one run/span; used as ``@x(...)`` it makes a fresh one per call."""

    def _fresh(self, call_input: Any) -> _Decorates:
        raise NotImplementedError

    def __enter__(self) -> Any:
        raise NotImplementedError

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        raise NotImplementedError

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        raise NotImplementedError

    def __call__(self, fn: F) -> F:
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        template = self

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with template._fresh(_call_args(sig, args, kwargs)) as scope:
                    result = await fn(*args, **kwargs)
                    scope.set_output(result)
                    return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with template._fresh(_call_args(sig, args, kwargs)) as scope:
                result = fn(*args, **kwargs)
                scope.set_output(result)
                return result

        return cast(F, wrapper)


class Run(_Decorates):
    """One agent invocation. Use :func:`controlroom.run`."""

    __slots__ = (
        "_approval_steps",
        "_client",
        "_fields",
        "_output",
        "_token",
        "agent",
        "inputs",
        "run_id",
        "started",
        "status",
    )

    def __init__(self, agent: str, *, inputs: Any = None, run_id: str | None = None, **fields: Any) -> None:
        self.agent = agent
        self.inputs = inputs
        self.run_id = run_id or _new_run_id()
        self._fields = fields
        self._client: Client | None = None
        self._output: Any = None
        self._token: Token[Run | None] | None = None
        self.started = False
        self.status: str | None = None
        self._approval_steps: dict[str, int] = {}

    def approval_step(self, action: str) -> int:
        """The step of this run's next approval of ``action`` (1, 2, ...). It moves on only once
        the request of the current step was decided (:meth:`approval_decided`): asking again about
        an undecided one finds it."""
        return self._approval_steps.get(action, 0) + 1

    def approval_decided(self, action: str, step: int) -> None:
        self._approval_steps[action] = max(step, self._approval_steps.get(action, 0))

    def _fresh(self, call_input: Any) -> Run:
        return Run(self.agent, inputs=self.inputs if self.inputs is not None else call_input, **self._fields)

    def set_output(self, output: Any) -> None:
        self._output = output

    def __enter__(self) -> Run:
        self._client = get_client()
        self._token = _current_run.set(self)
        self.started = True
        if self._client is None:
            return self
        try:
            body: dict[str, Any] = {"agent": self.agent}
            if self.inputs is not None:
                body["inputs"] = self.inputs
            env = self._fields.get("environment") or self._client.config.environment
            if env:
                body["environment"] = env
            for key, value in self._fields.items():
                if value is not None and key != "environment":
                    body[key] = list(value) if key == "tags" else value
            self._client.emit(
                {
                    "id": f"{self.run_id}.start",
                    "type": "run.started",
                    "run_id": self.run_id,
                    "ts": time.time_ns(),
                    "body": body,
                }
            )
        except Exception as exc:
            internal_error(self._client, exc)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _current_run.reset(self._token)
        client = self._client
        if e is None:
            self.status = "succeeded"
        elif isinstance(e, GeneratorExit | KeyboardInterrupt) or type(e).__name__ == "CancelledError":
            self.status = "cancelled"
        else:
            self.status = "failed"
        if client is None:
            return
        try:
            body: dict[str, Any] = {"status": self.status}
            if self._output is not None:
                body["output"] = self._output
            if e is not None:
                body["error"] = error_info(e)
                failing = getattr(e, _ERROR_MARK, None)
                if failing:
                    body["failing_span_id"] = failing
            client.emit(
                {
                    "id": f"{self.run_id}.end",
                    "type": "run.ended",
                    "run_id": self.run_id,
                    "ts": time.time_ns(),
                    "body": body,
                }
            )
        except Exception as exc:
            internal_error(client, exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        self.__exit__(et, e, tb)


class Span(_Decorates):
    """One step of a run: a model call, a tool call, retrieval, or any block of work."""

    __slots__ = (
        "_client",
        "_end_attrs",
        "_implicit_run",
        "_output",
        "_run_token",
        "_start_body",
        "_token",
        "attributes",
        "input",
        "kind",
        "name",
        "parent_span_id",
        "run_id",
        "span_id",
        "status",
    )

    def __init__(
        self,
        name: str,
        *,
        kind: str = "other",
        input: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.input = input
        self.attributes = attributes
        self.span_id = _new_span_id()
        self.run_id: str | None = None
        self.parent_span_id: str | None = None
        self.status: str | None = None
        self._client: Client | None = None
        self._token: Token[Span | None] | None = None
        self._implicit_run: Run | None = None
        self._run_token: Any = None
        self._output: Any = None
        self._end_attrs: dict[str, Any] | None = None
        self._start_body: dict[str, Any] | None = None

    def _fresh(self, call_input: Any) -> Span:
        return type(self)(
            self.name,
            kind=self.kind,
            input=self.input if self.input is not None else call_input,
            attributes=self.attributes,
        )

    # -- what the agent records --------------------------------------------------------------
    def set_output(self, output: Any) -> None:
        self._output = output

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_attrs is None:
            self._end_attrs = {}
        self._end_attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)

    # -- lifecycle ---------------------------------------------------------------------------
    def _start_fields(self, body: dict[str, Any]) -> None:
        """Subclasses add their start fields (provider, model, attempt, ...)."""

    def _end_fields(self, body: dict[str, Any]) -> None:
        """Subclasses add their end fields (usage, cost, ...)."""

    def _admit(self, client: Client, run: Run) -> None:
        """Control decisions before the span's work runs (the budget guard of LLM spans)."""

    async def _aadmit(self, client: Client, run: Run) -> None:
        """:meth:`_admit`, awaited (``async with``)."""

    _settles = False
    """True where :meth:`_settle` does something (spans whose cost the budget settles)."""

    def _settle(self, client: Client, error: BaseException | None) -> None:
        """Control bookkeeping after the span's work (the budget settlement of LLM spans)."""

    async def _asettle(self, client: Client, error: BaseException | None) -> None:
        """:meth:`_settle`, awaited (``async with``)."""

    def _open(self) -> Run:
        """Become the current span (of the current run, or of a run of its own); its run."""
        self._client = get_client()
        run = _current_run.get()
        if run is None:  # a span outside any run starts a run of its own
            run = self._implicit_run = Run(self.name)
            run.__enter__()
        self.run_id = run.run_id
        parent = _current_span.get()
        if parent is not None and parent.run_id == run.run_id:
            self.parent_span_id = parent.span_id
        self._token = _current_span.set(self)
        return run

    def _not_admitted(self, client: Client, stopped: BaseException) -> None:
        """Refused before any request left (or cancelled while the server decided): record the span
        as ended with that error and stop being the current span (the caller raises)."""
        self._emit_start(client)
        if isinstance(stopped, BudgetExceeded):
            self.set_attributes(stopped.attributes())
        self.__exit__(type(stopped), stopped, stopped.__traceback__)

    def __enter__(self) -> Span:
        run = self._open()
        client = self._client
        if client is not None:
            try:
                self._admit(client, run)
            except BaseException as stopped:
                self._not_admitted(client, stopped)
                raise
            self._emit_start(client)
        return self

    async def __aenter__(self) -> Span:
        run = self._open()
        client = self._client
        if client is not None:
            try:
                await self._aadmit(client, run)
            except BaseException as stopped:
                self._not_admitted(client, stopped)
                raise
            self._emit_start(client)
        return self

    def _emit_start(self, client: Client) -> None:
        try:
            body: dict[str, Any] = {"span_id": self.span_id, "kind": self.kind, "name": self.name}
            if self.parent_span_id is not None:
                body["parent_span_id"] = self.parent_span_id
            if self.input is not None:
                body["input"] = self.input
            if self.attributes:
                body["attributes"] = dict(self.attributes)
            self._start_fields(body)
            client.emit(
                {
                    "id": f"{self.run_id}{self.span_id}.s",
                    "type": "span.started",
                    "run_id": self.run_id,
                    "ts": time.time_ns(),
                    "body": body,
                }
            )
        except Exception as exc:
            internal_error(client, exc)

    def _close(self, e: BaseException | None) -> Client | None:
        """Stop being the current span and emit its end; the client, if there is one."""
        if self._token is not None:
            _current_span.reset(self._token)
            self._token = None
        self.status = "ok" if e is None else "error"
        client = self._client
        if e is not None:
            _mark(e, self.span_id)
        if client is None:
            return None
        try:
            body: dict[str, Any] = {"span_id": self.span_id, "status": self.status}
            if self._output is not None:
                body["output"] = self._output
            if e is not None:
                body["error"] = error_info(e)
            if self._end_attrs:
                body["attributes"] = self._end_attrs
            self._end_fields(body)
            client.emit(
                {
                    "id": f"{self.run_id}{self.span_id}.e",
                    "type": "span.ended",
                    "run_id": self.run_id,
                    "ts": time.time_ns(),
                    "body": body,
                }
            )
        except Exception as exc:
            internal_error(client, exc)
        return client

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        client = self._close(e)
        if client is not None and self._settles:
            try:
                self._settle(client, e)
            except Exception as exc:
                internal_error(client, exc)
        if self._implicit_run is not None:
            self._implicit_run.__exit__(et, e, tb)

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        client = self._close(e)
        if client is not None and self._settles:
            try:
                await self._asettle(client, e)
            except Exception as exc:
                internal_error(client, exc)
        if self._implicit_run is not None:
            self._implicit_run.__exit__(et, e, tb)


@dataclass(slots=True)
class AttemptPlan:
    """Set by :func:`call_with_fallback` around one attempt; the next LLM span takes it."""

    attempt: int
    retry_of: str | None
    fallback_from: str | None
    span: LLMSpan | None = None


class LLMSpan(Span):
    """A model call. Record what came back with :meth:`record`."""

    _settles = True

    __slots__ = (
        "attempt",
        "cost_usd",
        "fallback_from",
        "input_tokens_estimate",
        "max_tokens",
        "model",
        "outcome",
        "provider",
        "reservation_id",
        "response_model",
        "retry_of",
        "usage",
    )

    def __init__(
        self,
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
        input_tokens_estimate: int | Callable[[], int | None] | None = None,
    ) -> None:
        """``input_tokens_estimate``: the number, or a function computing it (None: the size of
        ``input``), called only when a reservation is actually asked for."""
        super().__init__(name or f"{provider}.{model}", kind="llm", input=input, attributes=attributes)
        self.provider = provider
        self.model = model
        self.max_tokens = max_tokens
        self.input_tokens_estimate = input_tokens_estimate
        self.reservation_id: str | None = None
        #: how the call ended, for the budget: completed / failed_before_generation / unknown
        self.outcome: str | None = None
        self.attempt = attempt
        self.retry_of = retry_of
        self.fallback_from = fallback_from
        self.usage: dict[str, int] | None = None
        self.cost_usd: Any = None
        self.response_model: str | None = None
        plan = _attempt_plan.get()
        if plan is not None and plan.span is None:
            plan.span = self
            self.attempt = plan.attempt
            self.retry_of = plan.retry_of
            self.fallback_from = plan.fallback_from

    def _fresh(self, call_input: Any) -> LLMSpan:
        return LLMSpan(
            self.provider,
            self.model,
            name=self.name,
            input=self.input if self.input is not None else call_input,
            attributes=self.attributes,
            max_tokens=self.max_tokens,
            input_tokens_estimate=self.input_tokens_estimate,
        )

    def _reservation(self, run: Run) -> dict[str, Any]:
        """What :meth:`ControlClient.reserve` is asked for this call."""

        def estimate() -> int:  # measured only if the ledger is asked (not for an uncapped agent)
            given = self.input_tokens_estimate
            if callable(given):
                given = given()
            return input_token_bound(self.input) if given is None else given

        return {
            "agent": run.agent,
            "provider": self.provider,
            "model": self.model,
            "input_tokens": estimate,
            "max_output_tokens": self.max_tokens,
            "run_id": self.run_id,
            "span_id": self.span_id,
        }

    def _held(self, reservation_id: str | None) -> None:
        self.reservation_id = reservation_id
        if reservation_id is not None:
            self.attributes = {**(self.attributes or {}), RESERVATION_ATTRIBUTE: reservation_id}

    def _admit(self, client: Client, run: Run) -> None:
        """Reserve the call's worst-case cost under the daily cap before any request leaves."""
        if client.control is not None:
            self._held(client.control.reserve(**self._reservation(run)))

    async def _aadmit(self, client: Client, run: Run) -> None:
        if client.control is not None:
            self._held(await client.control.areserve(**self._reservation(run)))

    def _settlement(self, error: BaseException | None) -> dict[str, Any]:
        """What :meth:`ControlClient.settle` is told about this call."""
        if self.outcome:
            outcome = self.outcome
        elif error is not None:
            outcome = call_outcome(error)
        else:  # a call that reported neither usage nor cost is charged what it held, not $0
            outcome = "completed" if self.usage or self.cost_usd is not None else "unknown"
        return {"outcome": outcome, "usage": self.usage, "cost_usd": self.cost_usd}

    def _unsettled(self) -> None:
        logger.warning(
            "controlroom: could not settle reservation %s; it settles at its hold when it expires",
            self.reservation_id,
        )

    def _settle(self, client: Client, error: BaseException | None) -> None:
        if self.reservation_id is None or client.control is None:
            return
        if not client.control.settle(self.reservation_id, **self._settlement(error)):
            self._unsettled()

    async def _asettle(self, client: Client, error: BaseException | None) -> None:
        if self.reservation_id is None or client.control is None:
            return
        if not await client.control.asettle(self.reservation_id, **self._settlement(error)):
            self._unsettled()

    def record(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cost_usd: Any = None,
        model: str | None = None,
    ) -> None:
        """What the call returned: output, token usage (``input_tokens`` includes cached tokens,
        ``output_tokens`` includes reasoning tokens), a cost the provider reported, the response model."""
        merged = dict(self.usage or {})
        if usage:
            merged.update({k: int(v) for k, v in usage.items() if k in USAGE_FIELDS and v is not None})
        for key, value in zip(
            USAGE_FIELDS,
            (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens),
            strict=True,
        ):
            if value is not None:
                merged[key] = int(value)
        if merged:
            self.usage = merged
        if output is not None:
            self._output = output
        if cost_usd is not None:
            self.cost_usd = cost_usd
        if model:
            self.response_model = model

    def _start_fields(self, body: dict[str, Any]) -> None:
        body["provider"] = self.provider
        body["model"] = self.model
        if self.attempt is not None:
            body["attempt"] = self.attempt
        if self.retry_of:
            body["retry_of"] = self.retry_of
        if self.fallback_from:
            body["fallback_from"] = self.fallback_from
        if self.max_tokens is not None:
            body.setdefault("attributes", {})["gen_ai.request.max_tokens"] = self.max_tokens

    def _end_fields(self, body: dict[str, Any]) -> None:
        if self.usage is not None:
            body["usage"] = self.usage
        if self.cost_usd is not None:
            body["cost_usd"] = str(self.cost_usd)
        if self.response_model:
            body["model"] = self.response_model


class ToolSpan(Span):
    __slots__ = ()

    def __init__(self, name: str, *, input: Any = None, attributes: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, kind="tool", input=input, attributes=attributes)

    def _fresh(self, call_input: Any) -> ToolSpan:
        return ToolSpan(
            self.name, input=self.input if self.input is not None else call_input, attributes=self.attributes
        )


def current_run() -> Run | None:
    return _current_run.get()


def current_span() -> Span | None:
    return _current_span.get()


def score(
    name: str,
    value: float | None = None,
    *,
    label: str | None = None,
    comment: str | None = None,
    run_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Attach a score to a run (the current one by default), optionally to one of its spans."""
    client = get_client()
    if client is None:
        return
    try:
        if value is None and label is None:
            raise ValueError("controlroom.score needs a value or a label")
        if run_id is None:
            run = _current_run.get()
            if run is None:
                raise ValueError("controlroom.score outside a run needs run_id=")
            run_id = run.run_id
        body: dict[str, Any] = {"name": name, "source": "sdk"}
        for key, v in (("value", value), ("label", label), ("comment", comment), ("span_id", span_id)):
            if v is not None:
                body[key] = v
        client.emit(
            {
                "id": f"{run_id}.score.{_new_span_id()}",
                "type": "score.recorded",
                "run_id": run_id,
                "ts": time.time_ns(),
                "body": body,
            }
        )
    except ValueError:
        raise
    except Exception as exc:
        internal_error(client, exc)
