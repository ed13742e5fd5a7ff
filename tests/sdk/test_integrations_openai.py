"""The OpenAI integration: the real ``openai`` client, pointed at a fake provider, traced into a real
controlroom server; each run is read back through the API (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
from fake_provider import FakeProvider, Reply, fetch_run, llm_spans

import controlroom
from conftest import LiveServer
from controlroom.sdk.integrations import instrument_openai
from controlroom.sdk.integrations.openai import instrument
from tests_support import wait_for

MINI = "gpt-4o-mini-2024-07-18"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is order 42?"}]
# gpt-4o-mini, USD per million tokens
IN, CACHED_IN, OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")


def mini_cost(input_tokens: int, cached: int, output_tokens: int) -> Decimal:
    return ((input_tokens - cached) * IN + cached * CACHED_IN + output_tokens * OUT) / 1_000_000


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as c:
        assert instrument(c) is c
        yield c


def test_a_chat_completion_is_one_llm_span_with_usage_cost_and_output(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(
        Reply(
            text="It shipped yesterday.",
            model=MINI,
            input_tokens=1200,
            cached_tokens=1000,
            output_tokens=300,
            reasoning_tokens=100,
        )
    )
    with controlroom.run("support-bot") as run:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=500, temperature=0.2
        )
    assert isinstance(completion, openai.types.chat.ChatCompletion)  # the caller gets the real response
    assert completion.choices[0].message.content == "It shipped yesterday."

    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["provider"] == "openai" and span["model"] == MINI  # the response model
    assert span["name"] == "openai.gpt-4o-mini" and span["status"] == "ok" and span["error"] is None
    assert span["input"] == MESSAGES
    assert span["output"] == "It shipped yesterday."
    assert span["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "reasoning_tokens": 100,
    }
    expected = mini_cost(1200, 1000, 300)  # 200 x 0.15 + 1000 x 0.075 + 300 x 0.60 per M
    assert expected == Decimal("0.000285")
    assert Decimal(span["cost_usd"]) == expected and span["cost_source"] == "computed"
    assert Decimal(view["cost_usd"]) == expected
    attributes = span["attributes"]
    assert attributes["gen_ai.request.max_tokens"] == 500 and attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.response.id"] == "chatcmpl-fake"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert span["duration_ms"] is not None and span["duration_ms"] > 0
    assert view["status"] == "succeeded"


class Order(pydantic.BaseModel):
    order: int
    state: str


def test_a_tool_call_parse_and_the_responses_api(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(
        Reply(tool_call=("lookup_order", {"order_id": 42}), model=MINI, input_tokens=50, output_tokens=20),
        Reply(text='{"order": 42, "state": "shipped"}', model=MINI, input_tokens=60, output_tokens=12),
        Reply(
            text="Order 42 shipped.",
            model=MINI,
            input_tokens=2000,
            cached_tokens=1500,
            output_tokens=40,
            reasoning_tokens=8,
        ),
    )
    with controlroom.run("support-bot") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=64)
        parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Order)
        response = client.responses.create(
            model="gpt-4o-mini", instructions="Be brief.", input="Where is 42?", max_output_tokens=128
        )
    assert response.output_text == "Order 42 shipped."
    assert parsed.choices[0].message.parsed == Order(order=42, state="shipped")

    tool, structured, answer = llm_spans(fetch_run(traced, run.run_id, 3))
    assert tool["output"] == {
        "content": None,
        "tool_calls": [{"id": "call_1", "name": "lookup_order", "arguments": '{"order_id": 42}'}],
    }
    assert tool["attributes"]["gen_ai.request.max_tokens"] == 64
    assert tool["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert (
        structured["output"] == '{"order": 42, "state": "shipped"}'
        and structured["usage"]["input_tokens"] == 60
    )
    assert Decimal(structured["cost_usd"]) == mini_cost(60, 0, 12)
    assert answer["model"] == MINI and answer["attributes"]["gen_ai.operation.name"] == "responses"
    assert answer["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is 42?"},
    ]
    assert answer["output"] == "Order 42 shipped."
    assert answer["attributes"]["gen_ai.request.max_tokens"] == 128
    assert answer["usage"] == {
        "input_tokens": 2000,
        "output_tokens": 40,
        "cache_read_tokens": 1500,
        "cache_write_tokens": 0,
        "reasoning_tokens": 8,
    }
    assert Decimal(answer["cost_usd"]) == mini_cost(2000, 1500, 40)


def test_a_streamed_chat_completion_asks_for_usage_and_ends_when_exhausted(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(
        Reply(
            text="Shipped, arriving Friday.",
            model=MINI,
            input_tokens=400,
            cached_tokens=256,
            output_tokens=30,
            chunks=4,
        )
    )
    with controlroom.run("support-bot") as run:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert isinstance(stream, openai.Stream)  # still the SDK's own stream
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        with controlroom.tool("after_the_stream"):
            pass
    assert text == "Shipped, arriving Friday."
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}

    view = fetch_run(traced, run.run_id, 2)
    [span] = llm_spans(view)
    assert span["output"] == "Shipped, arriving Friday." and span["model"] == MINI and span["status"] == "ok"
    assert span["usage"]["input_tokens"] == 400 and span["usage"]["cache_read_tokens"] == 256
    assert Decimal(span["cost_usd"]) == mini_cost(400, 256, 30)
    assert span["attributes"]["gen_ai.request.stream"] is True
    assert "gen_ai.stream.closed_early" not in span["attributes"]
    assert span["attributes"]["gen_ai.response.time_to_first_chunk_ms"] >= 0
    tool = next(s for s in view["spans"] if s["name"] == "after_the_stream")
    assert tool["parent_span_id"] is None  # the stream's span is not the current span after create()
    assert span["ended_at"] <= tool["started_at"]


def test_stream_options_the_caller_set_are_kept(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    with controlroom.run("support-bot") as run:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
        )
        for _ in stream:
            pass
    assert fake.requests[0].body["stream_options"] == {"include_usage": False}
    [span] = llm_spans(fetch_run(traced, run.run_id, 1))
    assert span["output"] == Reply().text and span["usage"] is None and span["cost_usd"] is None


def test_a_stream_closed_early_ends_its_span_with_what_it_read(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    reply = Reply(text="one two three four", chunks=4)
    fake.script(reply)
    with (
        controlroom.run("support-bot") as run,
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream,
    ):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    [span] = llm_spans(fetch_run(traced, run.run_id, 1))
    assert span["status"] == "ok" and span["output"] == reply.pieces()[0] == "one t"
    assert span["attributes"]["gen_ai.stream.closed_early"] is True


def test_the_stream_helpers_are_traced_through_create(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(
        Reply(text="From the chat helper.", model=MINI, input_tokens=90, output_tokens=9),
        Reply(text="From the responses helper.", model=MINI, input_tokens=80, output_tokens=8),
    )
    with controlroom.run("support-bot") as run:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as chat_stream:
            final = chat_stream.get_final_completion()
        with client.responses.stream(model="gpt-4o-mini", input="Hi") as response_stream:
            response = response_stream.get_final_response()
    assert final.choices[0].message.content == "From the chat helper."
    assert response.output_text == "From the responses helper."
    chat, responses = llm_spans(fetch_run(traced, run.run_id, 2))
    assert chat["output"] == "From the chat helper." and chat["usage"]["input_tokens"] == 90
    assert responses["output"] == "From the responses helper." and responses["usage"]["output_tokens"] == 8
    assert Decimal(responses["cost_usd"]) == mini_cost(80, 0, 8)


def test_async_calls_and_streams(traced: LiveServer, fake: FakeProvider) -> None:
    fake.script(
        Reply(text="async answer", model=MINI, input_tokens=100, output_tokens=10),
        Reply(text="async stream", model=MINI, input_tokens=200, cached_tokens=128, output_tokens=20),
        Reply(
            text="async responses stream", model=MINI, input_tokens=300, output_tokens=30, reasoning_tokens=12
        ),
        Reply(text="closed early", model=MINI, chunks=2),
    )

    async def agent() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as raw:
            client = instrument_openai(raw)
            out = []
            async with controlroom.run("async-bot") as run:
                completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                out.append(completion.choices[0].message.content or "")
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True
                )
                assert isinstance(stream, openai.AsyncStream)
                out.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
                events = await client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
                out.append("".join([e.delta async for e in events if e.type == "response.output_text.delta"]))
                early = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True
                )
                async for chunk in early:
                    if chunk.choices and chunk.choices[0].delta.content:
                        out.append(chunk.choices[0].delta.content)
                        break
                await early.close()
            out.append(run.run_id)
            return out

    *texts, run_id = asyncio.run(agent())
    assert texts == ["async answer", "async stream", "async responses stream", "closed"]
    first, second, third, early = llm_spans(fetch_run(traced, run_id, 4))
    assert [s["output"] for s in (first, second, third, early)] == texts
    assert early["attributes"]["gen_ai.stream.closed_early"] is True and early["status"] == "ok"
    assert first["usage"]["input_tokens"] == 100 and Decimal(first["cost_usd"]) == mini_cost(100, 0, 10)
    assert second["usage"]["cache_read_tokens"] == 128 and Decimal(second["cost_usd"]) == mini_cost(
        200, 128, 20
    )
    assert third["usage"]["reasoning_tokens"] == 12 and Decimal(third["cost_usd"]) == mini_cost(300, 0, 30)
    assert all(s["model"] == MINI and s["status"] == "ok" for s in (first, second, third))


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (400, openai.BadRequestError)],
)
def test_a_provider_error_fails_the_span_and_the_run_and_reaches_the_agent_unchanged(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI, status: int, error: type[Exception]
) -> None:
    fake.script(Reply.error(status))
    with pytest.raises(error) as raised, controlroom.run("support-bot") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.type is error and raised.value.status_code == status  # type: ignore[attr-defined]

    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == error.__name__
    assert (
        span["error"]["message"] == str(raised.value) and f"Error code: {status}" in span["error"]["message"]
    )
    assert span["attributes"]["http.response.status_code"] == status
    assert span["usage"] is None and span["model"] == "gpt-4o-mini"
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]
    assert view["error"]["type"] == error.__name__


def test_a_timeout_fails_the_span_with_the_timeout_error(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(Reply.hang())
    impatient = client.with_options(timeout=0.3)  # a copy of the client, instrumented too
    with pytest.raises(openai.APITimeoutError), controlroom.run("support-bot") as run:
        impatient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"] == {
        "type": "APITimeoutError",
        "message": "Request timed out.",
    }
    assert span["duration_ms"] >= 300
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]


def test_an_error_in_the_middle_of_a_stream_fails_its_span(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    reply = Reply(text="partial answer", chunks=2, fail_mid_stream=True)
    fake.script(reply)
    with pytest.raises(openai.APIError, match="error while streaming"), controlroom.run("support-bot") as run:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == "APIError"
    assert span["output"] == reply.pieces()[0] == "partial"
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]


def test_call_with_fallback_retries_then_falls_back_through_the_client(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    fake.script(
        Reply.error(500),
        Reply.error(429),
        Reply.error(500),
        Reply(text="from the fallback", model=MINI, input_tokens=100, output_tokens=10),
    )
    with controlroom.run("support-bot") as run:
        completion = controlroom.call_with_fallback(
            lambda m: client.chat.completions.create(model=m, messages=MESSAGES),
            ["gpt-4o", "gpt-4o-mini"],
            retries=2,
            backoff=0,
        )
    assert completion.choices[0].message.content == "from the fallback"
    assert [r.body["model"] for r in fake.requests] == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini"]

    view = fetch_run(traced, run.run_id, 4)
    spans = llm_spans(view)
    assert len(spans) == 4
    first, second, third, fallback = spans
    assert [s["attempt"] for s in spans] == [1, 2, 3, 1]
    assert [s["model"] for s in spans] == ["gpt-4o", "gpt-4o", "gpt-4o", MINI]
    assert [s["status"] for s in spans] == ["error", "error", "error", "ok"]
    assert [s["error"]["type"] for s in (first, second, third)] == [
        "InternalServerError",
        "RateLimitError",
        "InternalServerError",
    ]
    assert first["retry_of"] is None and first["fallback_from"] is None
    assert second["retry_of"] == first["span_id"] and third["retry_of"] == second["span_id"]
    assert fallback["fallback_from"] == third["span_id"] and fallback["retry_of"] is None
    assert fallback["output"] == "from the fallback" and Decimal(fallback["cost_usd"]) == mini_cost(
        100, 0, 10
    )
    assert view["status"] == "succeeded" and view["counts"]["retry"] >= 2


def test_a_call_outside_any_run_is_a_run_of_its_own(
    traced: LiveServer, fake: FakeProvider, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert controlroom.current_run() is None and controlroom.current_span() is None
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == Reply().text
    assert controlroom.flush(10)
    with traced.client() as http:

        def both_ended() -> list[dict[str, Any]] | None:
            runs: list[dict[str, Any]] = http.get("/v1/runs", params={"agent": "openai.gpt-4o-mini"}).json()[
                "runs"
            ]
            return runs if len(runs) == 2 and all(r["status"] == "succeeded" for r in runs) else None

        runs = wait_for(both_ended)
    for summary in runs:
        [span] = llm_spans(fetch_run(traced, summary["run_id"], 1))
        assert span["output"] == Reply().text and span["usage"]["input_tokens"] == Reply().input_tokens


def test_instrumenting_is_per_instance_and_idempotent(traced: LiveServer, fake: FakeProvider) -> None:
    with (
        openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as plain,
        openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as traced_client,
    ):
        instrument(instrument(traced_client))
        with controlroom.run("support-bot") as run:
            plain.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            traced_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(fake.requests) == 2
        assert type(plain.chat.completions).create is type(traced_client.chat.completions).create
    assert len(llm_spans(fetch_run(traced, run.run_id, 1))) == 1


def test_instrumentation_failures_never_break_the_call(
    traced: LiveServer,
    fake: FakeProvider,
    client: openai.OpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controlroom.sdk.integrations import openai as integration

    def broken(usage: Any) -> dict[str, int]:
        raise RuntimeError("bug in the integration")

    monkeypatch.setattr(integration, "_chat_usage", broken)
    controlroom.init(
        url=traced.url, api_key=traced.key, spool_dir=tmp_path / "spool2", strict=False, flush_interval=0.05
    )
    with controlroom.run("support-bot") as run:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert completion.choices[0].message.content == streamed == Reply().text
    spans = llm_spans(fetch_run(traced, run.run_id, 2))
    assert [s["status"] for s in spans] == ["ok", "ok"]  # ended, without what the bug lost

    controlroom.init(url=traced.url, api_key=traced.key, spool_dir=tmp_path / "spool3", strict=True)
    with pytest.raises(RuntimeError, match="bug in the integration"):  # strict (tests): surfaced
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_controlroom_works_without_openai_or_anthropic(traced: LiveServer, tmp_path: Path) -> None:
    script = """
import sys
sys.modules["openai"] = None  # as if not installed
sys.modules["anthropic"] = None
import controlroom
from controlroom.sdk.integrations import instrument_anthropic, instrument_openai
import controlroom.sdk.integrations.openai, controlroom.sdk.integrations.anthropic
controlroom.init(url=sys.argv[1], api_key=sys.argv[2], spool_dir=sys.argv[3], strict=True)
with controlroom.run("no-sdk") as run:
    with controlroom.llm("openai", "gpt-4o-mini") as call:
        call.record(output="ok", input_tokens=10, output_tokens=2)
for instrument in (instrument_openai, instrument_anthropic):
    try:
        instrument(object())
    except ImportError as e:
        assert "needs the" in str(e), e
    else:
        raise AssertionError("instrument() without the package must raise ImportError")
assert controlroom.flush(10)
controlroom.shutdown()
print(run.run_id)
"""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-c", script, traced.url, traced.key, str(tmp_path / "sub-spool")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [span] = llm_spans(fetch_run(traced, done.stdout.strip(), 1))
    assert span["output"] == "ok" and span["usage"]["input_tokens"] == 10
