"""The cost cap through the provider integrations: the real ``openai`` and ``anthropic`` clients,
instrumented, against a fake provider and a real controlroom server with a cap (SQLite and PostgreSQL).

A call is held before its request leaves at (input bytes + tool definition and output schema bytes) x
the input rate + ``max_tokens`` x the output rate, refused without any request when that does not fit,
and settled at the usage the provider reported (or at the full hold when that is unknown)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest
from fake_provider import FakeProvider, Reply, fetch_run, llm_spans
from sqlalchemy import select

import controlroom
from conftest import LiveServer
from controlroom.sdk.integrations import instrument_anthropic, instrument_openai
from controlroom.store.tables import reservations

MODEL = "acme-1"
IN_NANOS, OUT_NANOS = 1_000, 2_000  # $1 and $2 per million tokens, in nano-dollars per token
CAP = "0.01"
SYSTEM = "Be brief."
QUESTION = "Où en est la commande n° 42 ?"  # not ASCII: the bound counts UTF-8 bytes, not characters
SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "integer", "description": "The order's number, e.g. 42."}},
    "required": ["order_id"],
}
DESCRIPTION = "Look an order up by its number and return its state, carrier and expected delivery date."


@pytest.fixture
def capped(live: LiveServer, tmp_path: Path) -> Iterator[LiveServer]:
    """acme-1 at $1/M input and $2/M output tokens, whatever the provider; the project capped at $0.01."""
    with live.client(admin=True) as http:
        price = {"model": MODEL, "input_per_mtok": "1", "output_per_mtok": "2"}
        assert http.post("/v1/prices", json=price).status_code == 201
        assert http.put("/v1/budgets", json={"cap_usd": CAP}).status_code == 200
    controlroom.init(
        url=live.url, api_key=live.key, spool_dir=tmp_path / "spool", strict=True, flush_interval=0.05
    )
    yield live
    controlroom.shutdown(timeout=10)


# -- the two APIs, driven the same way --------------------------------------------------------------


class Api:
    """One provider's client and call shape: ``call(...)`` makes a request the way an agent would."""

    name: str
    tools: list[dict[str, Any]]
    recorded_input: Any  # what the span records as its input (the estimate's base)

    def client(self, fake: FakeProvider) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def call(self, client: Any, *, max_tokens: int, tools: bool = False, stream: bool = False) -> Any:
        raise NotImplementedError

    def text(self, item: Any) -> str:
        """The text a streamed event carries ("" for the others)."""
        raise NotImplementedError

    def options(self, *, tools: bool, stream: bool) -> dict[str, Any]:
        """The optional arguments of :meth:`call`."""
        extra: dict[str, Any] = {"tools": self.tools} if tools else {}
        if stream:
            extra["stream"] = True
        return extra


class OpenAIChat(Api):
    name = "openai"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup_order", "description": DESCRIPTION, "parameters": SCHEMA},
        }
    ]
    recorded_input = messages

    def client(self, fake: FakeProvider) -> AbstractContextManager[Any]:
        return instrument_openai(openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0))

    def call(self, client: Any, *, max_tokens: int, tools: bool = False, stream: bool = False) -> Any:
        return client.chat.completions.create(
            model=MODEL,
            messages=self.messages,
            max_completion_tokens=max_tokens,
            **self.options(tools=tools, stream=stream),
        )

    def text(self, item: Any) -> str:
        return (item.choices[0].delta.content or "") if item.choices else ""


class AnthropicMessages(Api):
    name = "anthropic"
    messages = [{"role": "user", "content": QUESTION}]
    tools = [{"name": "lookup_order", "description": DESCRIPTION, "input_schema": SCHEMA}]
    recorded_input = [{"role": "system", "content": SYSTEM}, *messages]

    def client(self, fake: FakeProvider) -> AbstractContextManager[Any]:
        return instrument_anthropic(anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0))

    def call(self, client: Any, *, max_tokens: int, tools: bool = False, stream: bool = False) -> Any:
        return client.messages.create(
            model=MODEL,
            system=SYSTEM,
            messages=self.messages,
            max_tokens=max_tokens,
            **self.options(tools=tools, stream=stream),
        )

    def text(self, item: Any) -> str:
        if item.type == "content_block_delta" and item.delta.type == "text_delta":
            return str(item.delta.text)
        return ""


