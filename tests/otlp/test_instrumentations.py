"""Third-party OpenTelemetry instrumentations of the real `openai` client, exporting to controlroom:
OpenInference (openinference-instrumentation-openai) and OpenLLMetry
(opentelemetry-instrumentation-openai), against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider, Reply
from otel_helpers import flat

from conftest import LiveServer
from tests_support import wait_for


def run_with_llm_span(live: LiveServer, run_id: str) -> dict[str, Any]:
    with live.client() as http:

        def ready() -> dict[str, Any] | None:
            r = http.get(f"/v1/runs/{run_id}")
            ok = r.status_code == 200 and r.json()["status"] == "succeeded" and r.json()["counts"]["llm"] == 1
            return r.json() if ok else None

        return wait_for(ready)


AGENT = """
import sys
import openai
from otel_helpers import exporting_provider

url, key, fake_url, which = sys.argv[1:5]
if which == "openinference":
    from openinference.instrumentation.openai import OpenAIInstrumentor
else:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # OpenLLMetry's own pydantic usage
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
with exporting_provider(url, key, service="shop-assistant") as provider:
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=fake_url + "/v1", api_key="test", max_retries=0)
    with provider.get_tracer("agent").start_as_current_span("shop-assistant") as root:
        print(format(root.get_span_context().trace_id, "032x"))
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "where is order 42?"}])
"""


def agent_calls_openai(live: LiveServer, fake: FakeProvider, which: str) -> dict[str, Any]:
    """The instrumented agent runs in a process of its own: instrumentors patch the openai module
    globally, and must not leak into other tests."""
    fake.script(
        Reply(
            text="Your order ships today.",
            model="gpt-4o-mini-2024-07-18",
            input_tokens=1200,
            cached_tokens=200,
            output_tokens=300,
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", AGENT, live.url, live.key, fake.url, which],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return run_with_llm_span(live, done.stdout.strip())


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
    call = check(agent_calls_openai(live, fake, "openinference"))
    assert call["usage"]["cache_read_tokens"] == 200
    assert call["provider"] == "openai"
    assert "where is order 42?" in str(call["input"]) and "ships today" in str(call["output"])


def test_openllmetry_instrumented_openai_client(live: LiveServer, fake: FakeProvider) -> None:
    call = check(agent_calls_openai(live, fake, "openllmetry"))
    assert call["provider"] == "openai"
