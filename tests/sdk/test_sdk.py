"""The SDK against a real server: the public API, nesting, failures, retries and fallbacks,
concurrency across threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import select

import controlroom
from conftest import LiveServer
from controlroom.store.tables import runs, spans
from tests_support import wait_for


def fetch_run(live: LiveServer, run_id: str, spans_expected: int) -> dict[str, Any]:
    assert controlroom.flush(15)
    with live.client() as http:

        def ready() -> dict[str, Any] | None:
            r = http.get(f"/v1/runs/{run_id}")
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()
            done = body["status"] != "running" and body["counts"]["span"] >= spans_expected
            return body if done else None

        return wait_for(ready)


def flat(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in tree:
        out.append(s)
        out.extend(flat(s["children"]))
    return out


def test_public_api_is_pinned() -> None:
    assert sorted(controlroom.__all__) == [
        "ApprovalError",
        "ApprovalPending",
        "ApprovalRejected",
        "BudgetExceeded",
        "Client",
        "ConfigError",
        "Grant",
        "LLMSpan",
        "Run",
        "Score",
        "Span",
        "ToolSpan",
        "__version__",
        "approval",
        "call_with_fallback",
        "current_run",
        "current_span",
        "evaluator",
        "flush",
        "init",
        "llm",
        "requires_approval",
        "run",
        "score",
        "shutdown",
        "span",
        "tool",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x", "api_key": "cr_" + "k" * 40}, r"not an http\(s\) URL"),
        ({"url": "http://127.0.0.1:8750", "api_key": "nope"}, "does not look like a controlroom key"),
        ({"url": "http://127.0.0.1:8750", "api_key": "cr_" + "k" * 40, "batch_size": 0}, "batch_size=0"),
        ({"url": "http://127.0.0.1:notaport", "api_key": "cr_" + "k" * 40}, "bad port"),
    ],
)
def test_bad_configuration_fails_loudly_at_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(controlroom.ConfigError, match=message):
        controlroom.init(**kwargs)


def test_missing_url_and_key_fail_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTROLROOM_URL", raising=False)
    monkeypatch.delenv("CONTROLROOM_API_KEY", raising=False)
    with pytest.raises(controlroom.ConfigError, match="CONTROLROOM_URL"):
        controlroom.init()
    with pytest.raises(controlroom.ConfigError, match="CONTROLROOM_API_KEY"):
        controlroom.init(url="http://127.0.0.1:8750")


def test_a_run_with_nested_spans_usage_and_a_score(traced: LiveServer) -> None:
    @controlroom.tool
    def lookup_order(order_id: int) -> dict[str, str]:
        return {"order": str(order_id), "state": "shipped"}

    with controlroom.run(
        "support-bot", inputs={"question": "where is 42?"}, tags=["vip"], environment="prod", user_id="u-1"
    ) as run:
        with controlroom.span("plan", kind="chain"):
            with controlroom.llm(
                "openai", "gpt-4o", input=[{"role": "user", "content": "where is 42?"}]
            ) as call:
                call.record(
                    output="let me check", input_tokens=1000, output_tokens=200, model="gpt-4o-2024-08-06"
                )
            lookup_order(42)
        controlroom.score("helpful", 0.9, comment="polite")
        run.set_output({"answer": "shipped"})
    view = fetch_run(traced, run.run_id, 3)
    assert view["status"] == "succeeded"
    assert view["agent"] == "support-bot" and view["tags"] == ["vip"] and view["environment"] == "prod"
    assert view["inputs"] == {"question": "where is 42?"} and view["output"] == {"answer": "shipped"}
    plan = view["spans"][0]
    assert plan["name"] == "plan" and [c["name"] for c in plan["children"]] == [
        "openai.gpt-4o",
        "lookup_order",
    ]
    llm_span, tool_span = plan["children"]
    assert llm_span["model"] == "gpt-4o-2024-08-06" and llm_span["usage"]["output_tokens"] == 200
    assert llm_span["cost_usd"] == "0.0045"  # 1000 x $2.50/M + 200 x $10/M
    assert tool_span["kind"] == "tool" and tool_span["input"] == {"order_id": 42}
    assert tool_span["output"] == {"order": "42", "state": "shipped"}
    assert view["scores"][0]["name"] == "helpful" and view["scores"][0]["value"] == 0.9
    assert view["cost_usd"] == "0.0045"


def test_an_exception_marks_the_span_and_fails_the_run_at_it(traced: LiveServer) -> None:
    class OrderNotFound(Exception):
        pass

    run_ids = []

    @controlroom.run("support-bot")
    def agent(order: int) -> None:
        run_ids.append(controlroom.current_run().run_id)  # type: ignore[union-attr]
        with controlroom.span("steps"), controlroom.tool("lookup_order"):
            raise OrderNotFound(f"order {order}")

    with pytest.raises(OrderNotFound):
        agent(7)
    view = fetch_run(traced, run_ids[0], 2)
    assert view["status"] == "failed"
    tool_span = view["spans"][0]["children"][0]
    assert view["failing_span_id"] == tool_span["span_id"]
    assert view["error"] == {"type": "OrderNotFound", "message": "order 7"}
    assert tool_span["status"] == "error" and view["spans"][0]["status"] == "error"
    assert view["inputs"] == {"order": 7}


def test_retry_twice_then_fall_back(traced: LiveServer) -> None:
    calls: list[str] = []

    def call_model(model: str) -> str:
        calls.append(model)
        with controlroom.llm("openai", model) as c:
            if model == "gpt-4o":
                raise TimeoutError("provider timed out")
            c.record(output="ok", input_tokens=10, output_tokens=5)
        return "ok"

    with controlroom.run("research") as run:
        assert (
            controlroom.call_with_fallback(call_model, ["gpt-4o", "gpt-4o-mini"], retries=2, backoff=0)
            == "ok"
        )
    assert calls == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini"]
    view = fetch_run(traced, run.run_id, 4)
    llm_spans = sorted(flat(view["spans"]), key=lambda s: s["started_at"])
    a1, a2, a3, fb = llm_spans
    assert [s["attempt"] for s in llm_spans] == [1, 2, 3, 1]
    assert (a2["retry_of"], a3["retry_of"]) == (a1["span_id"], a2["span_id"])
    assert fb["fallback_from"] == a3["span_id"] and fb["model"] == "gpt-4o-mini" and fb["status"] == "ok"
    assert all(s["error"] == {"type": "TimeoutError", "message": "provider timed out"} for s in (a1, a2, a3))
    assert view["status"] == "succeeded"
    assert view["counts"]["retry"] == 2 and view["counts"]["fallback"] == 1 and view["counts"]["error"] == 3


def test_fallback_records_attempts_for_uninstrumented_calls(traced: LiveServer) -> None:
    def flaky(model: str) -> str:
        if model == "a":
            raise ConnectionError("reset")
        return model

    with controlroom.run("research") as run:
        assert controlroom.call_with_fallback(flaky, ["a", "b"], retries=0, provider="openai") == "b"
    view = fetch_run(traced, run.run_id, 2)
    a, b = sorted(flat(view["spans"]), key=lambda s: s["started_at"])
    assert (a["model"], a["status"], a["error"]["type"]) == ("a", "error", "ConnectionError")
    assert (b["model"], b["status"], b["fallback_from"]) == ("b", "ok", a["span_id"])


def test_threads_and_asyncio_tasks_keep_their_own_context(traced: LiveServer) -> None:
    """32 threads and 200 asyncio tasks each run runs with nested spans at the same time: every
    span lands in its own run, under its own parent."""
    expected: dict[str, dict[str, str | None]] = {}
    lock = threading.Lock()

    def one_run(tag: str) -> None:
        with controlroom.run("worker", inputs={"tag": tag}) as run:
            with controlroom.span(f"{tag}-outer") as outer, controlroom.span(f"{tag}-inner") as inner:
                pass
            with lock:
                expected[run.run_id] = {outer.span_id: None, inner.span_id: outer.span_id}

    def thread_main(i: int) -> None:
        for j in range(5):
            one_run(f"t{i}-{j}")

    async def task_main(i: int) -> None:
        async with controlroom.run("worker", inputs={"tag": f"a{i}"}) as run:
            async with controlroom.span(f"a{i}-outer") as outer:
                await asyncio.sleep(0)  # let the other tasks interleave here
                async with controlroom.span(f"a{i}-inner") as inner:
                    await asyncio.sleep(0)
            with lock:
                expected[run.run_id] = {outer.span_id: None, inner.span_id: outer.span_id}

    async def all_tasks() -> None:
        await asyncio.gather(*(task_main(i) for i in range(200)))

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    asyncio.run(all_tasks())
    for t in threads:
        t.join()
    assert len(expected) == 32 * 5 + 200
    assert controlroom.flush(30)
    with traced.client() as http:
        wait_for(lambda: http.get("/v1/health").json()["projector"]["lag_events"] == 0, timeout=30)
    with traced.store.read() as conn:
        got: dict[str, dict[str, str | None]] = {}
        for run_id, span_id, parent in conn.execute(
            select(spans.c.run_id, spans.c.span_id, spans.c.parent_span_id)
        ):
            got.setdefault(run_id, {})[span_id] = parent
        statuses = {s for (s,) in conn.execute(select(runs.c.status))}
    assert got == expected
    assert statuses == {"succeeded"}


def test_no_client_means_no_tracing_and_no_errors() -> None:
    controlroom.shutdown()
    with controlroom.run("offline") as run, controlroom.span("work") as span:
        pass
    assert run.status == "succeeded" and span.status == "ok"
