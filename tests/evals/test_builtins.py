"""The built-in evaluators on runs folded from events: every verdict, every trajectory mode with
every way of comparing arguments, the not-applicable cases, and parameters refused when the
evaluator is made (a ValueError naming the parameter)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from controlroom.evals import builtins as b
from controlroom.evals.evaluator import Evaluator, Outcome, Score, evaluate
from controlroom.evals.snapshot import Run
from factories import BASE_TS, event, llm_usage, rid, run_ended, run_started, sid

MS = 10**6
NO_OUTPUT = object()


def make_run(
    *,
    tools: Sequence[tuple[Any, ...]] = (),
    status: str = "succeeded",
    output: Any = "It shipped.",
    reference: Any = None,
    llm_calls: int = 0,
    usage: dict[str, int] | None = None,
    model: str = "gpt-4o-mini",
    cost_usd: str | list[str | None] | None = None,
    seconds: float = 0.1,
    inputs: Any = None,
) -> Run:
    """A run of ``llm_calls`` model calls (each reporting ``usage``, and ``cost_usd``: one for all,
    or one per call) then ``tools`` ((name, arguments) or (name, arguments, "error")), ending
    ``status`` with ``output`` (or still running)."""
    run_id = rid()
    events = [run_started(run_id, ts=BASE_TS, **({"inputs": inputs} if inputs is not None else {}))]
    t = BASE_TS + MS
    costs = cost_usd if isinstance(cost_usd, list) else [cost_usd] * llm_calls
    for cost in costs:
        body: dict[str, Any] = {"span_id": sid(), "kind": "llm", "name": "chat", "ended_at": t + MS}
        body |= {"provider": "openai", "model": model, "input": "hi", "output": "hello"}
        if usage is not None:
            body["usage"] = usage
        if cost is not None:
            body["cost_usd"] = cost
        events.append(event("span.recorded", run_id, body, ts=t))
        t += 2 * MS
    for name, arguments, *outcome in tools:
        body = {"span_id": sid(), "kind": "tool", "name": name, "ended_at": t + MS, "input": arguments}
        if outcome:
            body |= {"status": "error", "error": {"type": "ToolError", "message": "down"}}
        events.append(event("span.recorded", run_id, body, ts=t))
        t += 2 * MS
    if status != "running":
        end: dict[str, Any] = {"status": status}
        if output is not NO_OUTPUT:
            end["output"] = output
        if status == "failed":
            end["error"] = {"type": "Timeout", "message": "the model did not answer"}
        events.append(run_ended(run_id, ts=BASE_TS + int(seconds * 1e9), **end))
    return Run.from_events(events, reference=reference)


def judge(ev: Evaluator[..., Any], run: Run) -> Outcome:
    outcome = evaluate(ev, run)
    assert outcome.status != "error", outcome.error
    return outcome


def verdict(ev: Evaluator[..., Any], run: Run) -> bool | None:
    """The boolean verdict, or None when not applicable."""
    outcome = judge(ev, run)
    if outcome.status == "not_applicable":
        return None
    (score,) = outcome.scores
    assert score.kind == "boolean" and score.name == ev.name
    return score.passed


# -- the run's outcome -------------------------------------------------------------------------------


def test_run_succeeded() -> None:
    ev = b.run_succeeded()
    assert verdict(ev, make_run()) is True
    for status in ("failed", "cancelled"):
        assert verdict(ev, make_run(status=status)) is False
    assert verdict(ev, make_run(status="running")) is None
    (score,) = judge(ev, make_run(status="failed")).scores
    assert score.comment == "failed — Timeout: the model did not answer"


# -- trajectories --------------------------------------------------------------------------------------

A1 = ("lookup", {"id": 1})
A2 = ("lookup", {"id": 2})
R1 = ("refund", {"id": 1, "usd": 5})
E1 = {"name": "lookup", "arguments": {"id": 1}}
E2 = {"name": "lookup", "arguments": {"id": 2}}
ER = {"name": "refund", "arguments": {"id": 1, "usd": 5}}
ER_PART = {"name": "refund", "arguments": {"id": 1}}

TRAJECTORIES = [
    # (expected, the run's calls, mode, arguments, verdict)
    # strict: same calls, same order
    ([E1, ER], [A1, R1], "strict", "exact", True),
    ([ER, E1], [A1, R1], "strict", "exact", False),
    ([E1], [A1, R1], "strict", "exact", False),
    ([E1, ER, E2], [A1, R1], "strict", "exact", False),
    ([E2, ER], [A1, R1], "strict", "exact", False),
    ([E1, ER_PART], [A1, R1], "strict", "exact", False),
    ([E1, ER_PART], [A1, R1], "strict", "subset", True),
    ([E2, ER_PART], [A1, R1], "strict", "subset", False),
    ([E2, ER], [A1, R1], "strict", "ignored", True),
    (["lookup", "refund"], [A1, R1], "strict", "exact", True),  # names alone match any arguments
    (["refund", "lookup"], [A1, R1], "strict", "ignored", False),
    ([], [], "strict", "exact", True),
    # unordered: same calls, any order
    ([ER, E1], [A1, R1], "unordered", "exact", True),
    ([ER, E1, E1], [A1, R1], "unordered", "exact", False),
    ([E1], [A1, R1], "unordered", "exact", False),
    ([ER, E2], [A1, R1], "unordered", "exact", False),
    ([ER_PART, E1], [A1, R1], "unordered", "subset", True),
    ([ER_PART, E2], [A1, R1], "unordered", "subset", False),
    ([ER, E2], [A1, R1], "unordered", "ignored", True),
    (["lookup", "lookup"], [A1, A2], "unordered", "exact", True),
    (["lookup", "lookup"], [A1, R1], "unordered", "ignored", False),
    # subset: the run made only expected calls (some may be missing)
    ([E1, E2, ER], [R1, A1], "subset", "exact", True),
    ([E1, ER], [A1, A2], "subset", "exact", False),
    ([E1, ER], [A1, A1], "subset", "exact", False),  # each expected call counts once
    ([E1, ER_PART], [R1], "subset", "subset", True),
    ([E2], [A1], "subset", "subset", False),
    ([E2, ER], [A1], "subset", "ignored", True),
    ([E1], [], "subset", "exact", True),
    # superset: the run made every expected call (and maybe others)
    ([ER, E1], [A2, R1, A1], "superset", "exact", True),
    ([E1, E1], [A1, R1], "superset", "exact", False),
    ([ER_PART], [A1, R1], "superset", "subset", True),
    ([{"name": "refund", "arguments": {"id": 2}}], [A1, R1], "superset", "subset", False),
    ([ER_PART], [A1, R1], "superset", "exact", False),
    ([E2, ER], [A1, R1], "superset", "ignored", True),
    (["refund"], [A1, A2], "superset", "ignored", False),
    ([], [A1], "superset", "exact", True),
]


@pytest.mark.parametrize(("expected", "calls", "mode", "arguments", "passed"), TRAJECTORIES)
def test_trajectory(
    expected: list[Any], calls: list[tuple[Any, ...]], mode: Any, arguments: Any, passed: bool
) -> None:
    ev = b.trajectory(expected=expected, mode=mode, arguments=arguments)
    assert verdict(ev, make_run(tools=calls)) is passed


def test_every_mode_and_arguments_combination_is_covered() -> None:
    covered = {(mode, args) for _, _, mode, args, _ in TRAJECTORIES}
    assert covered == {(m, a) for m in b.TRAJECTORY_MODES for a in b.ARGUMENTS_MODES}
    assert {(mode, args, passed) for _, _, mode, args, passed in TRAJECTORIES if args != "ignored"} >= {
        (m, a, p) for m in b.TRAJECTORY_MODES for a in ("exact", "subset") for p in (True, False)
    }


def test_trajectory_pairs_calls_so_that_everything_that_can_match_does() -> None:
    """Taking the first call that fits would give the general call the specific item's only match."""
    general = {"name": "lookup", "arguments": {"id": 1}}
    specific = {"name": "lookup", "arguments": {"id": 1, "verbose": True}}
    calls = [("lookup", {"id": 1, "verbose": True}), ("lookup", {"id": 1})]
    ev = b.trajectory(expected=[general, specific], mode="superset", arguments="subset")
    assert verdict(ev, make_run(tools=calls)) is True


