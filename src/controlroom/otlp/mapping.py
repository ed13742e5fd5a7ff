"""OpenTelemetry spans -> run-log events, under every GenAI naming in use.

Trace -> run; each span -> one ``span.recorded`` event; a root span also gives the run its
``run.started`` and ``run.ended``. Conventions mapped: OpenTelemetry GenAI (current and legacy
attribute names), OpenInference (``openinference.span.kind``, ``llm.token_count.*``,
``llm.cost.*``, ``input.value``) and OpenLLMetry (``traceloop.span.kind``, ``gen_ai.prompt.N.*``).

Token usage is taken from model-call spans only (kind llm / embedding), so an agent span that
carries the roll-up of its children's usage is never counted twice; the projector also skips an
LLM span whose own children are model calls with usage.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from controlroom import events as ev
from controlroom.money import MAX_TOKENS
from controlroom.otlp.decode import Record
from controlroom.projections.fold import CALL_KINDS

OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "CHAIN": "chain",
    "TOOL": "tool",
    "AGENT": "agent",
    "RETRIEVER": "retrieval",
    "EMBEDDING": "embedding",
    "RERANKER": "retrieval",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "other",
    "PROMPT": "chain",
}
OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "completion": "llm",
    "embeddings": "embedding",
    "embedding": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "chain",
}
TRACELOOP_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
NAME_PREFIXES = (
    ("chat ", "llm"),
    ("text_completion ", "llm"),
    ("generate_content ", "llm"),
    ("embeddings ", "embedding"),
    ("execute_tool ", "tool"),
    ("invoke_agent ", "agent"),
)

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_KEYS = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model",
    "llm.model_name",
    "llm.request.model",
)
AGENT_KEYS = ("gen_ai.agent.name", "agent.name")
SESSION_KEYS = ("gen_ai.conversation.id", "session.id")
USER_KEYS = ("user.id", "enduser.id")
COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "operation.cost")
INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.cached_tokens",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
# Message content moves to the span's input / output instead of staying in its attributes.
CONTENT_PREFIXES = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "input.value",
    "output.value",
    "gen_ai.prompt",
    "gen_ai.completion",
    "llm.input_messages",
    "llm.output_messages",
    "traceloop.entity.input",
    "traceloop.entity.output",
)
MAX_ATTRIBUTE_CHARS = 16_384


def first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def span_kind(attrs: dict[str, Any], name: str) -> str:
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[oi.upper()]
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op in OPERATION_KINDS:
        return OPERATION_KINDS[op]
    tl = attrs.get("traceloop.span.kind")
    if isinstance(tl, str) and tl in TRACELOOP_KINDS:
        return TRACELOOP_KINDS[tl]
    if "llm.request.type" in attrs or any(
        k in attrs for k in (*INPUT_TOKEN_KEYS, *MODEL_KEYS, "gen_ai.system")
    ):
        return "llm"  # older GenAI conventions name no operation: a span about a model is a model call
    lowered = name.lower()
    for prefix, kind in NAME_PREFIXES:
        if lowered.startswith(prefix):
            return kind
    return "other"


def _count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    v = first(attrs, keys)
    if v is None:
        return None
    try:
        n = int(v)
    except (TypeError, ValueError):
        return None
    return n if 0 <= n <= MAX_TOKENS else None  # beyond it, not a count of one call


def usage(attrs: dict[str, Any]) -> dict[str, int] | None:
    """Token usage, normalised: input includes cached tokens, output includes reasoning tokens."""
    inp, out = _count(attrs, INPUT_TOKEN_KEYS), _count(attrs, OUTPUT_TOKEN_KEYS)
    cache_read, cache_write = _count(attrs, CACHE_READ_KEYS) or 0, _count(attrs, CACHE_WRITE_KEYS) or 0
    reasoning = _count(attrs, REASONING_KEYS) or 0
    if inp is None and out is None:
        return None
    inp, out = inp or 0, out or 0
    # Input includes cached tokens. Anthropic's API (and instrumentations that copy it) counts them
    # apart: when the cached tokens alone exceed the input count, the input did not include them.
    if inp < cache_read + cache_write:
        inp += cache_read + cache_write
    out = max(out, reasoning)
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
    }


def reported_cost(attrs: dict[str, Any]) -> str | None:
    v = first(attrs, COST_KEYS)
    if v is None or isinstance(v, bool):
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return None
    return str(d) if d.is_finite() and 0 <= d <= 10**6 else None


def _indexed_messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """OpenLLMetry's gen_ai.prompt.0.role / .content, gen_ai.completion.0.content ..."""
    out: dict[int, dict[str, Any]] = {}
    plen = len(prefix) + 1
    for k, v in attrs.items():
        if k.startswith(prefix + "."):
            idx, _, field = k[plen:].partition(".")
            if idx.isdigit() and field:
                out.setdefault(int(idx), {})[field] = v
    return [out[i] for i in sorted(out)] if out else None


