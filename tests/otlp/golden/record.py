"""Records the golden OTLP payloads (one per attribute convention) with the real OpenTelemetry SDK.

Run it to re-record: ``.venv/bin/python tests/otlp/golden/record.py``. The payloads are committed;
the expected runs and costs in ``expected.json`` are written by hand from the providers' prices.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

sys.path.insert(0, str(Path(__file__).parents[1]))
from otel_helpers import recording_provider, to_otlp_json

HERE = Path(__file__).parent
T0 = 1_793_000_000 * 10**9  # 2026-10-26T09:33:20Z
MS = 10**6


class FixedIds(IdGenerator):
    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.spans = itertools.count(1)

    def generate_span_id(self) -> int:
        return 0x1000_0000_0000_0000 + next(self.spans)

    def generate_trace_id(self) -> int:
        return self.trace_id


def span(
    tracer: Any,
    name: str,
    start: int,
    end: int,
    attrs: dict[str, Any],
    error: str | None = None,
    exc: tuple[str, str] | None = None,
    children: Any = None,
) -> None:
    s = tracer.start_span(name, attributes=attrs, start_time=T0 + start * MS)
    from opentelemetry import trace

    with trace.use_span(s, end_on_exit=False):
        if children:
            children()
    if exc:
        s.add_event(
            "exception", {"exception.type": exc[0], "exception.message": exc[1]}, timestamp=T0 + end * MS
        )
    if error:
        s.set_status(Status(StatusCode.ERROR, error))
    s.end(end_time=T0 + end * MS)


def msgs(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def genai_current(tracer: Any) -> None:
    def children() -> None:
        span(
            tracer,
            "chat gpt-4o",
            10,
            900,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 2000,
                "gen_ai.usage.output_tokens": 500,
                "gen_ai.usage.cache_read.input_tokens": 1000,
                "gen_ai.input.messages": msgs("user", "plan a trip to Lisbon"),
                "gen_ai.output.messages": msgs("assistant", "day 1: Alfama"),
            },
        )
        span(
            tracer,
            "execute_tool search_flights",
            910,
            1200,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search_flights",
            },
        )
        span(
            tracer,
            "embeddings text-embedding-3-small",
            1210,
            1250,
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 100,
            },
        )

    span(
        tracer,
        "invoke_agent trip-planner",
        0,
        1300,
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "trip-planner",
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.usage.input_tokens": 2100,
            "gen_ai.usage.output_tokens": 500,
        },
        children=children,
    )


def genai_legacy(tracer: Any) -> None:
    def children() -> None:
        attrs = {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022"}
        span(
            tracer,
            "anthropic.chat",
            5,
            400,
            {**attrs, "error.type": "OverloadedError"},
            error="529 overloaded",
            exc=("anthropic.InternalServerError", "Error code: 529 - overloaded"),
        )
        span(
            tracer,
            "anthropic.chat",
            900,
            2000,
            {
                **attrs,
                "gen_ai.response.model": "claude-3-5-sonnet-20241022",
                "gen_ai.usage.prompt_tokens": 1000,
                "gen_ai.usage.completion_tokens": 200,
            },
        )

    span(tracer, "agent_run", 0, 2100, {"user.id": "u-7"}, children=children)


def openinference(tracer: Any) -> None:
    def wrapped() -> None:
        span(
            tracer,
            "ChatCompletion",
            1010,
            1400,
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": 100,
                "llm.token_count.completion": 10,
                "llm.cost.total": 0.01,
            },
        )

    def children() -> None:
        span(
            tracer,
            "ChatCompletion",
            10,
            1000,
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.system": "openai",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": 3000,
                "llm.token_count.completion": 400,
                "llm.token_count.prompt_details.cache_read": 2000,
                "input.value": json.dumps(
                    {"messages": [{"role": "user", "content": "summarise the ticket"}]}
                ),
                "input.mime_type": "application/json",
                "output.value": "The customer wants a refund.",
            },
        )
        span(
            tracer,
            "ChatOpenAI",
            1005,
            1500,
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": 100,
                "llm.token_count.completion": 10,
            },
            children=wrapped,
        )
        span(
            tracer, "lookup_customer", 1510, 1600, {"openinference.span.kind": "TOOL", "tool.name": "lookup"}
        )

    span(
        tracer,
        "support-agent",
        0,
        1700,
        {
            "openinference.span.kind": "AGENT",
            "agent.name": "ticket-triage",
            "session.id": "sess-9",
            "user.id": "u-3",
            "input.value": "ticket #12",
            "output.value": "refund approved",
        },
        children=children,
    )


def openllmetry(tracer: Any) -> None:
    def task() -> None:
        span(
            tracer,
            "openai.chat",
            20,
            700,
            {
                "llm.request.type": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.prompt_tokens": 500,
                "gen_ai.usage.completion_tokens": 100,
                "llm.usage.total_tokens": 600,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "where is my parcel?",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "It ships today.",
            },
        )

    def children() -> None:
        span(tracer, "answer.task", 10, 800, {"traceloop.span.kind": "task"}, children=task)
        span(
            tracer,
            "track_parcel.tool",
            810,
            850,
            {"traceloop.span.kind": "tool"},
            error="carrier API down",
            exc=("TimeoutError", "carrier API timed out"),
        )

    span(
        tracer,
        "support.workflow",
        0,
        900,
        {"traceloop.span.kind": "workflow", "traceloop.entity.name": "support"},
        error="carrier API down",
        children=children,
    )


CONVENTIONS = {
    "genai_current": (genai_current, 0xA1),
    "genai_legacy": (genai_legacy, 0xA2),
    "openinference": (openinference, 0xA3),
    "openllmetry": (openllmetry, 0xA4),
}


def main() -> None:
    for name, (build, trace_id) in CONVENTIONS.items():
        with recording_provider(service=f"{name}-service") as (provider, exporter):
            provider.id_generator = FixedIds(trace_id)
            build(provider.get_tracer(f"golden.{name}"))
            spans = exporter.get_finished_spans()
        (HERE / f"{name}.json").write_text(json.dumps(json.loads(to_otlp_json(spans)), indent=1) + "\n")
        print(f"wrote {name}.json ({len(spans)} spans)")


if __name__ == "__main__":
    assert isinstance(TracerProvider, type)
    main()
