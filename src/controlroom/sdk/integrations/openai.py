"""Trace an OpenAI client: every ``chat.completions.create`` / ``.parse`` and ``responses.create`` /
``.parse`` call (sync or async, streamed or not) becomes one LLM span with the request's messages,
the reply, the response model, token usage (cached and reasoning tokens included), latency and the
error, if any::

    import openai
    from controlroom.sdk.integrations.openai import instrument

    client = instrument(openai.OpenAI())

Only this client instance is instrumented (and the clients ``client.with_options(...)`` makes from it);
the ``openai`` package itself is left alone, and imported only when :func:`instrument` is called. The
``.stream(...)`` helpers of both endpoints go through ``create`` and are traced too. Errors
(``openai.APITimeoutError``, ``openai.APIStatusError`` and the rest) mark the span failed and reach the
caller unchanged. Inside :func:`controlroom.call_with_fallback`, each attempt's span carries its
``attempt``, ``retry_of`` and ``fallback_from``.

A streamed chat completion asks for usage in its last chunk (``stream_options={"include_usage": True}``)
unless the caller set ``stream_options``; its span ends when the stream is exhausted or closed.

Under a cost cap, the hold's input estimate counts, besides the messages (chat) or the input and
instructions (responses), the tool definitions (``tools``, chat's legacy ``functions``) and the output
schema (chat's ``response_format``; the Responses API's ``text`` and the ``text_format`` of ``parse``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from controlroom.sdk._tracing import LLMSpan
from controlroom.sdk.integrations._common import (
    Deferred,
    Endpoint,
    ProviderError,
    Request,
    as_int,
    attr,
    billed,
    client_kind,
    counts,
    given,
    joined_output,
    message_output,
    model_of,
    request_attributes,
    response_attributes,
    snapshot,
    wrap_calls,
    wrap_copies,
)

__all__ = ["instrument"]

ClientT = TypeVar("ClientT")

_REQUEST_ATTRIBUTES = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("seed", "gen_ai.request.seed"),
    ("reasoning_effort", "gen_ai.request.reasoning_effort"),
    ("service_tier", "gen_ai.request.service_tier"),
)
_CHAT_USAGE = (
    ("input_tokens", ("prompt_tokens",)),
    ("output_tokens", ("completion_tokens",)),
    ("cache_read_tokens", ("prompt_tokens_details", "cached_tokens")),
    ("reasoning_tokens", ("completion_tokens_details", "reasoning_tokens")),
)
_RESPONSES_USAGE = (
    ("input_tokens", ("input_tokens",)),
    ("output_tokens", ("output_tokens",)),
    ("cache_read_tokens", ("input_tokens_details", "cached_tokens")),
    ("reasoning_tokens", ("output_tokens_details", "reasoning_tokens")),
)


def instrument(client: ClientT, *, provider: str | None = None) -> ClientT:
    """Instrument an ``openai.OpenAI`` / ``openai.AsyncOpenAI`` (or Azure) client in place and return it.

    ``provider`` names the provider on the spans (default ``"openai"``, ``"azure.ai.openai"`` for an
    Azure client); set it for an OpenAI-compatible server (e.g. ``"groq"``, ``"deepseek"``) so that the
    calls are priced at that provider's prices. Calling it again on the same client changes nothing.
    """
    try:
        import openai
    except ImportError as exc:
        raise ImportError("controlroom's OpenAI integration needs the openai package") from exc
    is_async = client_kind(client)
    name = provider or ("azure.ai.openai" if "Azure" in type(client).__name__ else "openai")
    stream_types: tuple[type[Any], ...] = (openai.AsyncStream,) if is_async else (openai.Stream,)
    chat = getattr(client, "chat", None)
    if chat is not None:
        endpoint = Endpoint(
            operation="chat",
            describe=_chat_request,
            record=_chat_record,
            stream_state=_ChatStream,
            stream_types=stream_types,
            prepare=_chat_prepare,
        )
        wrap_calls(chat.completions, ("create", "parse"), name, endpoint, is_async=is_async)
    responses = getattr(client, "responses", None)
    if responses is not None:
        endpoint = Endpoint(
            operation="responses",
            describe=_responses_request,
            record=_responses_record,
            stream_state=_ResponsesStream,
            stream_types=stream_types,
        )
        wrap_calls(responses, ("create", "parse"), name, endpoint, is_async=is_async)
    wrap_copies(client, lambda copy: instrument(copy, provider=provider))
    return client


# -- shared --------------------------------------------------------------------------------------------


def _request_attributes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return request_attributes(kwargs, _REQUEST_ATTRIBUTES, (str, int, float))


def _output_type(value: Any, convert: Callable[[type], Any]) -> Any:
    """An output schema as the caller gave it; a type (``parse(response_format=Model)``) is converted to
    the schema the SDK sends for it, when a hold needs it."""
    return Deferred(functools.partial(convert, value)) if isinstance(value, type) else value


def _chat_format(output_type: type) -> Any:
    from openai.lib._parsing import type_to_response_format_param

    return type_to_response_format_param(output_type)


def _text_format(output_type: type) -> Any:
    from openai.lib._parsing._responses import type_to_text_format_param

    return {"format": type_to_text_format_param(output_type)}


# -- chat completions ------------------------------------------------------------------------------------


def _chat_request(kwargs: Mapping[str, Any]) -> Request:
    max_tokens = as_int(given(kwargs, "max_completion_tokens"))
    if max_tokens is None:
        max_tokens = as_int(given(kwargs, "max_tokens"))
    parts = billed(kwargs, "tools", "functions")
    response_format = given(kwargs, "response_format")
    if response_format is not None:
        parts.append(_output_type(response_format, _chat_format))
    return Request(
        model=model_of(kwargs),
        input=snapshot(given(kwargs, "messages")),
        max_tokens=max_tokens,
        attributes=_request_attributes(kwargs),
        billed=parts,
    )


def _chat_prepare(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("stream") is True and given(kwargs, "stream_options") is None:
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def _chat_usage(usage: Any) -> dict[str, int]:
    return counts(usage, _CHAT_USAGE)


def _tool_call(call: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": attr(call, "id")}
    function = attr(call, "function")
    if function is not None:
        out["name"] = attr(function, "name")
        out["arguments"] = attr(function, "arguments")
    else:  # a custom tool call
        custom = attr(call, "custom")
        out["name"] = attr(custom, "name")
        out["input"] = attr(custom, "input")
    return out


def _outputs(outputs: list[Any]) -> Any:
    if not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else outputs


def _chat_record(span: LLMSpan, response: Any) -> BaseException | None:
    outputs = []
    finish_reasons = []
    for choice in attr(response, "choices") or ():
        message = attr(choice, "message")
        calls = [_tool_call(c) for c in attr(message, "tool_calls") or ()]
        outputs.append(message_output(attr(message, "content"), calls, attr(message, "refusal")))
        reason = attr(choice, "finish_reason")
        if isinstance(reason, str):
            finish_reasons.append(reason)
    model = attr(response, "model")
    span.record(
        output=_outputs(outputs),
        usage=_chat_usage(attr(response, "usage")),
        model=model if isinstance(model, str) else None,
    )
    response_attributes(span, attr(response, "id"), finish_reasons)
    return None


class _ChatChoice:
    __slots__ = ("finish_reason", "refusal", "text", "tool_calls")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class _ChatStream:
    """Accumulates ``ChatCompletionChunk``s: text and tool calls per choice, the last chunk's usage."""

    def __init__(self) -> None:
        self.choices: dict[int, _ChatChoice] = {}
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, int] = {}

    def feed(self, chunk: Any) -> None:
        model = attr(chunk, "model")
        if isinstance(model, str) and model:
            self.model = model
        chunk_id = attr(chunk, "id")
        if isinstance(chunk_id, str) and chunk_id:
            self.response_id = chunk_id
        usage = attr(chunk, "usage")
        if usage is not None:
            self.usage = _chat_usage(usage)
        for choice in attr(chunk, "choices") or ():
            index = as_int(attr(choice, "index")) or 0
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = _ChatChoice()
            delta = attr(choice, "delta")
            content = attr(delta, "content")
            if isinstance(content, str):
                state.text.append(content)
            refusal = attr(delta, "refusal")
            if isinstance(refusal, str):
                state.refusal.append(refusal)
            for call in attr(delta, "tool_calls") or ():
                self._tool_delta(state, call)
            reason = attr(choice, "finish_reason")
            if isinstance(reason, str):
                state.finish_reason = reason

    @staticmethod
    def _tool_delta(state: _ChatChoice, delta: Any) -> None:
        index = as_int(attr(delta, "index")) or 0
        call = state.tool_calls.setdefault(index, {"id": None, "name": None, "arguments": ""})
        if attr(delta, "id"):
            call["id"] = attr(delta, "id")
        function = attr(delta, "function")
        name = attr(function, "name")
        if isinstance(name, str) and name:
            call["name"] = name
        arguments = attr(function, "arguments")
        if isinstance(arguments, str):
            call["arguments"] += arguments

    def record(self, span: LLMSpan) -> BaseException | None:
        outputs = []
        finish_reasons = []
        for index in sorted(self.choices):
            state = self.choices[index]
            calls = [state.tool_calls[i] for i in sorted(state.tool_calls)]
            outputs.append(joined_output(state.text, calls, "".join(state.refusal)))
            if state.finish_reason:
                finish_reasons.append(state.finish_reason)
        span.record(output=_outputs(outputs), usage=self.usage or None, model=self.model)
        response_attributes(span, self.response_id, finish_reasons)
        return None


