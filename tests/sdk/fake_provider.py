"""A fake model provider for the integration tests: a real HTTP server on a free loopback port that
speaks the OpenAI wire format (``POST /v1/chat/completions``, ``POST /v1/responses``) and the Anthropic
one (``POST /v1/messages``), JSON or server-sent events, so the real ``openai`` / ``anthropic`` clients
run unmodified against it (``base_url=fake.url + "/v1"`` for OpenAI, ``base_url=fake.url`` for Anthropic).

What each request gets is scripted: ``fake.script(Reply(...), Reply.error(429), Reply.hang())`` queues
replies, taken one per request in order (an empty queue answers ``Reply()``). Every request is kept in
``fake.requests``. Also: helpers to read a run back from the controlroom server.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import controlroom
from tests_support import wait_for

OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid value for 'messages'."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded."),
}
ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "messages: at least one message is required"),
    401: ("authentication_error", "invalid x-api-key"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class Reply:
    """One scripted answer. Token counts are as the API itself reports them: ``input_tokens`` is OpenAI's
    ``prompt_tokens`` / ``input_tokens`` (cached tokens included) or Anthropic's ``input_tokens`` (cache
    tokens NOT included); ``cached_tokens`` is OpenAI's ``cached_tokens`` / Anthropic's
    ``cache_read_input_tokens``; ``cache_write_tokens`` is Anthropic's ``cache_creation_input_tokens``."""

    text: str = "Hello from the fake provider."
    model: str | None = None  # None: the requested model
    input_tokens: int = 12
    output_tokens: int = 7
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tool_call: tuple[str, dict[str, Any]] | None = None  # (name, arguments): the model calls a tool
    status: int = 200
    message: str | None = None  # error message (default: the API's usual one for the status)
    delay: float = 0.0  # seconds before answering (released early when the server stops)
    chunks: int = 3  # how many deltas a streamed text is cut into
    fail_mid_stream: bool = False  # a streamed reply sends an error event after its first delta

    @classmethod
    def error(cls, status: int, message: str | None = None) -> Reply:
        return cls(status=status, message=message)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Reply:
        """Answer only after ``seconds``: longer than the client's timeout."""
        return cls(delay=seconds)

    def pieces(self) -> list[str]:
        n = max(1, min(self.chunks, len(self.text)))
        size = -(-len(self.text) // n)
        return [self.text[i : i + size] for i in range(0, len(self.text), size)] or [""]


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeProvider:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def take(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self.replies.popleft() if self.replies else Reply()

    def wait(self, seconds: float) -> None:
        self._release.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeProvider


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake = self.server.fake
        reply = fake.take(Received(self.path, body, {k.lower(): v for k, v in self.headers.items()}))
        try:
            if reply.delay:
                fake.wait(reply.delay)
            if self.path == "/v1/chat/completions":
                self._openai(reply, body, _chat_completion, _chat_events)
            elif self.path == "/v1/responses":
                self._openai(reply, body, _response, _response_events)
            elif self.path == "/v1/messages":
                self._anthropic(reply, body)
            else:
                self._json(
                    404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}}
                )
        except ConnectionError:  # the client gave up (its timeout) or closed a stream early
            self.close_connection = True

    # -- the two APIs ------------------------------------------------------------------------------------

    def _openai(self, reply: Reply, body: dict[str, Any], whole: Any, events: Any) -> None:
        if reply.status != 200:
            kind, code, message = OPENAI_ERRORS.get(reply.status, ("server_error", None, "Error"))
            error = {"message": reply.message or message, "type": kind, "param": None, "code": code}
            self._json(reply.status, {"error": error}, {"x-request-id": "req_fake"})
        elif body.get("stream"):
            self._sse(events(reply, body))
        else:
            self._json(200, whole(reply, body), {"x-request-id": "req_fake"})

    def _anthropic(self, reply: Reply, body: dict[str, Any]) -> None:
        if reply.status != 200:
            kind, message = ANTHROPIC_ERRORS.get(reply.status, ("api_error", "Error"))
            error = {"type": "error", "error": {"type": kind, "message": reply.message or message}}
            self._json(reply.status, error, {"request-id": "req_fake"})
        elif body.get("stream"):
            self._sse(_message_events(reply, body))
        else:
            self._json(200, _message(reply, body), {"request-id": "req_fake"})

    # -- writing ---------------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for name, data in events:
            text = (
                f"event: {name}\n" if name else ""
            ) + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            raw = text.encode()
            self.wfile.write(f"{len(raw):X}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# -- OpenAI chat completions ---------------------------------------------------------------------------------


def _model(reply: Reply, body: dict[str, Any]) -> str:
    return reply.model or str(body.get("model") or "unknown")


def _chat_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    finish = "stop"
    if reply.tool_call is not None:
        name, arguments = reply.tool_call
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
        finish = "tool_calls"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(reply, body),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _chat_usage(reply),
        "system_fingerprint": "fp_fake",
        "service_tier": "default",
    }