@pytest.mark.parametrize(
    ("expected_args", "actual_args", "arguments", "passed"),
    [
        ({"n": 1}, {"n": 1.0}, "exact", True),  # JSON numbers: 1 equals 1.0
        ({"n": 1}, {"n": True}, "exact", False),  # but not True
        ({"n": True}, {"n": 1}, "subset", False),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}, "subset", True),  # nested objects are subsets too
        ({"a": [1]}, {"a": [1, 2]}, "subset", False),  # lists are equal or not
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, "exact", False),
        ({"q": "x"}, '{"q": "x"}', "exact", True),  # arguments recorded as JSON text
        ({}, {"q": "x"}, "subset", True),
        ({}, {"q": "x"}, "exact", False),
    ],
)
def test_trajectory_compares_arguments_as_json(
    expected_args: Any, actual_args: Any, arguments: Any, passed: bool
) -> None:
    ev = b.trajectory(expected=[{"name": "t", "arguments": expected_args}], arguments=arguments)
    assert verdict(ev, make_run(tools=[("t", actual_args)])) is passed


def test_a_failed_trajectory_says_why() -> None:
    run = make_run(tools=[A1, R1])
    cases = [
        (b.trajectory(expected=[ER, E1]), "call 1: expected refund"),
        (b.trajectory(expected=[E1]), "2 calls, 1 expected; extra: refund"),
        (b.trajectory(expected=[E1, ER, E2]), "2 calls, 3 expected; missing: lookup"),
        (
            b.trajectory(expected=[E2, ER], mode="unordered"),
            'missing: lookup({"id":2}); not expected: lookup',
        ),
        (b.trajectory(expected=[E1], mode="subset"), 'not expected: refund({"id":1,"usd":5})'),
        (b.trajectory(expected=["send_email"], mode="superset"), "missing: send_email"),
    ]
    for ev, comment in cases:
        (score,) = judge(ev, run).scores
        assert score.passed is False and score.comment is not None and score.comment.startswith(comment), (
            score.comment
        )