# -- responses -----------------------------------------------------------------------------------------


def _responses_request(kwargs: Mapping[str, Any]) -> Request:
    input_ = snapshot(given(kwargs, "input"))
    instructions = given(kwargs, "instructions")
    if isinstance(instructions, str) and instructions:
        system = {"role": "system", "content": instructions}
        if isinstance(input_, str):
            input_ = [system, {"role": "user", "content": input_}]
        elif isinstance(input_, list):
            input_ = [system, *input_]
        else:
            input_ = {"instructions": instructions, "input": input_}
    parts = billed(kwargs, "tools", "text")
    text_format = given(kwargs, "text_format")  # responses.parse(text_format=Model): sent as text.format
    if text_format is not None:
        parts.append(_output_type(text_format, _text_format))
    return Request(
        model=model_of(kwargs),
        input=input_,
        max_tokens=as_int(given(kwargs, "max_output_tokens")),
        attributes=_request_attributes(kwargs),
        billed=parts,
    )


def _responses_output(response: Any) -> Any:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in attr(response, "output") or ():
        kind = attr(item, "type")
        if kind == "message":
            for part in attr(item, "content") or ():
                if attr(part, "type") == "output_text" and isinstance(attr(part, "text"), str):
                    texts.append(attr(part, "text"))
                elif attr(part, "type") == "refusal" and isinstance(attr(part, "refusal"), str):
                    texts.append(attr(part, "refusal"))
        elif kind == "function_call":
            calls.append(
                {
                    "id": attr(item, "call_id"),
                    "name": attr(item, "name"),
                    "arguments": attr(item, "arguments"),
                }
            )
    return joined_output(texts, calls)


