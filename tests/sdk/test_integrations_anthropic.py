"""The Anthropic integration: the real ``anthropic`` client, pointed at a fake provider, traced into a
real controlroom server; each run is read back through the API (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import pydantic
import pytest
from fake_provider import FakeProvider, Reply, fetch_run, llm_spans

import controlroom
from conftest import LiveServer
from controlroom.sdk.integrations import instrument_anthropic
from controlroom.sdk.integrations.anthropic import instrument, usage_of

HAIKU = "claude-haiku-4-5-20251001"
MESSAGES = [{"role": "user", "content": "Where is order 42?"}]
# claude-haiku-4-5, USD per million tokens
IN, CACHE_READ, CACHE_WRITE, OUT = Decimal("1"), Decimal("0.10"), Decimal("1.25"), Decimal("5")


def haiku_cost(uncached_input: int, cache_read: int, cache_write: int, output_tokens: int) -> Decimal:
    return (
        uncached_input * IN + cache_read * CACHE_READ + cache_write * CACHE_WRITE + output_tokens * OUT
    ) / 10**6


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0) as c:
        assert instrument(c) is c
        yield c


def test_usage_counts_cache_tokens_as_input() -> None:
    raw = {
        "input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "output_tokens": 300,
    }
    assert usage_of(raw) == {
        "input_tokens": 2600,
        "output_tokens": 300,
        "cache_read_tokens": 2000,
        "cache_write_tokens": 500,
    }
    assert usage_of({"input_tokens": 7, "output_tokens": 1}) == {"input_tokens": 7, "output_tokens": 1}


def test_a_message_is_one_llm_span_with_cache_usage_and_cost(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic
) -> None:
    fake.script(
        Reply(
            text="It shipped yesterday.",
            model=HAIKU,
            input_tokens=100,
            cached_tokens=2000,
            cache_write_tokens=500,
            output_tokens=300,
            tool_call=("track", {"order_id": 42}),
        )
    )
    with controlroom.run("support-bot") as run:
        message = client.messages.create(
            model="claude-haiku-4-5", max_tokens=1024, system="Be brief.", messages=MESSAGES
        )
    assert isinstance(message, anthropic.types.Message) and message.model == HAIKU

    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["provider"] == "anthropic" and span["model"] == HAIKU and span["status"] == "ok"
    assert span["input"] == [{"role": "system", "content": "Be brief."}, *MESSAGES]
    assert span["output"] == {
        "content": "It shipped yesterday.",
        "tool_calls": [{"id": "toolu_fake", "name": "track", "input": {"order_id": 42}}],
    }
    # Anthropic's input_tokens (100) excludes the cache: controlroom's includes it
    assert span["usage"] == {
        "input_tokens": 2600,
        "output_tokens": 300,
        "cache_read_tokens": 2000,
        "cache_write_tokens": 500,
        "reasoning_tokens": 0,
    }
    expected = haiku_cost(100, 2000, 500, 300)  # 100 x $1 + 2000 x $0.10 + 500 x $1.25 + 300 x $5 per M
    assert expected == Decimal("0.002425")
    assert Decimal(span["cost_usd"]) == expected == Decimal(view["cost_usd"])
    assert span["attributes"]["gen_ai.request.max_tokens"] == 1024
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert span["duration_ms"] > 0 and view["status"] == "succeeded"


def test_a_streamed_message_and_the_stream_helper(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic
) -> None:
    fake.script(
        Reply(
            text="Streamed with create.", model=HAIKU, input_tokens=40, cached_tokens=1000, output_tokens=25
        ),
        Reply(
            text="Streamed with the helper.",
            model=HAIKU,
            input_tokens=60,
            cache_write_tokens=800,
            output_tokens=35,
            tool_call=("track", {"order_id": 7}),
        ),
    )
    with controlroom.run("support-bot") as run:
        stream = client.messages.create(
            model="claude-haiku-4-5", max_tokens=256, messages=MESSAGES, stream=True
        )
        assert isinstance(stream, anthropic.Stream)
        text = "".join(
            e.delta.text for e in stream if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=256, messages=MESSAGES) as helper:
            helper_text = "".join(helper.text_stream)
            final = helper.get_final_message()
    assert text == "Streamed with create." and helper_text == "Streamed with the helper."
    assert final.usage.output_tokens == 35

    streamed, helped = llm_spans(fetch_run(traced, run.run_id, 2))
    assert streamed["output"] == "Streamed with create." and streamed["model"] == HAIKU
    assert streamed["usage"] == {
        "input_tokens": 1040,
        "output_tokens": 25,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert Decimal(streamed["cost_usd"]) == haiku_cost(40, 1000, 0, 25)
    assert helped["output"] == {
        "content": "Streamed with the helper.",
        "tool_calls": [{"id": "toolu_fake", "name": "track", "input": {"order_id": 7}}],
    }
    assert helped["usage"]["input_tokens"] == 860 and helped["usage"]["cache_write_tokens"] == 800
    assert Decimal(helped["cost_usd"]) == haiku_cost(60, 0, 800, 35)
    for span in (streamed, helped):
        assert span["status"] == "ok" and span["attributes"]["gen_ai.request.stream"] is True
        assert "gen_ai.stream.closed_early" not in span["attributes"]


class Order(pydantic.BaseModel):
    order: int
    state: str


def test_parse_is_traced(traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic) -> None:
    fake.script(
        Reply(text='{"order": 42, "state": "shipped"}', model=HAIKU, input_tokens=70, output_tokens=15)
    )
    with controlroom.run("support-bot") as run:
        parsed = client.messages.parse(
            model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, output_format=Order
        )
    assert parsed.parsed_output == Order(order=42, state="shipped")
    [span] = llm_spans(fetch_run(traced, run.run_id, 1))
    assert span["output"] == '{"order": 42, "state": "shipped"}' and span["model"] == HAIKU
    assert Decimal(span["cost_usd"]) == haiku_cost(70, 0, 0, 15)


def test_leaving_the_stream_helper_early_ends_the_span(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic
) -> None:
    reply = Reply(text="first second third", chunks=3)
    fake.script(reply)
    with (
        controlroom.run("support-bot") as run,
        client.messages.stream(model="claude-haiku-4-5", max_tokens=256, messages=MESSAGES) as helper,
    ):
        next(iter(helper.text_stream))
    [span] = llm_spans(fetch_run(traced, run.run_id, 1))
    assert span["status"] == "ok" and span["output"] == reply.pieces()[0]
    assert span["attributes"]["gen_ai.stream.closed_early"] is True
    assert span["usage"]["input_tokens"] == reply.input_tokens  # from message_start


def test_async_messages_streams_and_the_stream_helper(traced: LiveServer, fake: FakeProvider) -> None:
    fake.script(
        Reply(text="async create", model=HAIKU, input_tokens=10, output_tokens=5),
        Reply(text="async stream", model=HAIKU, input_tokens=20, cached_tokens=300, output_tokens=6),
        Reply(text="async helper", model=HAIKU, input_tokens=30, output_tokens=7),
    )

    async def agent() -> tuple[list[str], str]:
        async with anthropic.AsyncAnthropic(base_url=fake.url, api_key="test", max_retries=0) as raw:
            client = instrument_anthropic(raw)
            texts = []
            async with controlroom.run("async-bot") as run:
                message = await client.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
                )
                texts.append(message.content[0].text)  # type: ignore[union-attr]
                stream = await client.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True
                )
                assert isinstance(stream, anthropic.AsyncStream)
                texts.append(
                    "".join(
                        [
                            e.delta.text
                            async for e in stream
                            if e.type == "content_block_delta" and e.delta.type == "text_delta"
                        ]
                    )
                )
                async with client.messages.stream(
                    model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
                ) as helper:
                    texts.append(await helper.get_final_text())
            return texts, run.run_id

    texts, run_id = asyncio.run(agent())
    assert texts == ["async create", "async stream", "async helper"]
    spans = llm_spans(fetch_run(traced, run_id, 3))
    assert [s["output"] for s in spans] == texts
    assert [s["usage"]["input_tokens"] for s in spans] == [10, 320, 30]
    assert [Decimal(s["cost_usd"]) for s in spans] == [
        haiku_cost(10, 0, 0, 5),
        haiku_cost(20, 300, 0, 6),
        haiku_cost(30, 0, 0, 7),
    ]
    assert all(s["status"] == "ok" and s["model"] == HAIKU for s in spans)


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, anthropic.RateLimitError), (500, anthropic.InternalServerError), (529, anthropic.OverloadedError)],
)
def test_a_provider_error_fails_the_span_and_the_run_and_reaches_the_agent_unchanged(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic, status: int, error: type[Exception]
) -> None:
    fake.script(Reply.error(status))
    with pytest.raises(error) as raised, controlroom.run("support-bot") as run:
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
    assert raised.type is error and raised.value.status_code == status  # type: ignore[attr-defined]
    view = fetch_run(traced, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == error.__name__
    assert span["error"]["message"] == str(raised.value)
    assert span["attributes"]["http.response.status_code"] == status
    assert span["attributes"]["gen_ai.response.request_id"] == "req_fake"
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]


def test_a_timeout_and_a_failing_stream(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic
) -> None:
    fake.script(Reply.hang(), Reply(text="partial answer", chunks=2, fail_mid_stream=True))
    with pytest.raises(anthropic.APITimeoutError), controlroom.run("support-bot") as timed_out:
        client.with_options(timeout=0.3).messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
        )
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        controlroom.run("support-bot") as broken,
        client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as helper,
    ):
        helper.until_done()

    view = fetch_run(traced, timed_out.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == "APITimeoutError"
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]
    view = fetch_run(traced, broken.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == "APIStatusError"
    assert span["output"] == "partial"
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]


def test_call_with_fallback_across_claude_models(
    traced: LiveServer, fake: FakeProvider, client: anthropic.Anthropic
) -> None:
    fake.script(Reply.error(529), Reply.error(529), Reply(text="from haiku", model=HAIKU))
    with controlroom.run("support-bot") as run:
        message = controlroom.call_with_fallback(
            lambda m: client.messages.create(model=m, max_tokens=64, messages=MESSAGES),
            ["claude-opus-4-5", "claude-haiku-4-5"],
            retries=1,
            backoff=0,
        )
    assert message.model == HAIKU
    assert [r.body["model"] for r in fake.requests] == [
        "claude-opus-4-5",
        "claude-opus-4-5",
        "claude-haiku-4-5",
    ]
    first, retry, fallback = llm_spans(fetch_run(traced, run.run_id, 3))
    assert [s["attempt"] for s in (first, retry, fallback)] == [1, 2, 1]
    assert retry["retry_of"] == first["span_id"] and fallback["fallback_from"] == retry["span_id"]
    assert [s["status"] for s in (first, retry, fallback)] == ["error", "error", "ok"]
    assert first["error"]["type"] == "OverloadedError"
