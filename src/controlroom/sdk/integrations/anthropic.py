"""Trace an Anthropic client: every ``messages.create`` call (sync or async, ``stream=True`` included),
``messages.parse`` call and ``messages.stream(...)`` helper stream becomes one LLM span with the
request's messages (the ``system`` prompt first), the reply, the response model, token usage, latency
and the error, if any::

    import anthropic
    from controlroom.sdk.integrations.anthropic import instrument

    client = instrument(anthropic.Anthropic())

Anthropic reports ``input_tokens`` WITHOUT the cached tokens; the span's usage follows controlroom's
rule instead: ``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``,
``cache_read_tokens = cache_read_input_tokens``, ``cache_write_tokens = cache_creation_input_tokens``.

Under a cost cap, the hold's input estimate counts, besides the system prompt and the messages, the tool
definitions (``tools``) and the output schema (``output_config``, and the ``output_format`` of ``parse``
and ``stream``).

Only this client instance is instrumented (and the clients ``client.with_options(...)`` makes from it);
the ``anthropic`` package is imported only when :func:`instrument` is called. Errors (timeouts,
``anthropic.APIStatusError`` and the rest) mark the span failed and reach the caller unchanged.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from controlroom.sdk._tracing import LLMSpan
from controlroom.sdk.integrations._common import (
    Deferred,
    Endpoint,
    LLMCall,
    Request,
    as_int,
    attr,
    billed,
    client_kind,
    counts,
    describe,
    given,
    guarded,
    joined_output,
    model_of,
    observe_stream,
    path,
    request_attributes,
    response_attributes,
    snapshot,
    wrap,
    wrap_calls,
    wrap_copies,
)

__all__ = ["instrument"]

ClientT = TypeVar("ClientT")

_REQUEST_ATTRIBUTES = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
)
#: Anthropic's usage fields, read as they are (:func:`usage_of` turns them into controlroom's)
_USAGE_FIELDS = tuple(
    (key, (key,))
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
)


def instrument(client: ClientT, *, provider: str | None = None) -> ClientT:
    """Instrument an ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` (or Bedrock / Vertex) client
    in place and return it. ``provider`` names the provider on the spans (default ``"anthropic"``,
    ``"aws.bedrock"`` or ``"gcp.vertex_ai"`` for those clients). Calling it again changes nothing."""
    try:
        import anthropic
    except ImportError as exc:
        raise ImportError("controlroom's Anthropic integration needs the anthropic package") from exc
    is_async = client_kind(client)
    kind = type(client).__name__
    name = provider or (
        "aws.bedrock" if "Bedrock" in kind else "gcp.vertex_ai" if "Vertex" in kind else "anthropic"
    )
    stream_types: tuple[type[Any], ...] = (anthropic.AsyncStream,) if is_async else (anthropic.Stream,)
    endpoint = Endpoint(
        operation="chat",
        describe=_request,
        record=_record,
        stream_state=_MessageStream,
        stream_types=stream_types,
    )
    messages = getattr(client, "messages", None)
    if messages is not None:
        wrap_calls(messages, ("create", "parse"), name, endpoint, is_async=is_async)
        wrap(messages, "stream", lambda original: _stream_method(original, name, endpoint, is_async))
    wrap_copies(client, lambda copy: instrument(copy, provider=provider))
    return client


# -- requests and responses ---------------------------------------------------------------------------


def _request(kwargs: Mapping[str, Any]) -> Request:
    messages = snapshot(given(kwargs, "messages"))
    system = given(kwargs, "system")
    if system is not None and isinstance(messages, list):
        messages = [{"role": "system", "content": system}, *messages]
    parts = billed(kwargs, "tools", "output_config")
    output_format = given(kwargs, "output_format")
    if isinstance(output_format, type):  # parse(output_format=Model): sent as output_config.format
        parts.append(Deferred(functools.partial(_output_format, output_format)))
    return Request(
        model=model_of(kwargs),
        input=messages,
        max_tokens=as_int(given(kwargs, "max_tokens")),
        attributes=request_attributes(kwargs, _REQUEST_ATTRIBUTES, (int, float)),
        billed=parts,
    )


def _output_format(output_type: type) -> Any:
    """The output format the SDK sends for ``output_format=output_type``."""
    import pydantic
    from anthropic.lib._parse._transform import transform_schema

    schema = transform_schema(pydantic.TypeAdapter(output_type).json_schema())
    return {"format": {"schema": schema, "type": "json_schema"}}


def usage_of(raw: Mapping[str, int]) -> dict[str, int]:
    """Anthropic's usage (``input_tokens`` without cache tokens) in controlroom's terms (with them)."""
    out: dict[str, int] = {}
    read = raw.get("cache_read_input_tokens")
    write = raw.get("cache_creation_input_tokens")
    if "input_tokens" in raw or read is not None or write is not None:
        out["input_tokens"] = raw.get("input_tokens", 0) + (read or 0) + (write or 0)
    if "output_tokens" in raw:
        out["output_tokens"] = raw["output_tokens"]
    if read is not None:
        out["cache_read_tokens"] = read
    if write is not None:
        out["cache_write_tokens"] = write
    return out


def _tool_use(block: Any, tool_input: Any) -> dict[str, Any]:
    return {"id": attr(block, "id"), "name": attr(block, "name"), "input": tool_input}


def _content_output(blocks: list[tuple[Any, str, Any]]) -> Any:
    """``(block, text, tool input)`` triples -> the reply's text, or a dict with its tool calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block, text, tool_input in blocks:
        kind = attr(block, "type")
        if kind == "text":
            texts.append(text)
        elif kind in ("tool_use", "server_tool_use"):
            calls.append(_tool_use(block, tool_input))
    return joined_output(texts, calls)


def _finish_reasons(stop_reason: Any) -> list[str]:
    return [stop_reason] if isinstance(stop_reason, str) and stop_reason else []


def _record(span: LLMSpan, message: Any) -> BaseException | None:
    blocks = [(b, attr(b, "text") or "", attr(b, "input")) for b in attr(message, "content") or ()]
    model = attr(message, "model")
    span.record(
        output=_content_output(blocks),
        usage=usage_of(counts(attr(message, "usage"), _USAGE_FIELDS)) or None,
        model=model if isinstance(model, str) else None,
    )
    response_attributes(span, attr(message, "id"), _finish_reasons(attr(message, "stop_reason")))
    return None


class _Block:
    __slots__ = ("block", "json", "text")

    def __init__(self, block: Any) -> None:
        self.block = block
        text = attr(block, "text")
        self.text: list[str] = [text] if isinstance(text, str) else []
        self.json: list[str] = []

    def tool_input(self) -> Any:
        if not self.json:
            return attr(self.block, "input")
        raw = "".join(self.json)
        try:
            return json.loads(raw)
        except ValueError:
            return raw


class _MessageStream:
    """Accumulates raw message stream events: ``message_start`` (model, input usage), content block
    deltas, ``message_delta`` (cumulative usage, stop reason)."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.message_id: str | None = None
        self.stop_reason: str | None = None
        self.usage: dict[str, int] = {}
        self.blocks: dict[int, _Block] = {}

    def feed(self, event: Any) -> None:
        kind = attr(event, "type")
        if kind == "content_block_delta":
            block = self.blocks.get(as_int(attr(event, "index")) or 0)
            delta = attr(event, "delta")
            delta_kind = attr(delta, "type")
            if block is None:
                return
            if delta_kind == "text_delta" and isinstance(attr(delta, "text"), str):
                block.text.append(attr(delta, "text"))
            elif delta_kind == "input_json_delta" and isinstance(attr(delta, "partial_json"), str):
                block.json.append(attr(delta, "partial_json"))
        elif kind == "content_block_start":
            self.blocks[as_int(attr(event, "index")) or 0] = _Block(attr(event, "content_block"))
        elif kind == "message_start":
            message = attr(event, "message")
            model = attr(message, "model")
            if isinstance(model, str) and model:
                self.model = model
            message_id = attr(message, "id")
            if isinstance(message_id, str):
                self.message_id = message_id
            counts(attr(message, "usage"), _USAGE_FIELDS, self.usage)
        elif kind == "message_delta":
            counts(attr(event, "usage"), _USAGE_FIELDS, self.usage)
            reason = path(event, "delta", "stop_reason")
            if isinstance(reason, str):
                self.stop_reason = reason

    def record(self, span: LLMSpan) -> BaseException | None:
        blocks = [(b.block, "".join(b.text), b.tool_input()) for _, b in sorted(self.blocks.items())]
        span.record(
            output=_content_output(blocks) if blocks else None,
            usage=usage_of(self.usage) or None,
            model=self.model,
        )
        response_attributes(span, self.message_id, _finish_reasons(self.stop_reason))
        return None


# -- the messages.stream(...) helper -------------------------------------------------------------------


def _stream_method(
    original: Callable[..., Any], provider: str, endpoint: Endpoint, is_async: bool
) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(*args: Any, **kwargs: Any) -> Any:
        manager = original(*args, **kwargs)
        request = {**kwargs, "stream": True}
        if is_async:
            return _AsyncStreamManager(manager, provider, endpoint, request)
        return _StreamManager(manager, provider, endpoint, request)

    return stream


class _ManagerBase:
    """Wraps a ``MessageStreamManager``: the span starts when the ``with`` block opens the stream and
    ends when the stream is exhausted or the block closes it."""

    def __init__(self, manager: Any, provider: str, endpoint: Endpoint, kwargs: Mapping[str, Any]) -> None:
        self._manager = manager
        self._provider = provider
        self._endpoint = endpoint
        self._kwargs = kwargs
        self._call: LLMCall | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_manager":
            raise AttributeError(name)
        return getattr(self._manager, name)

    def _new_call(self) -> LLMCall:
        call = self._call = LLMCall(self._provider, describe(self._endpoint, self._kwargs))
        return call

    def _opened(self, call: LLMCall, message_stream: Any, is_async: bool) -> None:
        raw = None
        with guarded:
            raw = message_stream._raw_stream
        if raw is not None:
            observe_stream(raw, call, self._endpoint.stream_state(), is_async=is_async)

    def _unended(self) -> LLMCall | None:
        """The block ended: the call, if the stream did not end its span (to end it now, without
        its events)."""
        call = self._call
        return call if call is not None and call.claim() else None


class _StreamManager(_ManagerBase):
    def __enter__(self) -> Any:
        call = self._new_call()
        call.start()
        try:
            message_stream = self._manager.__enter__()
        except BaseException as exc:
            call.fail(exc)
            raise
        self._opened(call, message_stream, is_async=False)
        return message_stream

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self._manager.__exit__(et, e, tb)
        finally:
            if call := self._unended():
                call.exit(None)


class _AsyncStreamManager(_ManagerBase):
    async def __aenter__(self) -> Any:
        call = self._new_call()
        await call.astart()
        try:
            message_stream = await self._manager.__aenter__()
        except BaseException as exc:
            await call.afail(exc)
            raise
        self._opened(call, message_stream, is_async=True)
        return message_stream

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self._manager.__aexit__(et, e, tb)
        finally:
            if call := self._unended():
                await call.aexit(None)