def _responses_record(span: LLMSpan, response: Any) -> BaseException | None:
    model = attr(response, "model")
    span.record(
        output=_responses_output(response),
        usage=counts(attr(response, "usage"), _RESPONSES_USAGE) or None,
        model=model if isinstance(model, str) else None,
    )
    status = attr(response, "status")
    response_attributes(span, attr(response, "id"), [status] if isinstance(status, str) else [])
    if status == "failed":
        error = attr(response, "error")
        code = attr(error, "code")
        message = attr(error, "message")
        return ProviderError(f"{code or 'error'}: {message or 'the response failed'}")
    return None


class _ResponsesStream:
    """Accumulates Responses API stream events; the final ``response.*`` event carries the whole response."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.final: Any = None
        self.error: str | None = None

    def feed(self, event: Any) -> None:
        kind = attr(event, "type")
        if kind == "response.output_text.delta":
            delta = attr(event, "delta")
            if isinstance(delta, str):
                self.text.append(delta)
        elif kind in ("response.created", "response.in_progress"):
            if self.final is None:
                self.final = attr(event, "response")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = attr(event, "response")
        elif kind == "error":
            self.error = f"{attr(event, 'code') or 'error'}: {attr(event, 'message') or 'stream error'}"

    def record(self, span: LLMSpan) -> BaseException | None:
        failure: BaseException | None = None
        if self.final is not None:
            failure = _responses_record(span, self.final)
            if attr(self.final, "status") in ("in_progress", "queued") and self.text:
                span.record(output="".join(self.text))  # the stream stopped before the response completed
        elif self.text:
            span.record(output="".join(self.text))
        if self.error is not None:
            failure = ProviderError(self.error)
        return failure