# -- tool calls --------------------------------------------------------------------------------------

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}},
    "required": ["id"],
    "additionalProperties": False,
}


def test_tool_arguments_valid() -> None:
    ev = b.tool_arguments_valid(schemas={"lookup": ORDER_SCHEMA})
    assert verdict(ev, make_run(tools=[A1, R1, A2])) is True  # refund has no schema: not judged
    bad = make_run(tools=[A1, ("lookup", {"id": "2"}), ("lookup", {})])
    (score,) = judge(ev, bad).scores
    assert score.passed is False
    assert score.comment is not None and score.comment.startswith("2 of 3 calls invalid: lookup (span ")
    assert (
        "id: '2' is not of type 'integer'" in score.comment and "'id' is a required property" in score.comment
    )
    assert verdict(ev, make_run(tools=[R1])) is None  # no call of a tool with a schema
    assert verdict(ev, make_run()) is None
    assert verdict(ev, make_run(tools=[("lookup", '{"id": 3}')])) is True  # JSON text is parsed


def test_tool_error_rate_gives_a_rate_and_a_verdict() -> None:
    ev = b.tool_error_rate(max=0.25)
    assert ev.higher_is_better is False
    rate, passed = judge(ev, make_run(tools=[A1, ("lookup", {"id": 2}, "error"), R1, A2])).scores
    assert (rate.name, rate.kind, rate.value) == ("tool_error_rate", "numeric", 0.25)
    assert (passed.name, passed.passed) == ("tool_error_rate.pass", True)
    rate, passed = judge(ev, make_run(tools=[("lookup", {}, "error"), A1])).scores
    assert (rate.value, passed.passed, passed.comment) == (0.5, False, "1 of 2 tool calls failed")
    assert judge(ev, make_run()).status == "not_applicable"
    renamed = b.tool_error_rate(name="refund_errors")
    assert [s.name for s in judge(renamed, make_run(tools=[A1])).scores] == [
        "refund_errors",
        "refund_errors.pass",
    ]


