"""What the provider integrations share: one LLM span per model call, wrapped around a client's bound
methods, with streamed responses observed in place.

A call's span is entered and exited in a context of its own (a copy of the caller's, taken when the call
starts): a streamed response ends its span when it is exhausted, fails, is closed or is dropped, which
may be after the call returned, in another task or thread. The caller's context never sees the span as
its current span, so spans opened while a stream is being read are not nested under it.

Bookkeeping (reading requests, responses and stream events) never breaks the agent's call: a failure in
it is reported through :func:`controlroom.sdk._tracing.internal_error` (logged, or raised under
``strict``). The span's own enter and exit are not guarded here: what they raise on purpose (a refused
budget, say) must reach the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from controlroom.sdk._client import get_client
from controlroom.sdk._control import input_token_bound
from controlroom.sdk._tracing import LLMSpan, internal_error

WRAPPED = "__controlroom_instrumented__"
CLOSED_EARLY = "gen_ai.stream.closed_early"
FIRST_CHUNK_MS = "gen_ai.response.time_to_first_chunk_ms"


class _Guard:
    """``with guarded:`` -- an exception in the block is an SDK-internal error, never the agent's."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if not isinstance(e, Exception):
            return False
        internal_error(get_client(), e)
        return True


guarded = _Guard()


class ProviderError(Exception):
    """A failure the provider reported inside a successful HTTP response (e.g. a ``response.failed``
    event); recorded on the span, never raised to the agent."""


# -- reading provider objects (pydantic models or plain dicts) ---------------------------------------------