@pytest.fixture(params=[OpenAIChat, AnthropicMessages], ids=lambda cls: cls.name)
def api(request: pytest.FixtureRequest, fake: FakeProvider) -> Iterator[tuple[Api, Any]]:
    chosen: Api = request.param()
    with chosen.client(fake) as client:
        yield chosen, client


# -- what to expect ----------------------------------------------------------------------------------------


def json_bytes(value: Any) -> int:
    """A value's size in UTF-8 bytes (as compact JSON if it is not a string): the SDK's input-token
    bound, from first principles."""
    if isinstance(value, str):
        return len(value.encode())
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def hold_nanos(max_tokens: int, *billed_inputs: Any) -> int:
    return sum(json_bytes(v) for v in billed_inputs) * IN_NANOS + max_tokens * OUT_NANOS


def usd(nanos: int) -> Decimal:
    return Decimal(nanos) / 10**9


def budget(live: LiveServer) -> dict[str, Any]:
    with live.client() as http:
        return dict(http.get("/v1/budgets").json()["budgets"][0])


def reservations_by_span(live: LiveServer, run_id: str) -> dict[str, dict[str, Any]]:
    with live.store.read() as conn:
        rows = conn.execute(select(reservations).where(reservations.c.run_id == run_id)).mappings().all()
    return {row["span_id"]: dict(row) for row in rows}


# -- refused --------------------------------------------------------------------------------------------------


def test_a_call_whose_tools_push_its_hold_over_the_cap_is_refused_before_any_request(
    capped: LiveServer, fake: FakeProvider, api: tuple[Api, Any]
) -> None:
    how, client = api
    without_tools = hold_nanos(1000, how.recorded_input)
    with_tools = hold_nanos(1000, how.recorded_input, how.tools)
    cap = without_tools + (with_tools - without_tools) // 2  # the call fits; with its tools it does not
    with capped.client(admin=True) as http:
        assert http.put("/v1/budgets", json={"cap_usd": str(usd(cap))}).status_code == 200

    with pytest.raises(controlroom.BudgetExceeded) as refused, controlroom.run("support-bot") as run:
        how.call(client, max_tokens=1000, tools=True)
    assert fake.requests == []  # nothing reached the provider
    assert refused.value.reason == "cap_reached"
    assert Decimal(refused.value.requested_usd or "") == usd(with_tools)

    view = fetch_run(capped, run.run_id, 1)
    [span] = llm_spans(view)
    assert span["status"] == "error" and span["error"]["type"] == "BudgetExceeded"
    assert span["attributes"]["controlroom.budget.reason"] == "cap_reached"
    assert span["input"] == how.recorded_input  # the recorded input is the prompt, without the tools
    assert view["status"] == "failed" and view["failing_span_id"] == span["span_id"]
    assert reservations_by_span(capped, run.run_id) == {}  # a refusal holds nothing
    assert (budget(capped)["settled_usd"], budget(capped)["held_usd"]) == ("0", "0")

    with controlroom.run("support-bot"):  # the same call without its tools fits
        how.call(client, max_tokens=1000)
    [request] = fake.requests
    assert "tools" not in request.body


# -- admitted and settled ---------------------------------------------------------------------------------------


def test_a_call_within_the_cap_is_held_then_settled_at_its_reported_usage(
    capped: LiveServer, fake: FakeProvider, api: tuple[Api, Any]
) -> None:
    how, client = api
    fake.script(Reply(input_tokens=321, output_tokens=45))
    with controlroom.run("support-bot") as run:
        how.call(client, max_tokens=500, tools=True)
    cost = usd(321 * IN_NANOS + 45 * OUT_NANOS)  # $0.000411
    now = budget(capped)  # settled synchronously when the call returned
    assert now["held_usd"] == "0" and Decimal(now["settled_usd"]) == cost == Decimal("0.000411")

    [span] = llm_spans(fetch_run(capped, run.run_id, 1))
    assert span["status"] == "ok" and Decimal(span["cost_usd"]) == cost
    held = reservations_by_span(capped, run.run_id)[span["span_id"]]
    assert held["model"] == MODEL and held["state"] == "settled"
    assert held["hold_nanos"] == hold_nanos(500, how.recorded_input, how.tools)
    assert held["actual_nanos"] == 411_000