def test_no_loops() -> None:
    ev = b.no_loops(k=3)
    assert verdict(ev, make_run(tools=[A1, A1, A2, ("lookup", {"id": 2})])) is True
    looping = make_run(tools=[A1, A2, ("lookup", {"id": 1.0}), R1, A1])
    (score,) = judge(ev, looping).scores
    assert score.passed is False and score.comment == 'lookup called 3 times with the same arguments {"id":1}'
    assert verdict(b.no_loops(k=2), make_run(tools=[A1, A2, A1])) is False
    assert verdict(ev, make_run()) is None


def test_step_count() -> None:
    ev = b.step_count(max=3)
    assert verdict(ev, make_run(llm_calls=2, tools=[A1])) is True
    (score,) = judge(ev, make_run(llm_calls=2, tools=[A1, A2])).scores
    assert score.passed is False and score.comment == "4 steps (2 model calls, 2 tool calls), max 3"
    assert verdict(b.step_count(max=0), make_run()) is True


# -- cost, latency, tokens -------------------------------------------------------------------------


def test_cost_within() -> None:
    ev = b.cost_within(max_usd="0.05")
    assert verdict(ev, make_run(llm_calls=2, cost_usd="0.02", usage=llm_usage())) is True
    (score,) = judge(ev, make_run(llm_calls=3, cost_usd="0.02", usage=llm_usage())).scores
    assert score.passed is False and score.comment == "$0.06 > $0.05"
    assert verdict(ev, make_run()) is True  # no calls: it cost nothing
    # a model with no known price: unknown unless what is known already exceeds the limit
    assert verdict(ev, make_run(llm_calls=1, usage=llm_usage(), model="private-llm")) is None
    known = make_run(llm_calls=2, usage=llm_usage(), model="private-llm", cost_usd=["0.5", None])
    assert verdict(ev, known) is False  # $0.50 known, one call unpriced: over the limit anyway
    under = make_run(llm_calls=2, usage=llm_usage(), model="private-llm", cost_usd=["0.01", None])
    assert verdict(ev, under) is None
    assert verdict(ev, make_run(status="running", llm_calls=1, cost_usd="0.01", usage=llm_usage())) is None
    assert verdict(ev, make_run(status="running", llm_calls=1, cost_usd="0.5", usage=llm_usage())) is False


def test_latency_within() -> None:
    ev = b.latency_within(max_seconds=2)
    assert verdict(ev, make_run(seconds=1.5)) is True
    (score,) = judge(ev, make_run(seconds=2.5)).scores
    assert score.passed is False and score.comment == "2.500 s > 2 s"
    assert verdict(ev, make_run(status="running")) is None


def test_tokens_within() -> None:
    ev = b.tokens_within(max=2000)
    assert verdict(ev, make_run(llm_calls=1, usage=llm_usage(1000, 200))) is True
    (score,) = judge(ev, make_run(llm_calls=2, usage=llm_usage(1000, 200))).scores
    assert score.passed is False and score.comment == "2400 tokens > 2000"
    assert verdict(ev, make_run(llm_calls=1)) is None  # no usage reported: unknown
    assert verdict(ev, make_run()) is None
    assert verdict(ev, make_run(status="running", llm_calls=1, usage=llm_usage(1000, 200))) is None


# -- the output ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "passed"),
    [
        ('{"answer": 42}', True),
        (" [1, 2] ", True),
        ("42", True),
        ("It shipped.", False),
        ('{"answer": 42', False),
        ({"answer": 42}, True),
        ([1], True),
        (NO_OUTPUT, None),
    ],
)
def test_output_is_json(output: Any, passed: bool | None) -> None:
    assert verdict(b.output_is_json(), make_run(output=output)) is passed


def test_output_matches_schema() -> None:
    ev = b.output_matches_schema(schema={"type": "object", "required": ["answer"]})
    assert verdict(ev, make_run(output={"answer": 1})) is True
    assert verdict(ev, make_run(output='{"answer": 1}')) is True  # JSON text is parsed
    (score,) = judge(ev, make_run(output={"reply": 1})).scores
    assert score.passed is False and score.comment == "'answer' is a required property"
    assert verdict(ev, make_run(output="not json")) is False  # judged as a string
    assert verdict(b.output_matches_schema(schema={"type": "string"}), make_run(output="plain")) is True
    assert verdict(ev, make_run(output=NO_OUTPUT)) is None