def attr(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def path(obj: Any, *names: str) -> Any:
    for name in names:
        obj = attr(obj, name)
    return obj


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def counts(
    obj: Any, fields: Sequence[tuple[str, tuple[str, ...]]], into: dict[str, int] | None = None
) -> dict[str, int]:
    """The integers found in ``obj`` at each ``(key, path)`` of ``fields``, by key, added to ``into``
    (a new dict by default); a path that leads to no integer is left out."""
    out = {} if into is None else into
    for key, names in fields:
        value = as_int(path(obj, *names))
        if value is not None:
            out[key] = value
    return out


def given(kwargs: Mapping[str, Any], name: str) -> Any:
    """A keyword argument the caller really passed (the SDKs' ``NOT_GIVEN`` / ``omit`` sentinels are not)."""
    value = kwargs.get(name)
    if value is None or type(value).__name__ in ("NotGiven", "Omit"):
        return None
    return value


def model_of(kwargs: Mapping[str, Any]) -> str:
    """The requested model, or ``"unknown"``."""
    model = given(kwargs, "model")
    return model if isinstance(model, str) and model else "unknown"


def request_attributes(
    kwargs: Mapping[str, Any], names: Sequence[tuple[str, str]], kinds: tuple[type, ...]
) -> dict[str, Any]:
    """The span attributes of the sampling arguments ``names`` maps to attribute keys (those the caller
    passed as one of ``kinds``; a bool is never a number), and ``gen_ai.request.stream``."""
    attributes: dict[str, Any] = {}
    for arg, key in names:
        value = given(kwargs, arg)
        if isinstance(value, kinds) and not isinstance(value, bool):
            attributes[key] = value
    if given(kwargs, "stream") is True:
        attributes["gen_ai.request.stream"] = True
    return attributes


def billed(kwargs: Mapping[str, Any], *names: str) -> list[Any]:
    """The keyword arguments among ``names`` the caller really passed, for :attr:`Request.billed`."""
    return [value for name in names if (value := given(kwargs, name)) is not None]


def snapshot(value: Any) -> Any:
    """The caller's message list as it is now (agents often append the reply to the same list right
    after the call, before the exporter serialises it). Anything else is kept as is."""
    return list(value) if isinstance(value, list | tuple) else value


def message_output(content: Any, tool_calls: list[dict[str, Any]], refusal: Any) -> Any:
    """A reply: its text, or a dict with the text and the tool calls (or the refusal)."""
    if not tool_calls and not refusal:
        return content
    out: dict[str, Any] = {"content": content}
    if tool_calls:
        out["tool_calls"] = tool_calls
    if refusal:
        out["refusal"] = refusal
    return out


def joined_output(texts: list[str], tool_calls: list[dict[str, Any]], refusal: Any = None) -> Any:
    """:func:`message_output` of a reply read in pieces: its text joined, None if it is only tool calls."""
    return message_output("".join(texts) if texts or not tool_calls else None, tool_calls, refusal)


def response_attributes(span: LLMSpan, response_id: Any, finish_reasons: list[str]) -> None:
    if isinstance(response_id, str) and response_id:
        span.set_attribute("gen_ai.response.id", response_id)
    if finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", finish_reasons)


# -- a call's span ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deferred:
    """A billed part of a request that takes work to build (the JSON schema of an output type): built
    only when a hold is reserved, the way the provider's SDK builds it for the request."""

    make: Callable[[], Any]


@dataclass(slots=True)
class Request:
    """What an endpoint reads from a call's arguments."""

    model: str
    input: Any = None
    max_tokens: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: what else the provider bills as input tokens (tool definitions, output schemas; values as the
    #: caller passed them, or :class:`Deferred`): counted in the hold, never recorded
    billed: list[Any] = field(default_factory=list)


def input_estimate(request: Request) -> int | None:
    """The hold's input tokens for a request with billed parts besides its input: the UTF-8 JSON size
    of the input plus that of each part (a token is at least one byte). None (the span's default, the
    size of the input) when measuring failed. The span calls it only when it asks for a reservation."""
    estimate: int | None = None
    with guarded:
        total = input_token_bound(request.input)
        for part in request.billed:
            total += input_token_bound(part.make() if isinstance(part, Deferred) else part)
        estimate = total
    return estimate


class LLMCall:
    """The LLM span of one model call, in a context of its own; ended exactly once."""

    __slots__ = ("_ctx", "_done", "_lock", "span", "started")

    def __init__(self, provider: str, request: Request) -> None:
        self.span: LLMSpan = LLMSpan(
            provider,
            request.model,
            input=request.input,
            max_tokens=request.max_tokens,
            attributes=request.attributes or None,
            input_tokens_estimate=functools.partial(input_estimate, request) if request.billed else None,
        )
        self._ctx = contextvars.copy_context()
        self._lock = threading.Lock()
        self._done = False
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._ctx.run(self.span.__enter__)

    async def astart(self) -> None:
        """:meth:`start` for an async call: the reservation is awaited, the event loop runs on."""
        self.started = time.monotonic()
        await asyncio.create_task(self.span.__aenter__(), context=self._ctx)

    def claim(self) -> bool:
        """True for the one caller that gets to end the span."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def exit(self, error: BaseException | None = None) -> None:
        """End the span (after :meth:`claim`); ``error`` marks it failed."""
        self._ctx.run(self.span.__exit__, *_exc_info(error))

    async def aexit(self, error: BaseException | None = None) -> None:
        """:meth:`exit` for an async call: the settlement is awaited."""
        await asyncio.create_task(self.span.__aexit__(*_exc_info(error)), context=self._ctx)

    def fail(self, error: BaseException) -> None:
        """The call raised: end the span failed (with the HTTP status and request id, if any)."""
        if self._failed(error):
            self.exit(error)

    async def afail(self, error: BaseException) -> None:
        """:meth:`fail` for an async call."""
        if self._failed(error):
            await self.aexit(error)

    def _failed(self, error: BaseException) -> bool:
        """Claim the span and record the HTTP status and request id of ``error``; False if the
        span was already ended."""
        if not self.claim():
            return False
        with guarded:
            status = as_int(getattr(error, "status_code", None))
            if status is not None:
                self.span.set_attribute("http.response.status_code", status)
            request_id = getattr(error, "request_id", None)
            if isinstance(request_id, str) and request_id:
                self.span.set_attribute("gen_ai.response.request_id", request_id)
        return True


def _exc_info(error: BaseException | None) -> tuple[Any, BaseException | None, Any]:
    return (None, None, None) if error is None else (type(error), error, error.__traceback__)


class StreamState(Protocol):
    """Accumulates one streamed response: its events in, the span's record out."""

    def feed(self, item: Any) -> None: ...

    def record(self, span: LLMSpan) -> BaseException | None:
        """Record output, usage and model on the span; return a failure the stream reported, if any."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instrumented method: how to read its request, its response and its stream."""

    operation: str
    describe: Callable[[Mapping[str, Any]], Request]
    record: Callable[[LLMSpan, Any], BaseException | None]
    stream_state: Callable[[], StreamState]
    stream_types: tuple[type[Any], ...]
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def describe(endpoint: Endpoint, kwargs: Mapping[str, Any]) -> Request:
    """The call's request, as far as it can be read (at least its model)."""
    request: Request | None = None
    with guarded:
        request = endpoint.describe(kwargs)
    if request is None:
        request = Request(model=model_of(kwargs))
    request.attributes.setdefault("gen_ai.operation.name", endpoint.operation)
    return request


def _recorded(call: LLMCall, endpoint: Endpoint, response: Any) -> BaseException | None:
    """Record a response on the span; a failure it reports, if any."""
    failure: BaseException | None = None
    with guarded:
        failure = endpoint.record(call.span, response)
    return failure


# -- streams, observed in place -----------------------------------------------------------------------------


class _StreamEnd:
    """Feeds a stream's events to its state and ends the call's span once."""

    __slots__ = ("call", "first", "state")

    def __init__(self, call: LLMCall, state: StreamState) -> None:
        self.call = call
        self.state = state
        self.first = True

    def feed(self, item: Any) -> None:
        with guarded:
            if self.first:
                self.first = False
                elapsed = (time.monotonic() - self.call.started) * 1000
                self.call.span.set_attribute(FIRST_CHUNK_MS, round(elapsed, 3))
            self.state.feed(item)

    def finish(self, error: BaseException | None = None, *, closed: bool = False) -> None:
        if self.call.claim():
            self.call.exit(self._recorded(error, closed))

    async def afinish(self, error: BaseException | None = None, *, closed: bool = False) -> None:
        """:meth:`finish` of an async stream."""
        if self.call.claim():
            await self.call.aexit(self._recorded(error, closed))

    def _recorded(self, error: BaseException | None, closed: bool) -> BaseException | None:
        """Record what the stream brought on the span; the error to end it with."""
        with guarded:
            failure = self.state.record(self.call.span)
            if error is None:
                error = failure
            if closed:
                self.call.span.set_attribute(CLOSED_EARLY, True)
                # what the provider generated (and bills) is unknown: settle at the full hold
                self.call.span.outcome = "unknown"
        return error


def _observed(inner: Iterator[Any], end: _StreamEnd) -> Iterator[Any]:
    try:
        for item in inner:
            end.feed(item)
            yield item
    except GeneratorExit:
        end.finish(closed=True)
        close = getattr(inner, "close", None)
        if callable(close):
            close()
        raise
    except BaseException as exc:
        end.finish(exc)
        raise
    else:
        end.finish()


async def _aobserved(inner: AsyncIterator[Any], end: _StreamEnd) -> AsyncIterator[Any]:
    try:
        async for item in inner:
            end.feed(item)
            yield item
    except GeneratorExit:
        await end.afinish(closed=True)
        raise
    except BaseException as exc:
        await end.afinish(exc)
        raise
    else:
        await end.afinish()


_ending: set[asyncio.Task[None]] = set()  # spans of dropped async streams being ended


def _dropped(end: _StreamEnd, is_async: bool) -> None:
    """A stream garbage-collected unread: end its span. This runs inside the collector, anywhere
    (even inside a lock a thread pool holds), so it takes no lock: an async stream dropped on an
    event loop's thread has its span ended (and settled, awaited) by a task scheduled on that loop."""
    loop = None
    if is_async:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
    if loop is None:
        end.finish(closed=True)
    else:
        loop.call_soon(_end_later, end)


def _end_later(end: _StreamEnd) -> None:
    task = asyncio.ensure_future(end.afinish(closed=True))
    _ending.add(task)
    task.add_done_callback(_ending.discard)


def observe_stream(stream: Any, call: LLMCall, state: StreamState, *, is_async: bool) -> None:
    """Make ``stream`` (an SDK ``Stream`` / ``AsyncStream``, left of its own type) feed ``state`` and end
    the call's span when it is exhausted, raises, is closed, or is garbage-collected unread."""
    end = _StreamEnd(call, state)
    try:
        inner = stream._iterator
        stream._iterator = _aobserved(inner, end) if is_async else _observed(inner, end)
        cls_close = type(stream).close
        try:
            ref: Callable[[], Any] = weakref.ref(stream)
        except TypeError:  # not weak-referenceable: hold it (a reference cycle, freed by the GC)
            ref = functools.partial(lambda s: s, stream)

        if is_async:

            async def aclose() -> None:
                try:
                    target = ref()
                    if target is not None:
                        await cls_close(target)
                finally:
                    await end.afinish(closed=True)

            stream.close = aclose
        else:

            def close() -> None:
                try:
                    target = ref()
                    if target is not None:
                        cls_close(target)
                finally:
                    end.finish(closed=True)

            stream.close = close
        with guarded:
            finalizer = weakref.finalize(stream, _dropped, end, is_async)
            finalizer.atexit = False
    except Exception as exc:
        end.finish()
        internal_error(get_client(), exc)


# -- wrapping bound methods ------------------------------------------------------------------------------


def _prepared(provider: str, endpoint: Endpoint, kwargs: dict[str, Any]) -> tuple[LLMCall, dict[str, Any]]:
    """Before the request: the call's span (not entered yet), and the keyword arguments to send (as
    :attr:`Endpoint.prepare` makes them)."""
    call = LLMCall(provider, describe(endpoint, kwargs))
    if endpoint.prepare is not None:
        with guarded:
            kwargs = endpoint.prepare(dict(kwargs))
    return call, kwargs


def _streamed(
    call: LLMCall, endpoint: Endpoint, kwargs: Mapping[str, Any], result: Any, is_async: bool
) -> bool:
    """The request returned: a stream ends the span when it ends (True); a response is ended by
    the caller (False)."""
    if kwargs.get("stream") is True and isinstance(result, endpoint.stream_types):
        observe_stream(result, call, endpoint.stream_state(), is_async=is_async)
        return True
    return False


def _sync_method(original: Callable[..., Any], provider: str, endpoint: Endpoint) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(*args: Any, **kwargs: Any) -> Any:
        call, kwargs = _prepared(provider, endpoint, kwargs)
        call.start()  # a refused budget raises here
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if not _streamed(call, endpoint, kwargs, result, False) and call.claim():
            call.exit(_recorded(call, endpoint, result))
        return result

    return method


def _async_method(
    original: Callable[..., Awaitable[Any]], provider: str, endpoint: Endpoint
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def method(*args: Any, **kwargs: Any) -> Any:
        call, kwargs = _prepared(provider, endpoint, kwargs)
        await call.astart()  # the reservation is awaited; a refused budget raises here
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            await call.afail(exc)
            raise
        if not _streamed(call, endpoint, kwargs, result, True) and call.claim():
            await call.aexit(_recorded(call, endpoint, result))
        return result

    return method


def wrap(resource: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``resource.name`` (a bound method) by ``make(it)`` on this instance only; idempotent."""
    original = getattr(resource, name, None)
    if original is None or not callable(original) or getattr(original, WRAPPED, False):
        return
    method = make(original)
    setattr(method, WRAPPED, True)
    setattr(resource, name, method)


def wrap_calls(
    resource: Any, names: Sequence[str], provider: str, endpoint: Endpoint, *, is_async: bool
) -> None:
    """Trace each model-call method of ``names`` on ``resource`` as ``endpoint``."""
    method = _async_method if is_async else _sync_method
    for name in names:
        wrap(resource, name, lambda original: method(original, provider, endpoint))


def client_kind(client: Any) -> bool:
    """True for an async SDK client, False for a sync one (OpenAI, Azure, Anthropic, Bedrock, Vertex...:
    every Stainless-generated client derives from ``SyncAPIClient`` or ``AsyncAPIClient``)."""
    names = {cls.__name__ for cls in type(client).__mro__}
    if "AsyncAPIClient" in names:
        return True
    if "SyncAPIClient" in names:
        return False
    raise TypeError(f"instrument() needs an SDK client instance, not {type(client).__name__}")


def wrap_copies(client: Any, instrument: Callable[[Any], Any]) -> None:
    """``client.with_options(...)`` / ``client.copy(...)`` return a new client: instrument it too."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def copy(*args: Any, **kwargs: Any) -> Any:
            return instrument(original(*args, **kwargs))

        return copy

    for name in ("copy", "with_options"):
        wrap(client, name, make)