def test_tool_definitions_are_held_as_input_tokens(
    capped: LiveServer, fake: FakeProvider, api: tuple[Api, Any]
) -> None:
    how, client = api
    with controlroom.run("support-bot") as run:
        how.call(client, max_tokens=300)
        how.call(client, max_tokens=300, tools=True)
    assert "tools" not in fake.requests[0].body and fake.requests[1].body["tools"] == how.tools

    plain, with_tools = llm_spans(fetch_run(capped, run.run_id, 2))
    held = reservations_by_span(capped, run.run_id)
    assert held[plain["span_id"]]["hold_nanos"] == hold_nanos(300, how.recorded_input)
    assert held[with_tools["span_id"]]["hold_nanos"] == hold_nanos(300, how.recorded_input, how.tools)
    assert (
        held[with_tools["span_id"]]["hold_nanos"] - held[plain["span_id"]]["hold_nanos"]
        == json_bytes(how.tools) * IN_NANOS
        > 0
    )
    assert plain["input"] == with_tools["input"] == how.recorded_input


class Order(pydantic.BaseModel):
    order: int
    state: str


ORDER_JSON = '{"order": 42, "state": "shipped"}'


def test_openai_output_schemas_and_legacy_functions_are_held_as_input_tokens(
    capped: LiveServer, fake: FakeProvider
) -> None:
    from openai.lib._parsing import type_to_response_format_param
    from openai.lib._parsing._responses import type_to_text_format_param

    fake.script(*(Reply(text=ORDER_JSON) for _ in range(4)))
    messages = OpenAIChat.messages
    functions = [{"name": "lookup_order", "description": DESCRIPTION, "parameters": SCHEMA}]
    response_format = {"type": "json_schema", "json_schema": {"name": "order", "schema": SCHEMA}}
    text = {"format": {"type": "json_schema", "name": "order", "schema": SCHEMA}, "verbosity": "low"}
    responses_tools = [{"type": "function", "name": "lookup_order", "parameters": SCHEMA, "strict": False}]
    with OpenAIChat().client(fake) as client, controlroom.run("support-bot") as run:
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            functions=functions,
            response_format=response_format,
            max_tokens=50,
        )
        parsed = client.chat.completions.parse(
            model=MODEL, messages=messages, response_format=Order, max_tokens=60
        )
        client.responses.create(
            model=MODEL,
            instructions=SYSTEM,
            input=QUESTION,
            tools=responses_tools,
            text=text,
            max_output_tokens=70,
        )
        answer = client.responses.parse(model=MODEL, input=QUESTION, text_format=Order, max_output_tokens=80)
    assert parsed.choices[0].message.parsed == answer.output_parsed == Order(order=42, state="shipped")
    sent_format = type_to_response_format_param(Order)
    assert fake.requests[1].body["response_format"] == sent_format  # what parse() sends for the type

    chat, chat_parse, responses, responses_parse = llm_spans(fetch_run(capped, run.run_id, 4))
    held = reservations_by_span(capped, run.run_id)
    responses_input = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    assert responses["input"] == responses_input
    expected = {
        chat["span_id"]: hold_nanos(50, messages, functions, response_format),
        chat_parse["span_id"]: hold_nanos(60, messages, sent_format),
        responses["span_id"]: hold_nanos(70, responses_input, responses_tools, text),
        responses_parse["span_id"]: hold_nanos(80, QUESTION, {"format": type_to_text_format_param(Order)}),
    }
    assert {span_id: held[span_id]["hold_nanos"] for span_id in expected} == expected


def test_anthropic_output_schemas_are_held_as_input_tokens(capped: LiveServer, fake: FakeProvider) -> None:
    fake.script(Reply(text=ORDER_JSON), Reply(text=ORDER_JSON))
    messages = AnthropicMessages.messages
    output_config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    with AnthropicMessages().client(fake) as client, controlroom.run("support-bot") as run:
        client.messages.create(model=MODEL, messages=messages, output_config=output_config, max_tokens=50)
        parsed = client.messages.parse(model=MODEL, messages=messages, output_format=Order, max_tokens=60)
    assert parsed.parsed_output == Order(order=42, state="shipped")
    sent_config = fake.requests[1].body["output_config"]  # what parse() sends for the type
    assert sent_config["format"]["type"] == "json_schema"

    plain, parse = llm_spans(fetch_run(capped, run.run_id, 2))
    held = reservations_by_span(capped, run.run_id)
    assert held[plain["span_id"]]["hold_nanos"] == hold_nanos(50, messages, output_config)
    assert held[parse["span_id"]]["hold_nanos"] == hold_nanos(60, messages, sent_config)


