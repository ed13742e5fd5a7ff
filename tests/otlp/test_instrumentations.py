"""Third-party OpenTelemetry instrumentations of the real `openai` client, exporting to controlroom:
OpenInference (openinference-instrumentation-openai) and OpenLLMetry
(opentelemetry-instrumentation-openai), against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_provider import FakeProvider, Reply
from otel_helpers import exporting_provider

from conftest import LiveServer
from tests_support import wait_for


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


def flat(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for s in tree for x in (s, *flat(s["children"]))]


def run_with_llm_span(live: LiveServer, run_id: str) -> dict[str, Any]:
    with live.client() as http:

        def ready() -> dict[str, Any] | None:
            r = http.get(f"/v1/runs/{run_id}")
            ok = r.status_code == 200 and r.json()["status"] == "succeeded" and r.json()["counts"]["llm"] == 1
            return r.json() if ok else None

        return wait_for(ready)


def agent_calls_openai(live: LiveServer, fake: FakeProvider, instrumentor: Any) -> dict[str, Any]:
    import openai

    fake.script(
        Reply(
            text="Your order ships today.",
            model="gpt-4o-mini-2024-07-18",
            input_tokens=1200,
            cached_tokens=200,
            output_tokens=300,
        )
    )
    with exporting_provider(live.url, live.key, service="shop-assistant") as provider:
        instrumentor.instrument(tracer_provider=provider)
        try:
            client = openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0)
            with provider.get_tracer("agent").start_as_current_span("shop-assistant") as root:
                run_id = format(root.get_span_context().trace_id, "032x")
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "where is order 42?"}]
                )
            client.close()
        finally:
            instrumentor.uninstrument()
    return run_with_llm_span(live, run_id)


# gpt-4o-mini: $0.15 per million input tokens, $0.075 cached, $0.60 output
EXPECTED_COST = (1000 * 0.15 + 200 * 0.075 + 300 * 0.60) / 1e6


def check(view: dict[str, Any]) -> dict[str, Any]:
    assert view["agent"] == "shop-assistant"
    (call,) = [s for s in flat(view["spans"]) if s["kind"] == "llm"]
    assert call["model"] == "gpt-4o-mini-2024-07-18"
    assert call["usage"]["input_tokens"] == 1200 and call["usage"]["output_tokens"] == 300
    assert float(call["cost_usd"]) == pytest.approx(EXPECTED_COST, abs=1e-12)
    assert float(view["cost_usd"]) == pytest.approx(EXPECTED_COST, abs=1e-12)
    return call


def test_openinference_instrumented_openai_client(live: LiveServer, fake: FakeProvider) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    call = check(agent_calls_openai(live, fake, OpenAIInstrumentor()))
    assert call["usage"]["cache_read_tokens"] == 200
    assert call["provider"] == "openai"
    assert "where is order 42?" in str(call["input"]) and "ships today" in str(call["output"])


# OpenLLMetry's own modules use pydantic's deprecated class-based config: not ours to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_openllmetry_instrumented_openai_client(live: LiveServer, fake: FakeProvider) -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    call = check(agent_calls_openai(live, fake, OpenAIInstrumentor()))
    assert call["provider"] == "openai"
