"""Async control calls: ``async with controlroom.llm(...)`` and the async OpenAI / Anthropic
integrations await the reservation and the settlement, so the agent's other tasks keep running
while the ledger decides.

The ledger here is a loopback HTTP server that holds each control request until the test lets it
answer, and lets it answer only from another task of the agent's event loop: if a control call
blocked the loop, that task could not run until the server gave up waiting, and the server records
that it answered unreleased."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from fake_provider import FakeProvider, Reply

import controlroom
from controlroom.sdk._control import RESERVATION_ATTRIBUTE
from controlroom.sdk.integrations import instrument_anthropic, instrument_openai
from tests_support import wait_for

KEY = "cr_" + "k" * 40
GIVE_UP = 30.0  # the server answers unreleased after this long (the test then fails)


@dataclass
class HeldLedger:
    """A controlroom stand-in whose control requests wait for :meth:`release`."""

    url: str = ""
    held: list[str] = field(default_factory=list)  # control requests, in arrival order
    bodies: list[dict[str, Any]] = field(default_factory=list)  # and their documents
    answered_released: list[bool] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    on_held: Callable[[], None] = lambda: None
    releases: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def release(self) -> None:
        self.releases.release()


@pytest.fixture
def ledger() -> Iterator[HeldLedger]:
    state = HeldLedger()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/v1/events":
                state.events.extend(orjson.loads(gzip.decompress(body))["events"])
                self._answer(200, {"accepted": 0, "duplicates": 0, "rejected": []})
                return
            state.bodies.append(orjson.loads(body))
            state.held.append(self.path)
            state.on_held()
            state.answered_released.append(state.releases.acquire(timeout=GIVE_UP))
            if self.path.endswith("/settle"):
                self._answer(200, {"status": "settled"})
            else:
                self._answer(201, {"reservation_id": f"r{len(state.held)}"})

        def _answer(self, status: int, doc: dict[str, Any]) -> None:
            data = orjson.dumps(doc)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    for _ in range(8):  # nothing stays held
        state.release()
    server.shutdown()
    server.server_close()


@pytest.fixture
def sdk(ledger: HeldLedger, tmp_path: Path) -> Iterator[HeldLedger]:
    controlroom.init(url=ledger.url, api_key=KEY, spool_dir=tmp_path / "spool", strict=True)
    yield ledger
    controlroom.shutdown(timeout=10)


async def _while_held(ledger: HeldLedger, agent: Awaitable[Any], requests: int) -> list[str]:
    """Run ``agent`` beside a task that, each time a control request is held by the server, notes
    it and releases it: the notes it took, in order."""
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    ledger.on_held = lambda: loop.call_soon_threadsafe(arrived.set)
    notes: list[str] = []

    async def other() -> None:
        for _ in range(requests):
            await arrived.wait()
            arrived.clear()
            notes.append(ledger.held[len(notes)])  # this task ran while the request was held
            ledger.release()

    await asyncio.gather(agent, other())
    return notes


RESERVE = "/v1/budget/reservations"
SETTLE = "/v1/budget/reservations/r1/settle"


def test_async_with_llm_awaits_the_reservation_and_the_settlement(sdk: HeldLedger) -> None:
    spans: list[controlroom.LLMSpan] = []

    async def agent() -> None:
        async with (
            controlroom.run("bot"),
            controlroom.llm("acme", "acme-1", input="hi", max_tokens=10) as call,
        ):
            spans.append(call)
            call.record(input_tokens=2, output_tokens=3)

    notes = asyncio.run(_while_held(sdk, agent(), 2))
    assert notes == [RESERVE, SETTLE]
    assert sdk.answered_released == [True, True]  # each answer came after the loop's other task ran
    assert spans[0].reservation_id == "r1"
    assert controlroom.flush(10)
    started = [e for e in sdk.events if e["type"] == "span.started"]
    assert started[0]["body"]["attributes"][RESERVATION_ATTRIBUTE] == "r1"


def test_a_decorated_coroutine_awaits_its_reservation(sdk: HeldLedger) -> None:
    @controlroom.llm("acme", "acme-1", max_tokens=10)
    async def ask(question: str) -> str:
        return "fine"

    async def agent() -> None:
        async with controlroom.run("bot"):
            assert await ask("how are you?") == "fine"

    assert asyncio.run(_while_held(sdk, agent(), 2)) == [RESERVE, SETTLE]
    assert sdk.answered_released == [True, True]


def test_the_async_openai_integration_awaits_the_reservation_and_the_settlement(
    sdk: HeldLedger, fake: FakeProvider
) -> None:
    fake.script(Reply(text="Shipped.", input_tokens=20, output_tokens=4))

    async def agent() -> None:
        async with openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as raw:
            client = instrument_openai(raw)
            async with controlroom.run("bot"):
                reply = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "Where?"}], max_tokens=50
                )
            assert reply.choices[0].message.content == "Shipped."

    assert asyncio.run(_while_held(sdk, agent(), 2)) == [RESERVE, SETTLE]
    assert sdk.answered_released == [True, True]


def test_the_async_anthropic_integration_awaits_the_reservation_and_the_settlement(
    sdk: HeldLedger, fake: FakeProvider
) -> None:
    fake.script(Reply(text="Shipped.", input_tokens=20, output_tokens=4), Reply(text="Streamed."))

    async def agent() -> None:
        async with anthropic.AsyncAnthropic(base_url=fake.url, api_key="test", max_retries=0) as raw:
            client = instrument_anthropic(raw)
            messages = [{"role": "user", "content": "Where?"}]
            async with controlroom.run("bot"):
                reply = await client.messages.create(
                    model="claude-haiku-4-5", messages=messages, max_tokens=50
                )
                async with client.messages.stream(
                    model="claude-haiku-4-5", messages=messages, max_tokens=50
                ) as stream:
                    text = await stream.get_final_text()
            assert reply.content[0].text == "Shipped." and text == "Streamed."

    notes = asyncio.run(_while_held(sdk, agent(), 4))
    assert notes == [RESERVE, SETTLE, RESERVE, "/v1/budget/reservations/r3/settle"]
    assert sdk.answered_released == [True] * 4


def test_a_span_cancelled_while_its_reservation_is_out_ends_and_the_hold_is_released(
    sdk: HeldLedger,
) -> None:
    """The task ends at once, its span recorded as ended and no longer current; the server's
    answer, which comes later, is not lost: the hold it made is released."""
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()
        sdk.on_held = lambda: loop.call_soon_threadsafe(arrived.set)

        async def agent() -> None:
            async with controlroom.run("bot"):
                try:
                    async with controlroom.llm("acme", "acme-1", input="hi", max_tokens=10):
                        seen.append("the call was made")
                except asyncio.CancelledError:
                    seen.append(controlroom.current_span())
                    raise

        task = asyncio.create_task(agent())
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sdk.on_held = lambda: None

    asyncio.run(main())
    assert seen == [None]
    sdk.release()  # the server answers the abandoned reservation
    sdk.release()  # and the release that follows it
    wait_for(lambda: len(sdk.answered_released) == 2)
    rid = sdk.bodies[0]["reservation_id"]
    assert sdk.held == [RESERVE, f"{RESERVE}/{rid}/settle"]
    assert sdk.bodies[1] == {"outcome": "failed_before_generation"}
    assert controlroom.flush(10)
    ended = [(e["type"], e["body"]["status"]) for e in sdk.events if e["type"].endswith(".ended")]
    assert ended == [("span.ended", "error"), ("run.ended", "cancelled")]


def test_an_async_stream_dropped_unread_settles_off_the_event_loop(
    sdk: HeldLedger, fake: FakeProvider
) -> None:
    """The garbage collector may end a dropped stream's span on the event loop's thread: its
    settlement is awaited by a task of that loop, so the loop is not held by it."""
    import gc

    fake.script(Reply(text="never read"))

    async def agent() -> None:
        async with openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as raw:
            client = instrument_openai(raw)
            async with controlroom.run("bot"):
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "Where?"}], stream=True
                )
                await stream.response.aclose()  # the connection back to the pool, the stream unread
                del stream
                gc.collect()

    assert asyncio.run(_while_held(sdk, agent(), 2)) == [RESERVE, SETTLE]
    assert sdk.answered_released == [True, True]
    assert sdk.bodies[1]["outcome"] == "unknown"  # closed early: settled at the full hold