# -- streams -----------------------------------------------------------------------------------------------------


def test_a_stream_settles_at_its_streamed_usage_once_consumed(
    capped: LiveServer, fake: FakeProvider, api: tuple[Api, Any]
) -> None:
    how, client = api
    fake.script(Reply(text="It shipped yesterday.", input_tokens=200, output_tokens=30))
    with controlroom.run("support-bot") as run:
        stream = how.call(client, max_tokens=400, tools=True, stream=True)
        assert Decimal(budget(capped)["held_usd"]) == usd(hold_nanos(400, how.recorded_input, how.tools))
        assert "".join(how.text(item) for item in stream) == "It shipped yesterday."
        now = budget(capped)  # settled when the stream was exhausted, before the run ended
    assert now["held_usd"] == "0" and Decimal(now["settled_usd"]) == usd(200 * IN_NANOS + 30 * OUT_NANOS)

    [span] = llm_spans(fetch_run(capped, run.run_id, 1))
    assert "gen_ai.stream.closed_early" not in span["attributes"]
    assert reservations_by_span(capped, run.run_id)[span["span_id"]]["actual_nanos"] == 260_000


def test_a_stream_closed_early_settles_at_its_full_hold(
    capped: LiveServer, fake: FakeProvider, api: tuple[Api, Any]
) -> None:
    """What was generated (and billed) is unknown: docs/sdk.md, Streaming."""
    how, client = api
    fake.script(Reply(text="one two three four", chunks=4, input_tokens=200, output_tokens=30))
    with controlroom.run("support-bot") as run:
        with how.call(client, max_tokens=400, tools=True, stream=True) as stream:
            first = next(text for item in stream if (text := how.text(item)))
        now = budget(capped)
    assert first == "one t"
    full = hold_nanos(400, how.recorded_input, how.tools)
    assert now["held_usd"] == "0" and Decimal(now["settled_usd"]) == usd(full)

    [span] = llm_spans(fetch_run(capped, run.run_id, 1))
    assert span["attributes"]["gen_ai.stream.closed_early"] is True
    held = reservations_by_span(capped, run.run_id)[span["span_id"]]
    assert held["state"] == "settled" and held["hold_nanos"] == held["actual_nanos"] == full


# -- async ------------------------------------------------------------------------------------------------------


def test_an_async_client_is_held_settled_and_refused_the_same_way(
    capped: LiveServer, fake: FakeProvider
) -> None:
    fake.script(Reply(input_tokens=100, output_tokens=10))
    how = OpenAIChat()

    async def agent() -> tuple[str, BaseException | None]:
        async with openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as raw:
            client = instrument_openai(raw)
            async with controlroom.run("async-bot") as run:
                await client.chat.completions.create(
                    model=MODEL, messages=how.messages, tools=how.tools, max_completion_tokens=300
                )
                try:  # $0.012 of output alone: over the $0.01 cap
                    await client.chat.completions.create(
                        model=MODEL, messages=how.messages, tools=how.tools, max_completion_tokens=6000
                    )
                except controlroom.BudgetExceeded as exc:
                    return run.run_id, exc
            return run.run_id, None

    run_id, refused = asyncio.run(agent())
    assert isinstance(refused, controlroom.BudgetExceeded) and refused.reason == "cap_reached"
    assert len(fake.requests) == 1
    assert Decimal(refused.requested_usd or "") == usd(hold_nanos(6000, how.messages, how.tools))
    now = budget(capped)
    assert now["held_usd"] == "0" and Decimal(now["settled_usd"]) == usd(100 * IN_NANOS + 10 * OUT_NANOS)

    made, refused_span = llm_spans(fetch_run(capped, run_id, 2))
    assert made["status"] == "ok" and refused_span["status"] == "error"
    assert refused_span["error"]["type"] == "BudgetExceeded"
    held = reservations_by_span(capped, run_id)
    assert list(held) == [made["span_id"]]
    assert held[made["span_id"]]["hold_nanos"] == hold_nanos(300, how.messages, how.tools)
    assert held[made["span_id"]]["actual_nanos"] == 120_000
