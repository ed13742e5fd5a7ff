"""Evaluators: the decorator, how each kind of return value becomes scores (or an error, never a
clipped score), exceptions that never escape evaluate(), async evaluators from sync code, from
inside a running loop and awaited, and the SDK import that needs none of the server."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import subprocess
import sys
import textwrap
import threading
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pytest

import controlroom
from controlroom.evals.evaluator import Evaluator, Outcome, Score, aevaluate, evaluate, evaluator

RUN: Any = SimpleNamespace(status="succeeded", output="It shipped.")  # evaluators only read what they use


def outcome_of(result: Any, **options: Any) -> Outcome:
    return evaluate(evaluator(name="judge", **options)(lambda run: result), RUN)


# -- the decorator -------------------------------------------------------------------------------------


def test_the_decorator_keeps_a_plain_callable_function() -> None:
    @controlroom.evaluator
    def succeeded(run: Any) -> bool:
        """The run ended well.

        More detail that is not the description."""
        return bool(run.status == "succeeded")

    assert isinstance(succeeded, Evaluator)
    assert succeeded(RUN) is True  # still the function
    assert (succeeded.name, succeeded.version, succeeded.range) == ("succeeded", "1", (0.0, 1.0))
    assert succeeded.description == "The run ended well."
    assert succeeded.__name__ == "succeeded" and succeeded.__wrapped__.__name__ == "succeeded"
    assert succeeded.higher_is_better is True and not succeeded.is_async


def test_the_decorator_with_options() -> None:
    @evaluator(name="grade", version="2", range=(1, 5), higher_is_better=False, description="A grade.")
    def grade(run: Any) -> int:
        return 3

    assert (grade.name, grade.version, grade.range, grade.higher_is_better) == (
        "grade",
        "2",
        (1.0, 5.0),
        False,
    )
    assert grade.description == "A grade."
    assert evaluate(grade, RUN).scores == (Score("grade", 3.0, kind="numeric"),)
    with pytest.raises(TypeError):
        grade.params["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": "x" * 257}, "name must be"),
        ({"version": ""}, "version must be"),
        ({"range": (1, 0)}, "low < high"),
        ({"range": (0, math.inf)}, "two finite numbers"),
        ({"range": (0, 1, 2)}, "two numbers"),
        ({"range": (False, 1)}, "two finite numbers"),
        ({"range": ("0", "1")}, "two finite numbers"),
        ({"higher_is_better": "yes"}, "True or False"),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluator(**options)(lambda run: True)


def test_only_functions_are_decorated() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        evaluator(42)  # type: ignore[call-overload]


# -- return values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "scores"),
    [
        (True, [Score("judge", 1.0, kind="boolean")]),
        (False, [Score("judge", 0.0, kind="boolean")]),
        (1, [Score("judge", 1.0, kind="numeric")]),
        (0, [Score("judge", 0.0, kind="numeric")]),
        (0.25, [Score("judge", 0.25, kind="numeric")]),
        ("polite", [Score("judge", label="polite", kind="categorical")]),
        (Score(value=0.5, comment="why"), [Score("judge", 0.5, comment="why", kind="numeric")]),
        (Score("own", label="x"), [Score("own", label="x", kind="categorical")]),
        (
            [Score(value=True), Score("judge.detail", 0.5), Score("tone", label="warm", value=1)],
            [
                Score("judge", 1.0, kind="boolean"),
                Score("judge.detail", 0.5, kind="numeric"),
                Score("tone", 1.0, "warm", kind="numeric"),
            ],
        ),
        ((Score(value=False),), [Score("judge", 0.0, kind="boolean")]),
        (Fraction(1, 4), [Score("judge", 0.25, kind="numeric")]),  # any real number (numpy's too)
    ],
)
def test_return_values_become_scores(result: Any, scores: list[Score]) -> None:
    outcome = outcome_of(result)
    assert outcome.status == "scored" and outcome.error is None
    assert list(outcome.scores) == scores
    assert (outcome.evaluator, outcome.version) == ("judge", "1")


@pytest.mark.parametrize("result", [None, []])
def test_none_or_no_scores_is_not_applicable(result: Any) -> None:
    outcome = outcome_of(result)
    assert (outcome.status, outcome.scores, outcome.error) == ("not_applicable", (), None)


@pytest.mark.parametrize(
    ("result", "options", "error", "message"),
    [
        (1.5, {}, "ScoreOutOfRange", r"returned 1.5, outside the declared range \[0.0, 1.0\]"),
        (-0.01, {}, "ScoreOutOfRange", "outside"),
        (6, {"range": (1, 5)}, "ScoreOutOfRange", r"\[1.0, 5.0\]"),
        ([Score(value=2.0)], {}, "ScoreOutOfRange", "outside"),
        (math.nan, {}, "InvalidScore", "must be finite"),
        (math.inf, {"range": (0, 10)}, "InvalidScore", "must be finite"),
        ("", {}, "InvalidScore", "a label has 1 to 256"),
        ("x" * 257, {}, "InvalidScore", "a label has 1 to 256"),
        ({"score": 1}, {}, "InvalidScore", "returned dict"),
        (b"yes", {}, "InvalidScore", "returned bytes"),
        ([Score(value=1), 0.5], {}, "InvalidScore", "holding float"),
        ([Score(value=1), Score(value=0)], {}, "InvalidScore", "two scores named 'judge'"),
    ],
)
def test_values_that_are_not_scores_are_eval_errors(
    result: Any, options: dict[str, Any], error: str, message: str
) -> None:
    outcome = outcome_of(result, **options)
    assert outcome.status == "error" and outcome.scores == ()
    assert outcome.error is not None and outcome.error.type == error
    assert outcome.error.traceback == ""  # nothing in the evaluator raised
    assert outcome.seconds >= 0
    assert re.search(message, outcome.error.message), outcome.error.message


def test_a_boolean_score_in_a_list_is_not_held_to_the_numeric_range() -> None:
    outcome = outcome_of([Score(value=True)], range=(2, 3))
    assert outcome.status == "scored"


# -- Score -----------------------------------------------------------------------------------------


def test_a_score_infers_its_kind() -> None:
    assert Score(value=True).kind == "boolean" and Score(value=True).value == 1.0
    assert Score(value=True).passed is True and Score(value=False).passed is False
    assert Score(value=3).kind == "numeric" and Score(value=3).passed is None
    assert Score(label="a").kind == "categorical"
    assert Score(value=0.5, label="meh").kind == "numeric"
    assert Score(value=1, label="good", kind="categorical").kind == "categorical"
    assert Score(value=1, kind="boolean").passed is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "a categorical Score needs a label"),
        ({"kind": "numeric", "label": "a"}, "a numeric Score needs a value"),
        ({"kind": "boolean", "value": 0.5}, "True or False"),
        ({"kind": "ordinal", "value": 1}, "kind must be one of"),
        ({"value": math.nan}, "finite"),
        ({"value": "1"}, "bool or a number"),
        ({"label": ""}, "label must be a non-empty string"),
        ({"label": "x" * 257}, "label must be"),
        ({"name": "x" * 257, "value": 1}, "name must be"),
        ({"value": 1, "comment": 5}, "comment must be a string"),
    ],
)
def test_a_bad_score_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Score(**fields)


def test_a_long_comment_is_cut() -> None:
    comment = Score(value=1, comment="x" * 10_000).comment
    assert comment is not None and len(comment) == 8192


def test_a_score_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Score(value=1).value = 2  # type: ignore[misc]


# -- exceptions ------------------------------------------------------------------------------------


def test_an_exception_is_an_eval_error_with_its_traceback() -> None:
    @evaluator
    def broken(run: Any) -> bool:
        return bool(run.missing_field)

    outcome = evaluate(broken, RUN)
    assert outcome.status == "error" and outcome.scores == ()
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == (
        "AttributeError",
        "'types.SimpleNamespace' object has no attribute 'missing_field'",
    )
    assert "in broken" in outcome.error.traceback and "run.missing_field" in outcome.error.traceback
    assert "evals/evaluator.py" not in outcome.error.traceback  # the evaluator's frames, not ours
    assert broken.name == outcome.evaluator


def test_an_invalid_score_built_inside_the_evaluator_is_an_error_too() -> None:
    outcome = evaluate(evaluator(lambda run: Score(value=math.inf)), RUN)
    assert (
        outcome.error is not None and outcome.error.type == "ValueError" and "finite" in outcome.error.message
    )


def test_a_plain_function_is_evaluated_as_an_evaluator_of_its_name() -> None:
    def answered(run: Any) -> bool:
        return bool(run.output)

    outcome = evaluate(answered, RUN)
    assert outcome.evaluator == "answered" and outcome.scores == (Score("answered", True),)


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def stop(run: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(stop, RUN)


# -- async evaluators ----------------------------------------------------------------------------


@evaluator(name="async_judge")
async def async_judge(run: Any) -> float:
    await asyncio.sleep(0)
    return 0.5


@evaluator
async def async_broken(run: Any) -> float:
    await asyncio.sleep(0)
    raise RuntimeError("the judge is down")


def test_an_async_evaluator_from_sync_code() -> None:
    assert async_judge.is_async
    outcome = evaluate(async_judge, RUN)
    assert outcome.scores == (Score("async_judge", 0.5),)
    failed = evaluate(async_broken, RUN)
    assert failed.error is not None and (failed.error.type, failed.error.message) == (
        "RuntimeError",
        "the judge is down",
    )
    assert "in async_broken" in failed.error.traceback


def test_async_evaluators_share_one_private_loop() -> None:
    loops = []

    @evaluator
    async def which_loop(run: Any) -> bool:
        loops.append((asyncio.get_running_loop(), threading.current_thread().name))
        return True

    evaluate(which_loop, RUN)
    evaluate(which_loop, RUN)
    assert loops[0] == loops[1] and loops[0][1] == "controlroom-evaluate"


def test_sync_evaluate_inside_a_running_loop_blocks_it_but_works() -> None:
    async def main() -> Outcome:
        return evaluate(async_judge, RUN)

    assert asyncio.run(main()).scores == (Score("async_judge", 0.5),)


def test_aevaluate_awaits_on_the_callers_loop() -> None:
    seen = []

    @evaluator
    async def on_loop(run: Any) -> str:
        seen.append(asyncio.get_running_loop())
        return "ok"

    async def main() -> tuple[Outcome, Outcome, Outcome, asyncio.AbstractEventLoop]:
        a = await aevaluate(on_loop, RUN)
        b = await aevaluate(evaluator(lambda run: True), RUN)  # a plain one runs on the caller's thread
        c = await aevaluate(async_broken, RUN)
        return a, b, c, asyncio.get_running_loop()

    a, b, c, loop = asyncio.run(main())
    assert seen == [loop]
    assert a.scores == (Score("on_loop", label="ok"),) and b.status == "scored"
    assert c.error is not None and c.error.type == "RuntimeError"


def test_sync_evaluate_inside_an_async_evaluator_is_an_error_not_a_deadlock() -> None:
    @evaluator
    async def nested(run: Any) -> bool:
        inner = evaluate(async_judge, run)
        assert inner.error is not None
        raise RuntimeError(inner.error.message)

    outcome = evaluate(nested, RUN)
    assert outcome.error is not None and "await aevaluate() instead" in outcome.error.message


def test_a_sync_function_returning_an_awaitable_is_awaited() -> None:
    async def later() -> bool:
        return False

    assert evaluate(lambda run: later(), RUN).scores[0].value == 0.0


# -- the SDK alone ------------------------------------------------------------------------------------

LIGHT = textwrap.dedent(
    """
    import importlib.abc, sys
    from types import SimpleNamespace

    SERVER = set(sys.argv[1:])

    class NoServer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in SERVER:
                raise ImportError(f"{name} is not installed (the light install)")
            return None

    sys.meta_path.insert(0, NoServer())

    import controlroom
    from controlroom.evals.evaluator import evaluate

    @controlroom.evaluator(name="short", range=(0, 100))
    def short(run):
        return [controlroom.Score(value=len(run.output) < 20), controlroom.Score("length", len(run.output))]

    outcome = evaluate(short, SimpleNamespace(output="It shipped."))
    assert outcome.status == "scored", outcome
    assert [s.value for s in outcome.scores] == [1.0, 11.0], outcome
    print(sorted({m.split(".")[0] for m in sys.modules} & SERVER))
    """
)


def test_the_sdk_evaluator_needs_nothing_of_the_server() -> None:
    """As the light install has it (tests/test_light_install.py): none of the server's packages
    can be imported, and controlroom.evaluator still defines and runs an evaluator."""
    server = (
        "fastapi",
        "sqlalchemy",
        "uvicorn",
        "psycopg",
        "alembic",
        "pydantic",
        "starlette",
        "jsonschema",
        "rapidfuzz",
        "numpy",
        "genai_prices",
    )
    done = subprocess.run([sys.executable, "-c", LIGHT, *server], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[]"