def test_output_matches_regex() -> None:
    ev = b.output_matches_regex(pattern=r"order #\d+")
    assert verdict(ev, make_run(output="Your order #42 shipped.")) is True
    assert verdict(ev, make_run(output="Your ORDER #42 shipped.")) is False
    assert (
        verdict(b.output_matches_regex(pattern="order", ignore_case=True), make_run(output="ORDER")) is True
    )
    assert verdict(
        b.output_matches_regex(pattern=r'"status":"shipped"'), make_run(output={"status": "shipped"})
    )
    assert verdict(b.output_matches_regex(pattern="^ship$"), make_run(output="shipped")) is False
    assert verdict(ev, make_run(output=NO_OUTPUT)) is None


# -- the reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "reference", "options", "passed"),
    [
        ("Paris", "Paris", {}, True),
        ("  Paris\n", "Paris", {}, True),
        ("paris", "Paris", {}, False),
        ("paris", "Paris", {"ignore_case": True}, True),
        ("Paris, France", "Paris", {}, False),
        ({"city": "Paris", "n": 1}, {"n": 1.0, "city": "Paris"}, {}, True),
        ('{"city": "Paris"}', {"city": "Paris"}, {}, True),  # JSON text against a structured reference
        ({"ok": True}, {"ok": 1}, {}, False),
        (42, "42", {}, False),
        (NO_OUTPUT, "Paris", {}, False),
        ("Paris", None, {}, None),
    ],
)
def test_reference_exact(output: Any, reference: Any, options: dict[str, Any], passed: bool | None) -> None:
    assert verdict(b.reference_exact(**options), make_run(output=output, reference=reference)) is passed


@pytest.mark.parametrize(
    ("output", "reference", "options", "passed"),
    [
        ("The capital is Paris.", "Paris", {}, True),
        ("The capital is paris.", "Paris", {}, False),
        ("The capital is paris.", "Paris", {"ignore_case": True}, True),
        ({"answer": "Paris", "n": 2}, "Paris", {}, True),  # a structured output's JSON text
        ("The answer is 42", 42, {}, True),
        (NO_OUTPUT, "Paris", {}, False),
        ("Paris", None, {}, None),
    ],
)
def test_reference_contains(
    output: Any, reference: Any, options: dict[str, Any], passed: bool | None
) -> None:
    assert verdict(b.reference_contains(**options), make_run(output=output, reference=reference)) is passed


def test_reference_fuzzy_gives_a_similarity_and_a_verdict() -> None:
    ev = b.reference_fuzzy(threshold=0.8)
    similarity, passed = judge(ev, make_run(output="It has shipped!", reference="it has shipped")).scores
    assert (similarity.name, similarity.kind, similarity.value) == ("reference_fuzzy", "numeric", 1.0)
    assert (passed.name, passed.passed) == ("reference_fuzzy.pass", True)
    similarity, passed = judge(ev, make_run(output="It shipped yesterday", reference="it has shipped")).scores
    assert similarity.value is not None and 0.5 < similarity.value < 0.8 and passed.passed is False
    strict = b.reference_fuzzy(normalize=False)
    (similarity, _) = judge(strict, make_run(output="It has shipped!", reference="it has shipped")).scores
    assert similarity.value is not None and similarity.value < 1.0
    sorted_tokens = b.reference_fuzzy(scorer="token_sort_ratio")
    (similarity, _) = judge(
        sorted_tokens, make_run(output="shipped it has", reference="it has shipped")
    ).scores
    assert similarity.value == 1.0
    (similarity, passed) = judge(ev, make_run(output=NO_OUTPUT, reference="x")).scores
    assert (similarity.value, passed.passed) == (0.0, False)
    assert judge(ev, make_run(output="x")).status == "not_applicable"