def io(attrs: dict[str, Any]) -> tuple[Any, Any]:
    inp = first(attrs, ("gen_ai.input.messages", "input.value", "traceloop.entity.input"))
    out = first(attrs, ("gen_ai.output.messages", "output.value", "traceloop.entity.output"))
    if inp is None:
        inp = _indexed_messages(attrs, "gen_ai.prompt") or _indexed_messages(attrs, "llm.input_messages")
    if out is None:
        out = _indexed_messages(attrs, "gen_ai.completion") or _indexed_messages(attrs, "llm.output_messages")
    inp = _json_or_text(inp)
    system = _json_or_text(attrs.get("gen_ai.system_instructions"))
    if system is not None:
        inp = _with_system(system, inp)
    return inp, _json_or_text(out)


def _with_system(system: Any, inp: Any) -> Any:
    """GenAI's ``gen_ai.system_instructions`` (a list of parts, kept apart from the input messages)
    as the first message of the input, the way the SDK and the other conventions record it."""
    message = {"role": "system", "parts" if isinstance(system, list) else "content": system}
    if inp is None:
        return [message]
    if isinstance(inp, list):
        return [message, *inp]
    return {"system_instructions": system, "input": inp}


def error(rec: Record) -> dict[str, str] | None:
    attrs = rec["attributes"]
    exc = next((e["attributes"] for e in rec["events"] if e["name"] == "exception"), None)
    if rec["status_code"] != 2 and not (exc and attrs.get("error.type")):
        return None
    etype = attrs.get("error.type") or (exc or {}).get("exception.type") or "error"
    message = rec["status_message"] or (exc or {}).get("exception.message") or ""
    return {"type": str(etype)[:256], "message": str(message)[:8192]}


def _kept_attributes(rec: Record) -> dict[str, Any]:
    out = {}
    for k, v in rec["attributes"].items():
        if k.startswith(CONTENT_PREFIXES):
            continue
        if isinstance(v, str) and len(v) > MAX_ATTRIBUTE_CHARS:
            v = v[:MAX_ATTRIBUTE_CHARS] + "…"
        out[k] = v
    service = rec["resource"].get("service.name")
    if service is not None:
        out["service.name"] = service
    if rec["scope"]:
        out["otel.scope.name"] = rec["scope"]
    return out


def to_events(rec: Record) -> list[dict[str, Any]]:
    """The run-log events for one OTLP span (wire format; validated by ingest like any other)."""
    attrs = rec["attributes"]
    trace, span_id = rec["trace_id"], rec["span_id"]
    kind = span_kind(attrs, rec["name"])
    provider = first(attrs, PROVIDER_KEYS)
    model = first(attrs, MODEL_KEYS)
    inp, out = io(attrs)
    err = error(rec)
    start = rec["start_ns"]
    end = max(rec["end_ns"], start)
    body: dict[str, Any] = {
        "span_id": span_id,
        "kind": kind,
        "name": (rec["name"] or kind)[:256],
        "ended_at": end,
        "status": "error" if err else "ok",
        "attributes": _kept_attributes(rec),
    }
    if rec["parent_span_id"]:
        body["parent_span_id"] = rec["parent_span_id"]
    for key, value in (("input", inp), ("output", out), ("error", err)):
        if value is not None:
            body[key] = value
    if provider is not None:
        body["provider"] = str(provider)[:256]
    if model is not None:
        body["model"] = str(model)[:256]
    if kind in CALL_KINDS:
        u = usage(attrs)
        if u is not None:
            body["usage"] = u
        cost = reported_cost(attrs)
        if cost is not None:
            body["cost_usd"] = cost
    events = [
        {"id": f"{trace}{span_id}.otlp", "type": ev.SPAN_RECORDED, "run_id": trace, "ts": start, "body": body}
    ]
    if rec["parent_span_id"] is None:
        events += _run_events(rec, kind, inp, out, err, model, start, end)
    return events


def _run_events(
    rec: Record, kind: str, inp: Any, out: Any, err: dict[str, str] | None, model: Any, start: int, end: int
) -> list[dict[str, Any]]:
    attrs, resource, trace = rec["attributes"], rec["resource"], rec["trace_id"]
    agent = first(attrs, AGENT_KEYS) or rec["name"] or resource.get("service.name") or "unknown"
    started: dict[str, Any] = {"agent": str(agent)[:256]}
    if inp is not None:
        started["inputs"] = inp
    for key, value in (
        ("model", model),
        ("session_id", first(attrs, SESSION_KEYS)),
        ("user_id", first(attrs, USER_KEYS)),
        ("agent_version", resource.get("service.version")),
        (
            "environment",
            resource.get("deployment.environment.name") or resource.get("deployment.environment"),
        ),
    ):
        if value is not None:
            started[key] = str(value)[:256]
    tags = attrs.get("tag.tags")
    if isinstance(tags, list):
        started["tags"] = [str(t)[:256] for t in tags[:64]]
    # A failed root names no error of its own: the run's error is its failing span's (the projector
    # follows the errored spans down to the deepest one).
    ended: dict[str, Any] = {"status": "failed" if err else "succeeded"}
    if out is not None:
        ended["output"] = out
    return [
        {
            "id": f"{trace}{rec['span_id']}.run",
            "type": ev.RUN_STARTED,
            "run_id": trace,
            "ts": start,
            "body": started,
        },
        {
            "id": f"{trace}{rec['span_id']}.end",
            "type": ev.RUN_ENDED,
            "run_id": trace,
            "ts": end,
            "body": ended,
        },
    ]
