"""Run snapshots: loaded from the read model (SQLite and PostgreSQL) they equal the ones folded
from the same events in memory; many runs load in a constant number of queries per chunk, each
with its own spans; a snapshot cannot be changed through what it hands out; the conversation,
tool-call and model-call views follow their documented rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from controlroom.accounts import projects
from controlroom.accounts.projects import Project
from controlroom.evals.loading import load_runs
from controlroom.evals.messages import to_messages
from controlroom.evals.snapshot import Run, Span
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from factories import BASE_TS, event, llm_usage, rid, run_ended, run_started, sid, span_ended, span_started

MS = 10**6


def send(store: Store, project: Project, events: list[dict[str, Any]]) -> None:
    result = ingest_events(store, project.id, {"events": events}, max_events=100_000)
    assert not result.rejected, result.rejected
    Projector(store).catch_up()


def recorded(run_id: str, span_id: str, t: int, **body: Any) -> dict[str, Any]:
    """A whole span in one event, as OTLP ingest writes it."""
    return event("span.recorded", run_id, {"span_id": span_id, "ended_at": t + 5 * MS, **body}, ts=t)


def agent_run(run_id: str, *, fail: bool = False) -> list[dict[str, Any]]:
    """A support agent: a root span, a model call that times out and its retry (which asks for a
    tool), the tool call, a second tool call that errors, a final model call; scores; an output."""
    root, call1, call2, tool1, tool2, call3 = (sid() for _ in range(6))
    t0 = BASE_TS
    chat = {"parent_span_id": root, "provider": "openai", "model": "gpt-4o-mini", "name": "chat"}
    history = [{"role": "system", "content": "You are support."}, {"role": "user", "content": "Where is 42?"}]
    reply = {"content": None, "tool_calls": [{"id": "c1", "name": "lookup_order", "arguments": '{"id": 42}'}]}
    tool_turn = [
        *history,
        {"role": "assistant", "content": None},
        {"role": "tool", "content": [{"type": "text", "text": "shipped"}]},
    ]
    events = [
        run_started(
            run_id,
            ts=t0,
            inputs={"question": "Where is 42?", "n": 1.25},
            model="gpt-4o-mini",
            agent_version="1.2.0",
            environment="prod",
            session_id="s-1",
            user_id="u-1",
            tags=["beta", "vip"],
            metadata={"region": "eu", "nested": {"k": [1, 2]}},
        ),
        span_started(
            run_id, root, kind="agent", name="support", ts=t0 + MS, input={"question": "Where is 42?"}
        ),
        span_started(run_id, call1, ts=t0 + 2 * MS, attempt=1, input=history, **chat),
        span_ended(
            run_id, call1, ts=t0 + 3 * MS, status="error", error={"type": "Timeout", "message": "slow"}
        ),
        span_started(run_id, call2, ts=t0 + 4 * MS, attempt=2, retry_of=call1, input=history, **chat),
        span_ended(run_id, call2, ts=t0 + 5 * MS, output=reply, usage=llm_usage(1000, 50)),
        span_started(
            run_id,
            tool1,
            kind="tool",
            name="lookup_order",
            parent_span_id=root,
            ts=t0 + 6 * MS,
            input={"id": 42},
        ),
        span_ended(run_id, tool1, ts=t0 + 7 * MS, output={"status": "shipped"}, attributes={"cache": "miss"}),
        span_started(
            run_id, tool2, kind="tool", name="refund", parent_span_id=root, ts=t0 + 8 * MS, input={"id": 42}
        ),
        span_ended(
            run_id, tool2, ts=t0 + 9 * MS, status="error", error={"type": "PermissionError", "message": "no"}
        ),
        span_started(run_id, call3, ts=t0 + 10 * MS, input=tool_turn, **chat),
        span_ended(
            run_id, call3, ts=t0 + 11 * MS, output="It shipped.", usage=llm_usage(1500, 20), cost_usd="0.01"
        ),
        event("score.recorded", run_id, {"name": "helpful", "value": 0.75, "comment": "ok"}, ts=t0 + 20 * MS),
        event(
            "score.recorded", run_id, {"name": "tone", "label": "polite", "source": "human"}, ts=t0 + 21 * MS
        ),
        # two at one time: in the order of their ids, whatever order they came in
        event("score.recorded", run_id, {"name": "b", "value": 1}, ts=t0 + 22 * MS, id_=f"{run_id}-b"),
        event("score.recorded", run_id, {"name": "a", "value": 0}, ts=t0 + 22 * MS, id_=f"{run_id}-a"),
    ]
    if fail:
        events.append(
            span_ended(run_id, root, ts=t0 + 12 * MS, status="error", error={"type": "Boom", "message": "x"})
        )
        events.append(
            run_ended(
                run_id,
                "failed",
                ts=t0 + 13 * MS,
                error={"type": "Boom", "message": "x"},
                failing_span_id=tool2,
            )
        )
    else:
        events.append(span_ended(run_id, root, ts=t0 + 12 * MS, output="It shipped."))
        events.append(run_ended(run_id, ts=t0 + 13 * MS, output="It shipped."))
    return events


def otlp_run(run_id: str) -> list[dict[str, Any]]:
    """An OpenTelemetry-shaped run: span.recorded events, a tool span named ``execute_tool X``
    whose arguments and result are attributes, a bare-number input and output."""
    root, chat, tool = sid(), sid(), sid()
    t0 = BASE_TS
    return [
        run_started(run_id, ts=t0, inputs=5, tags=[]),
        recorded(run_id, root, t0, kind="agent", name="invoke_agent weather"),
        recorded(
            run_id,
            chat,
            t0 + MS,
            kind="llm",
            name="chat gpt-4o",
            parent_span_id=root,
            provider="openai",
            model="gpt-4o",
            input={
                "system_instructions": [{"type": "text", "content": "Be brief."}],
                "input": [{"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]}],
            },
            output=[{"role": "assistant", "parts": [{"type": "text", "content": "Rain."}]}],
            usage=llm_usage(10, 2),
        ),
        recorded(
            run_id,
            tool,
            t0 + 2 * MS,
            kind="tool",
            name="execute_tool get_weather",
            parent_span_id=root,
            attributes={"gen_ai.tool.call.arguments": '{"city": "Oslo"}', "gen_ai.tool.call.result": "rain"},
        ),
        run_ended(run_id, ts=t0 + 10 * MS, output=1.5),
    ]


def running_run(run_id: str) -> list[dict[str, Any]]:
    s = sid()
    return [
        run_started(run_id, ts=BASE_TS),
        span_started(run_id, s, kind="tool", name="wait", ts=BASE_TS + MS),
    ]


def view(run: Run) -> dict[str, Any]:
    """Everything a snapshot shows, as plain values."""
    fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if not f.name.startswith("_")}
    fields["spans"] = [{**{name: getattr(s, name) for name in Span.FIELDS}, **io(s)} for s in run.spans]
    return {
        **fields,
        "inputs": run.inputs,
        "output": run.output,
        "tags": run.tags,
        "metadata": run.metadata,
        "reference": run.reference,
        "duration_s": run.duration_s,
        "cost_usd": run.cost_usd,
        "tool_calls": run.tool_calls(),
        "llm_calls": run.llm_calls(),
        "messages": run.messages(),
        "roots": [s.id for s in run.roots()],
        "failing_span": run.failing_span.id if run.failing_span else None,
    }


def io(s: Span) -> dict[str, Any]:
    return {"input": s.input, "output": s.output, "attributes": s.attributes, "duration_s": s.duration_s}


# -- the read model and the fold agree ----------------------------------------------------------------


def test_loaded_snapshots_equal_the_ones_folded_from_the_same_events(store: Store, project: Project) -> None:
    runs = {rid(): build for build in (agent_run, otlp_run, running_run) for _ in range(2)}
    failed = rid()
    events = {run_id: build(run_id) for run_id, build in runs.items()}
    events[failed] = agent_run(failed, fail=True)
    send(store, project, [e for evs in events.values() for e in evs])
    with store.read() as conn:
        loaded = load_runs(conn, project.id, list(events))
    assert set(loaded) == set(events)
    for run_id, evs in events.items():
        assert view(loaded[run_id]) == view(Run.from_events(evs)), run_id


def test_a_snapshot_shows_what_the_run_recorded() -> None:
    run_id = rid()
    run = Run.from_events(agent_run(run_id))
    assert (run.id, run.agent, run.status, run.model) == (run_id, "support-bot", "succeeded", "gpt-4o-mini")
    assert (run.agent_version, run.environment, run.session_id, run.user_id) == (
        "1.2.0",
        "prod",
        "s-1",
        "u-1",
    )
    assert run.tags == ("beta", "vip")
    assert run.metadata == {"region": "eu", "nested": {"k": [1, 2]}}
    assert run.inputs == {"question": "Where is 42?", "n": 1.25}
    assert run.output == "It shipped."
    assert run.duration_s == pytest.approx(0.013)
    assert run.error is None and run.failing_span is None
    assert [s.kind for s in run.spans] == ["agent", "llm", "llm", "tool", "tool", "llm"]
    assert (run.usage.input_tokens, run.usage.output_tokens, run.total_tokens) == (2500, 70, 2570)
    assert run.cost_nanos > 10_000_000 and run.unpriced_calls == 0  # the reported 0.01 plus a priced call
    assert run.cost_usd == Decimal(run.cost_nanos) / 10**9
    assert [(s.name, s.value, s.label, s.source) for s in run.scores] == [
        ("helpful", 0.75, None, "sdk"),
        ("tone", None, "polite", "human"),
        ("a", 0.0, None, "sdk"),
        ("b", 1.0, None, "sdk"),
    ]
    call1 = run.spans[1]
    assert call1.error is not None and (call1.error.type, call1.error.message) == ("Timeout", "slow")
    assert call1.usage is None and call1.duration_s == pytest.approx(0.001)
    assert run.spans[2].retry_of == call1.id and run.spans[2].attempt == 2
    assert run.spans[3].attributes == {"cache": "miss"} and run.spans[0].attributes == {}
    assert run.reference is None and not run.has_reference


def test_a_failed_run_names_its_error_and_failing_span() -> None:
    run = Run.from_events(agent_run(rid(), fail=True))
    assert run.status == "failed"
    assert run.error is not None and (run.error.type, run.error.message) == ("Boom", "x")
    assert run.failing_span is not None and run.failing_span.name == "refund"
    assert run.error.span_id == run.failing_span.id


def test_an_abandoned_run_folds_from_the_sweepers_event() -> None:
    run_id = rid()
    abandoned = event(
        "run.abandoned", run_id, {"quiet_seconds": 60, "last_event_at": BASE_TS}, ts=BASE_TS + 10**9
    )
    run = Run.from_events([*running_run(run_id), abandoned])
    assert run.status == "abandoned" and run.error is not None and run.error.type == "abandoned"


def test_from_events_validates_like_ingest() -> None:
    run_id = rid()
    with pytest.raises(ValueError, match=r"event 1 \(id 'x'\): body.kind: .*body.name: Field required"):
        Run.from_events(
            [run_started(run_id), event("span.started", run_id, {"span_id": sid(), "kind": "?"}, id_="x")]
        )
    with pytest.raises(ValueError, match="is of run"):
        Run.from_events([run_started(run_id), run_ended(rid())])
    with pytest.raises(ValueError, match="at least one event"):
        Run.from_events([])
    first = run_ended(run_id, output="first")
    again = {**run_ended(run_id, output="second"), "id": first["id"]}
    assert Run.from_events([run_started(run_id), first, again]).output == "first"  # a re-sent id is a no-op


# -- many runs at once ----------------------------------------------------------------------------


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa_event.listen(store.engine, "before_cursor_execute", count)
    yield seen
    sa_event.remove(store.engine, "before_cursor_execute", count)


def test_many_runs_load_in_three_queries_per_chunk_each_with_its_own_spans(
    store: Store, project: Project, statements: list[str]
) -> None:
    expected: dict[str, list[str]] = {}
    events: list[dict[str, Any]] = []
    for i in range(1_100):
        run_id = rid()
        span_ids = [sid() for _ in range(i % 4)]
        expected[run_id] = span_ids
        events.append(run_started(run_id, ts=BASE_TS + i))
        for j, span_id in enumerate(span_ids):
            events.append(recorded(run_id, span_id, BASE_TS + i + j * MS, kind="tool", name=f"t{j}"))
        events.append(run_ended(run_id, ts=BASE_TS + i + 10 * MS, output=i))
    with store.write() as conn:
        other = projects.create_project(conn, name="other")
    foreign = rid()
    send(store, project, events)
    send(store, other, [run_started(foreign), run_ended(foreign)])
    wanted = [*expected, rid(), foreign, next(iter(expected))]  # unknown, another project's, a repeat
    statements.clear()
    with store.read() as conn:
        loaded = load_runs(conn, project.id, wanted)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3 * 3  # 1,100 ids: three chunks of at most 500, runs + spans + scores each
    assert set(loaded) == set(expected)
    for i, (run_id, span_ids) in enumerate(expected.items()):
        run = loaded[run_id]
        assert [s.id for s in run.spans] == span_ids  # start order
        assert [s.name for s in run.spans] == [f"t{j}" for j in range(len(span_ids))]
        assert run.output == i


# -- read-only ------------------------------------------------------------------------------------


def test_nothing_an_evaluator_is_handed_changes_the_snapshot() -> None:
    run = Run.from_events(agent_run(rid())).with_reference({"answer": ["shipped"]})
    run.inputs["question"] = "changed"
    run.metadata["nested"]["k"].append(3)
    run.reference["answer"].append("lost")
    run.spans[3].attributes["cache"] = "hit"
    run.spans[3].input["id"] = 7
    run.tool_calls()[0].arguments["id"] = 8
    run.llm_calls()[0].messages.clear()
    run.messages()[0]["content"] = "changed"
    assert run.inputs["question"] == "Where is 42?"
    assert run.metadata["nested"] == {"k": [1, 2]}
    assert run.reference == {"answer": ["shipped"]}
    assert run.spans[3].attributes == {"cache": "miss"}
    assert run.tool_calls()[0].arguments == {"id": 42}
    assert run.llm_calls()[0].messages[0]["role"] == "system"
    assert run.messages()[0]["content"] == "You are support."
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "failed"  # type: ignore[misc]
    with pytest.raises(AttributeError):  # a view over the stored values: no setters
        run.spans[0].status = "error"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.tool_calls()[0].name = "other"  # type: ignore[misc]
    assert isinstance(run.spans, tuple) and isinstance(run.scores, tuple) and isinstance(run.tags, tuple)


def test_with_reference_gives_a_new_snapshot() -> None:
    run = Run.from_events(agent_run(rid()))
    judged = run.with_reference("It shipped.")
    assert (judged.reference, judged.has_reference) == ("It shipped.", True)
    assert run.reference is None and judged.spans is run.spans
    assert Run.from_events(agent_run(rid()), reference=0).reference == 0
    assert judged.with_reference(None).has_reference is False


# -- tree, calls, conversation -------------------------------------------------------------------------


def test_the_span_tree() -> None:
    run = Run.from_events(agent_run(rid()))
    (root,) = run.roots()
    assert root.kind == "agent" and root.parent_id is None
    assert [s.name for s in run.children(root)] == ["chat", "chat", "lookup_order", "refund", "chat"]
    assert run.children(run.spans[1].id) == ()
    assert run.span(root.id) is root and run.span("0" * 16) is None


def test_tool_calls_in_start_order_with_arguments_results_and_errors() -> None:
    run = Run.from_events(agent_run(rid()))
    calls = run.tool_calls()
    assert [(c.name, c.arguments, c.result) for c in calls] == [
        ("lookup_order", {"id": 42}, {"status": "shipped"}),
        ("refund", {"id": 42}, None),
    ]
    assert calls[0].error is None and calls[1].error is not None and calls[1].error.type == "PermissionError"
    assert [c.span_id for c in calls] == [s.id for s in run.tool_spans()]


def test_an_opentelemetry_tool_span_is_the_call_of_the_tool_it_names() -> None:
    (call,) = Run.from_events(otlp_run(rid())).tool_calls()
    assert (call.name, call.arguments, call.result) == ("get_weather", {"city": "Oslo"}, "rain")


def test_llm_calls_count_each_call_once() -> None:
    run = Run.from_events(agent_run(rid()))
    calls = run.llm_calls()
    assert [c.attempt for c in calls] == [1, 2, None]
    assert calls[0].error is not None and calls[0].output is None
    assert calls[1].usage is not None and calls[1].usage.input_tokens == 1000
    assert calls[2].cost_nanos == 10_000_000 and str(calls[2].cost_usd) == "0.01"
    assert (calls[2].provider, calls[2].model) == ("openai", "gpt-4o-mini")
    # a framework's span around the provider's call (which reported the usage) is not a second call
    run_id, outer, inner = rid(), sid(), sid()
    wrapped = Run.from_events(
        [
            run_started(run_id),
            recorded(run_id, outer, BASE_TS, kind="llm", name="langchain.chat", input="hi"),
            recorded(
                run_id,
                inner,
                BASE_TS,
                kind="llm",
                name="openai.chat",
                parent_span_id=outer,
                usage=llm_usage(),
            ),
        ]
    )
    assert [c.name for c in wrapped.llm_calls()] == ["openai.chat"]
    assert [s.id for s in wrapped.llm_spans()] == [inner]


def test_messages_are_the_longest_conversation_then_the_reply_then_the_output() -> None:
    run = Run.from_events(agent_run(rid()))
    assert run.messages() == [
        {"role": "system", "content": "You are support."},
        {"role": "user", "content": "Where is 42?"},
        {"role": "assistant", "content": None},
        {"role": "tool", "content": "shipped"},  # text blocks become text
        {"role": "assistant", "content": "It shipped."},  # the reply; the same output is not repeated
    ]
    otlp = Run.from_events(otlp_run(rid()))
    assert otlp.messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Rain."},
        {"role": "assistant", "content": 1.5},  # the run's output, unlike the reply
    ]


def test_messages_of_a_run_without_model_calls_are_its_inputs_and_output() -> None:
    run_id = rid()
    run = Run.from_events([run_started(run_id), run_ended(run_id, output={"answer": "shipped"})])
    assert run.messages() == [
        {"role": "user", "content": {"question": "where is my order?"}},
        {"role": "assistant", "content": {"answer": "shipped"}},
    ]
    assert Run.from_events(running_run(rid())).messages()[-1]["role"] == "user"


def test_a_side_call_with_a_shorter_prompt_is_not_the_conversation() -> None:
    run_id = rid()
    main, side = sid(), sid()
    long = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    run = Run.from_events(
        [
            run_started(run_id),
            recorded(run_id, main, BASE_TS, kind="llm", name="chat", input=long, output="d"),
            recorded(
                run_id, side, BASE_TS + MS, kind="llm", name="classify", input="is this rude? d", output="no"
            ),
        ]
    )
    assert [m["content"] for m in run.messages()] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("recorded_input", "messages"),
    [
        (None, []),
        ("hi", [{"role": "user", "content": "hi"}]),
        ({"q": 1}, [{"role": "user", "content": {"q": 1}}]),
        (
            {"system": "be kind", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
            [{"role": "system", "content": "be kind"}, {"role": "user", "content": "x"}],
        ),
        (
            {"messages": [{"role": "user", "content": "x"}]},
            [{"role": "user", "content": "x"}],
        ),
        (
            [{"message.role": "user", "message.content": "x"}],  # OpenInference, flattened
            [{"role": "user", "content": "x"}],
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": "u"}, {"type": "text", "text": "x"}],
                }
            ],
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": "u"}, {"type": "text", "text": "x"}],
                }
            ],
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            [{"role": "user", "content": "a\nb"}],
        ),
        (["a", "b"], [{"role": "user", "content": ["a", "b"]}]),
    ],
)
def test_to_messages(recorded_input: Any, messages: list[dict[str, Any]]) -> None:
    assert to_messages(recorded_input) == messages


def test_built_ins_that_read_the_run_row_only_judge_the_same_without_spans_or_scores(
    store: Store, project: Project
) -> None:
    """A batch job loads only what an evaluator reads: each built-in that says it reads the run's
    own row gives the same outcome on a snapshot without spans and scores, and reading what was not
    loaded is an error, never an empty answer."""
    from controlroom.evals import builtins as b
    from controlroom.evals.evaluator import evaluate

    made = {
        "run_succeeded": {},
        "cost_within": {"max_usd": "1"},
        "latency_within": {"max_seconds": 60},
        "output_is_json": {},
        "output_matches_schema": {"schema": {"type": "object"}},
        "output_matches_regex": {"pattern": "order"},
        "reference_exact": {},
        "reference_contains": {},
        "reference_fuzzy": {},
    }
    assert set(made) == b.RUN_ROW_ONLY
    runs = {rid(): build for build in (agent_run, otlp_run, running_run) for _ in range(2)}
    failed = rid()
    events = {run_id: build(run_id) for run_id, build in runs.items()}
    events[failed] = agent_run(failed, fail=True)
    send(store, project, [e for evs in events.values() for e in evs])
    with store.read() as conn:
        full = load_runs(conn, project.id, list(events))
        lean = load_runs(conn, project.id, list(events), reads=())
    for name, params in made.items():
        e = b.builtin(name, **params)
        assert e.reads == frozenset(), name
        for run_id in events:
            got = evaluate(e, lean[run_id].with_reference("order"))
            want = evaluate(e, full[run_id].with_reference("order"))
            assert got == _same_but_time(want, got), (name, run_id)
    assert (
        b.builtin("step_count", max=3).reads
        == b.builtin("tokens_within", max=9).reads
        == frozenset({"spans"})
    )
    some = next(iter(lean.values()))
    with pytest.raises(RuntimeError, match="loaded without its spans"):
        list(some.spans)
    with pytest.raises(RuntimeError, match="loaded without its scores"):
        len(some.scores)


def _same_but_time(a: Any, b: Any) -> Any:
    """``a`` with ``b``'s timing (an outcome records how long it took)."""
    from dataclasses import replace

    return replace(a, seconds=b.seconds)