# -- parameters and the registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("trajectory", {"expected": ["a"], "mode": "fuzzy"}, "parameter 'mode' must be one of strict"),
        (
            "trajectory",
            {"expected": ["a"], "arguments": "loose"},
            "parameter 'arguments' must be one of exact",
        ),
        ("trajectory", {"expected": "lookup"}, "parameter 'expected' must be a list"),
        ("trajectory", {"expected": [""]}, r"parameter 'expected\[0\]' is an empty tool name"),
        ("trajectory", {"expected": ["a", 3]}, r"parameter 'expected\[1\]' must be a tool name"),
        (
            "trajectory",
            {"expected": [{"tool": "a"}]},
            r"parameter 'expected\[0\]' has unknown keys \['tool'\]",
        ),
        ("trajectory", {"expected": [{"arguments": {}}]}, r"parameter 'expected\[0\]' needs a name"),
        (
            "trajectory",
            {"expected": [{"name": "a", "arguments": {1j}}]},
            r"'expected\[0\].arguments' must be JSON",
        ),
        ("tool_arguments_valid", {"schemas": {}}, "parameter 'schemas' must be a non-empty"),
        (
            "tool_arguments_valid",
            {"schemas": {"a": {"type": 5}}},
            r"parameter \"schemas\['a'\]\" is not a valid",
        ),
        ("tool_arguments_valid", {"schemas": {"a": "object"}}, r"\"schemas\['a'\]\" must be a JSON schema"),
        ("tool_error_rate", {"max": 1.5}, "parameter 'max' must be between 0 and 1"),
        ("tool_error_rate", {"max": "0.1"}, "parameter 'max' must be a finite number"),
        ("no_loops", {"k": 1}, "parameter 'k' must be an integer of at least 2"),
        ("no_loops", {"k": 2.5}, "parameter 'k' must be an integer"),
        ("step_count", {"max": -1}, "parameter 'max' must be an integer of at least 0"),
        ("step_count", {"max": True}, "parameter 'max' must be an integer"),
        ("cost_within", {"max_usd": "lots"}, "parameter 'max_usd' 'lots' is not a decimal number"),
        ("cost_within", {"max_usd": -1}, "parameter 'max_usd'"),
        ("latency_within", {"max_seconds": -1}, "parameter 'max_seconds' must be at least 0"),
        ("latency_within", {"max_seconds": float("nan")}, "parameter 'max_seconds' must be a finite number"),
        ("tokens_within", {"max": 1.5}, "parameter 'max' must be an integer"),
        (
            "output_matches_schema",
            {"schema": {"type": "nope"}},
            "parameter 'schema' is not a valid JSON schema",
        ),
        ("output_matches_regex", {"pattern": "(unclosed"}, "parameter 'pattern' is not a regular expression"),
        ("output_matches_regex", {"pattern": 5}, "parameter 'pattern' must be a string"),
        (
            "output_matches_regex",
            {"pattern": "a", "ignore_case": "yes"},
            "parameter 'ignore_case' must be True",
        ),
        ("reference_exact", {"ignore_case": 1}, "parameter 'ignore_case' must be True or False"),
        ("reference_fuzzy", {"threshold": 80}, "parameter 'threshold' must be between 0 and 1"),
        ("reference_fuzzy", {"scorer": "jaro"}, "parameter 'scorer' must be one of ratio"),
        ("run_succeeded", {"name": ""}, "parameter 'name' must be a non-empty string"),
        ("run_succeeded", {"max": 1}, "run_succeeded: unknown parameter 'max'; its parameters: name"),
        ("step_count", {}, "step_count: parameter 'max' is required"),
        ("judge", {}, "no built-in evaluator 'judge'; the built-ins: run_succeeded, trajectory"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        b.builtin(name, **params)


def test_the_registry_makes_every_built_in() -> None:
    required: dict[str, dict[str, Any]] = {
        "trajectory": {"expected": ["lookup"]},
        "tool_arguments_valid": {"schemas": {"lookup": ORDER_SCHEMA}},
        "step_count": {"max": 5},
        "cost_within": {"max_usd": "0.05"},
        "latency_within": {"max_seconds": 2},
        "tokens_within": {"max": 1000},
        "output_matches_schema": {"schema": {"type": "string"}},
        "output_matches_regex": {"pattern": "shipped"},
    }
    run = make_run(llm_calls=1, usage=llm_usage(), tools=[A1], reference="It shipped.")
    for name in b.BUILTINS:
        if name == "llm_judge":  # the one that asks a model: tests/evals/test_judge.py
            continue
        ev = b.builtin(name, **required.get(name, {}))
        assert ev.name == name and ev.version == "1" and ev.description
        outcome = evaluate(ev, run)
        assert outcome.status == "scored", (name, outcome)
        assert all(s.value is not None and 0 <= s.value <= 1 for s in outcome.scores)
    assert b.builtin("cost_within", max_usd=0.05).params == {"max_usd": "0.05"}
    assert b.builtin("trajectory", expected=[E1, "refund"]).params["expected"] == [E1, "refund"]
    assert b.builtin("no_loops", name="loops_of_4", k=4).name == "loops_of_4"


def test_a_run_without_what_a_built_in_judges_is_not_applicable_not_a_failure() -> None:
    bare = make_run(status="running", output=NO_OUTPUT)
    not_applicable = [
        b.run_succeeded(),
        b.tool_arguments_valid(schemas={"lookup": ORDER_SCHEMA}),
        b.tool_error_rate(),
        b.no_loops(),
        b.cost_within(max_usd=1),
        b.latency_within(max_seconds=1),
        b.tokens_within(max=1),
        b.output_is_json(),
        b.output_matches_schema(schema={}),
        b.output_matches_regex(pattern="x"),
        b.reference_exact(),
        b.reference_contains(),
        b.reference_fuzzy(),
    ]
    for ev in not_applicable:
        assert evaluate(ev, bare).status == "not_applicable", ev.name
    # what applies to any run: its trajectory (none: it made no calls), its step count
    assert verdict(b.trajectory(expected=[]), bare) is True
    assert verdict(b.step_count(max=1), bare) is True


def test_a_built_in_is_a_score_list_or_verdict_of_the_documented_shape() -> None:
    scores = judge(b.reference_fuzzy(name="close"), make_run(reference="It shipped.")).scores
    assert [(s.name, s.kind) for s in scores] == [("close", "numeric"), ("close.pass", "boolean")]
    assert isinstance(scores[1], Score)


# -- the documentation's examples ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "evals.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of a section of docs/evals.md (up to the next heading of its level)."""
    level = len(section.split(" ", 1)[0])
    blocks: list[list[str]] = []
    inside = fenced = collecting = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            collecting = fenced and inside and line == "```python"
            if collecting:
                blocks.append([])
        elif collecting:
            blocks[-1].append(line)
        elif not fenced and re.match(r"#+ ", line):
            if inside and len(line.split(" ", 1)[0]) <= level:
                break
            inside = inside or line == section
    return ["\n".join(b) + "\n" for b in blocks]


def test_the_docs_testing_example_runs() -> None:
    (code,) = python_blocks("### Testing an evaluator")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_the_docs_evaluators_score_as_documented() -> None:
    blocks = python_blocks("## Writing an evaluator")
    namespace: dict[str, Any] = {}
    for code in (block for block in blocks if "@controlroom.evaluator" in block):
        exec(compile(code, str(DOC), "exec"), namespace)
    polite, quality = namespace["answered_politely"], namespace["answer_quality"]
    assert evaluate(polite, make_run(output="Thank you, it shipped.")).scores[0].passed is True
    assert evaluate(polite, make_run(output=NO_OUTPUT)).status == "not_applicable"
    scores = evaluate(quality, make_run(output="Dear customer, it shipped.")).scores
    assert [(s.name, s.value, s.label) for s in scores] == [
        ("answer_quality", 4.0, None),
        ("answer_quality.tone", None, "formal"),
    ]
    (registry,) = python_blocks("## Built-in evaluators")
    *made, failing = registry.strip().splitlines()[:-1]
    exec("\n".join(made), namespace)
    with pytest.raises(ValueError) as refused:
        exec(failing, namespace)
    assert f"# ValueError: {refused.value}" in registry