def _chat_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = _model(reply, body)
    base["system_fingerprint"] = "fp_fake"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None
        return out

    yield None, chunk({"role": "assistant", "content": "", "refusal": None})
    if reply.tool_call is not None:
        name, arguments = reply.tool_call
        raw = json.dumps(arguments)
        half = len(raw) // 2
        yield (
            None,
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": name, "arguments": raw[:half]},
                        }
                    ]
                }
            ),
        )
        yield None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[half:]}}]})
        finish = "tool_calls"
    else:
        for i, piece in enumerate(reply.pieces()):
            yield None, chunk({"content": piece})
            if reply.fail_mid_stream and i == 0:
                yield (
                    None,
                    {
                        "error": {
                            "message": "The server had an error while streaming.",
                            "type": "server_error",
                        }
                    },
                )
                return
        finish = "stop"
    yield None, chunk({}, finish)
    if include_usage:
        yield None, {**base, "choices": [], "usage": _chat_usage(reply)}
    yield None, "[DONE]"


# -- OpenAI responses ---------------------------------------------------------------------------------------


def _response(reply: Reply, body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    output: list[dict[str, Any]] = []
    if done:
        output.append(
            {
                "type": "message",
                "id": "msg_fake",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
            }
        )
    usage = {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": _model(reply, body),
        "output": output,
        "usage": usage if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
    }


def _response_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    yield event("response.created", response=_response(reply, body, "in_progress"))
    yield event("response.in_progress", response=_response(reply, body, "in_progress"))
    item = {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}
    yield event("response.output_item.added", output_index=0, item=item)
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event("response.content_part.added", item_id="msg_fake", output_index=0, content_index=0, part=part)
    for piece in reply.pieces():
        yield event(
            "response.output_text.delta",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            delta=piece,
            logprobs=[],
        )
    yield event(
        "response.output_text.done",
        item_id="msg_fake",
        output_index=0,
        content_index=0,
        text=reply.text,
        logprobs=[],
    )
    final = _response(reply, body)
    yield event(
        "response.content_part.done",
        item_id="msg_fake",
        output_index=0,
        content_index=0,
        part=final["output"][0]["content"][0],
    )
    yield event("response.output_item.done", output_index=0, item=final["output"][0])
    yield event("response.completed", response=final)


# -- Anthropic messages -------------------------------------------------------------------------------------


def _anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
    if reply.tool_call is not None:
        name, arguments = reply.tool_call
        blocks.append({"type": "tool_use", "id": "toolu_fake", "name": name, "input": arguments})
    return blocks


def _message(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": _model(reply, body),
        "content": _content(reply),
        "stop_reason": "tool_use" if reply.tool_call else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(reply, reply.output_tokens),
    }


def _message_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    start = {**_message(reply, body), "content": [], "stop_reason": None, "usage": _anthropic_usage(reply, 1)}
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield "ping", {"type": "ping"}
    for i, piece in enumerate(reply.pieces()):
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
        )
        if reply.fail_mid_stream and i == 0:
            yield "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    if reply.tool_call is not None:
        name, arguments = reply.tool_call
        raw = json.dumps(arguments)
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_fake", "name": name, "input": {}},
            },
        )
        for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": 1}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if reply.tool_call else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# -- reading runs back from controlroom ------------------------------------------------------------------


def fetch_run(live: Any, run_id: str, spans_expected: int, timeout: float = 15.0) -> dict[str, Any]:
    """Flush the SDK, then wait until the projector shows the run ended with ``spans_expected`` spans."""
    assert controlroom.flush(10)
    with live.client() as http:

        def ready() -> dict[str, Any] | None:
            r = http.get(f"/v1/runs/{run_id}")
            if r.status_code != 200:
                return None
            view: dict[str, Any] = r.json()
            spans = flat(view["spans"])
            done = view["status"] != "running" and len(spans) >= spans_expected
            return view if done and all(s["ended_at"] for s in spans) else None

        return wait_for(ready, timeout)


def flat(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for span in tree:
        out.append(span)
        out.extend(flat(span["children"]))
    return out


def llm_spans(view: dict[str, Any]) -> list[dict[str, Any]]:
    spans = [s for s in flat(view["spans"]) if s["kind"] == "llm"]
    return sorted(spans, key=lambda s: s["started_at"])
