"""The built-in evaluators: judgements that need no model, fast enough for thousands of runs a
second — and ``llm_judge``, the one that asks a model (:mod:`controlroom.evals.judge`).

Each is made by a factory whose parameters are checked when it is made (a ValueError naming the
bad parameter), so a bad configuration fails when it is saved, not on the first run judged.
:data:`BUILTINS` maps each name to its factory and :func:`builtin` makes one from a name and
parameters (what an eval configuration stores).

Score shapes: most built-ins give one boolean score named after the evaluator, and where a failure
has more to it than the verdict (which call, how far over) a comment saying so. ``tool_error_rate``
and ``reference_fuzzy`` give a numeric score (0..1) and a boolean ``<name>.pass`` beside it. Every
built-in returns None (not applicable) when the run lacks what it judges: no reference, no output,
no tool call, a run still running, a cost that unpriced calls leave unknown. Every factory takes
``name=`` (default: the built-in's name) to keep two configurations of one built-in apart; the
``.pass`` score follows it.
"""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import orjson

from controlroom.evals.evaluator import Evaluator, Score
from controlroom.evals.judge import llm_judge
from controlroom.evals.snapshot import Run
from controlroom.evals.trajectory import (
    ARGUMENTS_MODES,
    TRAJECTORY_MODES,
    ArgumentsMode,
    Trajectory,
    TrajectoryMode,
    canonical_json,
    json_equal,
    listed,
    parsed_json,
    short,
)
from controlroom.money import parse_usd, to_usd

__all__ = [
    "ARGUMENTS_MODES",
    "BUILTINS",
    "TRAJECTORY_MODES",
    "builtin",
    "cost_within",
    "latency_within",
    "llm_judge",
    "no_loops",
    "output_is_json",
    "output_matches_regex",
    "output_matches_schema",
    "reference_contains",
    "reference_exact",
    "reference_fuzzy",
    "run_succeeded",
    "step_count",
    "tokens_within",
    "tool_arguments_valid",
    "tool_error_rate",
    "trajectory",
]

RunEvaluator = Evaluator[[Run], Any]
FUZZY_SCORERS = ("ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio", "WRatio")


# -- the run's outcome --------------------------------------------------------------------------


def run_succeeded(*, name: str | None = None) -> RunEvaluator:
    """Boolean: the run ended ``succeeded`` (failed, cancelled or abandoned: False, with the
    error as the comment). Not applicable while it runs."""

    def judge(run: Run) -> bool | Score | None:
        if run.status == "running":
            return None
        if run.status == "succeeded":
            return True
        why = f"{run.error.type}: {run.error.message or ''}" if run.error else ""
        return Score(value=False, comment=f"{run.status}{' — ' + why if why else ''}")

    return _make("run_succeeded", judge, {}, "the run ended succeeded", name)


# -- tool calls ---------------------------------------------------------------------------------


def trajectory(
    *,
    expected: Sequence[str | Mapping[str, Any]],
    mode: TrajectoryMode = "strict",
    arguments: ArgumentsMode = "exact",
    name: str | None = None,
) -> RunEvaluator:
    """Boolean: the run's tool calls match ``expected`` (tool names, or ``{"name", "arguments"}``).

    ``mode``: ``strict`` the same calls in the same order; ``unordered`` the same calls in any
    order; ``subset`` every call the run made is one of the expected (nothing else, some may be
    missing); ``superset`` every expected call was made (others may be too). ``arguments``:
    ``exact`` equal JSON values (1 equals 1.0, not True); ``subset`` the expected arguments are
    part of the call's (nested objects alike); ``ignored`` names only. An expected item without
    ``arguments`` matches any arguments. Each call counts for one expected item at most."""
    expected_trajectory = Trajectory(expected, mode, arguments)
    params = {"expected": expected_trajectory.describe(), "mode": mode, "arguments": arguments}

    def judge(run: Run) -> bool | Score:
        return expected_trajectory.judge(run.tool_calls())

    return _make("trajectory", judge, params, f"tool calls match the expected trajectory ({mode})", name)


def tool_arguments_valid(
    *, schemas: Mapping[str, Mapping[str, Any]], name: str | None = None
) -> RunEvaluator:
    """Boolean: every call of a tool in ``schemas`` ({tool name: JSON schema of its arguments})
    has arguments the schema accepts. Calls of other tools are not judged; not applicable when
    the run called none of these tools."""
    if not isinstance(schemas, Mapping) or not schemas:
        raise _bad("tool_arguments_valid", "schemas", "must be a non-empty {tool name: JSON schema} mapping")
    validators = {
        tool: _validator("tool_arguments_valid", f"schemas[{tool!r}]", s) for tool, s in schemas.items()
    }

    def judge(run: Run) -> bool | Score | None:
        judged = [c for c in run.tool_calls() if c.name in validators]
        if not judged:
            return None
        failures = []
        for call in judged:
            problem = _schema_problem(validators[call.name], parsed_json(call.arguments))
            if problem is not None:
                failures.append(f"{call.name} (span {call.span_id}): {problem}")
        if not failures:
            return True
        return Score(value=False, comment=listed(failures, f"{len(failures)} of {len(judged)} calls invalid"))

    params = {"schemas": {k: dict(v) for k, v in schemas.items()}}
    return _make("tool_arguments_valid", judge, params, "tool call arguments match their schemas", name)


def tool_error_rate(*, max: float = 0.0, name: str | None = None) -> RunEvaluator:
    """The share of the run's tool calls that failed: a numeric score (0..1, lower is better)
    named after the evaluator, and ``<name>.pass`` (boolean: the share is at most ``max``). Not
    applicable without tool calls."""
    limit = _fraction("tool_error_rate", "max", max)
    label = name or "tool_error_rate"

    def judge(run: Run) -> list[Score] | None:
        tools = run.tool_spans()
        if not tools:
            return None
        errors = sum(1 for s in tools if s.status == "error")
        rate = errors / len(tools)
        comment = f"{errors} of {len(tools)} tool calls failed"
        return [Score(value=rate, comment=comment), Score(f"{label}.pass", rate <= limit, comment=comment)]

    return _make(
        "tool_error_rate",
        judge,
        {"max": limit},
        "share of tool calls that failed",
        name,
        higher_is_better=False,
    )


def no_loops(*, k: int = 3, name: str | None = None) -> RunEvaluator:
    """Boolean: no tool was called ``k`` times or more with the same arguments (anywhere in the run,
    a sign of an agent stuck in a loop). Not applicable without tool calls."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise _bad("no_loops", "k", f"must be an integer of at least 2, got {k!r}")

    def judge(run: Run) -> bool | Score | None:
        calls = run.tool_calls()
        if not calls:
            return None
        counts = Counter((c.name, canonical_json(c.arguments)) for c in calls)
        (tool, args), n = counts.most_common(1)[0]
        if n < k:
            return True
        return Score(value=False, comment=f"{tool} called {n} times with the same arguments {short(args)}")

    return _make("no_loops", judge, {"k": k}, f"no tool called {k} times with the same arguments", name)


def step_count(*, max: int, name: str | None = None) -> RunEvaluator:
    """Boolean: the run took at most ``max`` steps, a step being a model call or a tool call."""
    limit = _count("step_count", "max", max)

    def judge(run: Run) -> bool | Score:
        llm, tools = len(run.llm_spans()), len(run.tool_spans())
        steps = llm + tools
        if steps <= limit:
            return True
        return Score(
            value=False, comment=f"{steps} steps ({llm} model calls, {tools} tool calls), max {limit}"
        )

    return _make("step_count", judge, {"max": limit}, f"at most {limit} steps", name)


# -- cost, latency, tokens ----------------------------------------------------------------------


def cost_within(*, max_usd: str | float | int | Decimal, name: str | None = None) -> RunEvaluator:
    """Boolean: the run cost at most ``max_usd``. Not applicable when calls of models without a
    known price leave the cost unknown (unless what is known already exceeds it), or while the
    run is running and still within it."""
    try:
        limit = parse_usd(max_usd, "max_usd")
    except ValueError as e:
        raise _bad("cost_within", "max_usd", str(e).removeprefix("max_usd ")) from None

    def judge(run: Run) -> bool | Score | None:
        if run.cost_nanos > limit:
            return Score(value=False, comment=f"${to_usd(run.cost_nanos)} > ${to_usd(limit)}")
        if run.unpriced_calls or run.status == "running":
            return None
        return True

    return _make("cost_within", judge, {"max_usd": to_usd(limit)}, f"cost at most ${to_usd(limit)}", name)


def latency_within(*, max_seconds: float, name: str | None = None) -> RunEvaluator:
    """Boolean: the run took at most ``max_seconds`` from start to end. Not applicable until it ended."""
    limit = _non_negative("latency_within", "max_seconds", max_seconds)

    def judge(run: Run) -> bool | Score | None:
        took = run.duration_s
        if took is None:
            return None
        if took <= limit:
            return True
        return Score(value=False, comment=f"{took:.3f} s > {limit:g} s")

    return _make("latency_within", judge, {"max_seconds": limit}, f"took at most {limit:g} s", name)


def tokens_within(*, max: int, name: str | None = None) -> RunEvaluator:
    """Boolean: the run's model calls used at most ``max`` tokens (input + output). Not applicable
    when no call reported usage, or while the run is running and still within it."""
    limit = _count("tokens_within", "max", max)

    def judge(run: Run) -> bool | Score | None:
        total = run.total_tokens
        if total > limit:
            return Score(value=False, comment=f"{total} tokens > {limit}")
        if run.status == "running" or not any(s.usage is not None for s in run.spans):
            return None
        return True

    return _make("tokens_within", judge, {"max": limit}, f"at most {limit} tokens", name)


# -- the output ---------------------------------------------------------------------------------


def output_is_json(*, name: str | None = None) -> RunEvaluator:
    """Boolean: the run's output is JSON: a text output parses as JSON; a structured output (an
    object, a list, a number) is JSON already. Not applicable without an output."""

    def judge(run: Run) -> bool | Score | None:
        output = run.output
        if output is None:
            return None
        if not isinstance(output, str):
            return True
        try:
            orjson.loads(output)
        except orjson.JSONDecodeError as e:
            return Score(value=False, comment=f"not JSON: {e}")
        return True

    return _make("output_is_json", judge, {}, "the output is JSON", name)


def output_matches_schema(*, schema: Mapping[str, Any], name: str | None = None) -> RunEvaluator:
    """Boolean: the run's output matches the JSON ``schema`` (a text output is parsed as JSON
    first when it is JSON, else judged as a string). Not applicable without an output."""
    validator = _validator("output_matches_schema", "schema", schema)

    def judge(run: Run) -> bool | Score | None:
        output = run.output
        if output is None:
            return None
        problem = _schema_problem(validator, parsed_json(output))
        return True if problem is None else Score(value=False, comment=problem)

    return _make(
        "output_matches_schema", judge, {"schema": dict(schema)}, "the output matches a JSON schema", name
    )


def output_matches_regex(*, pattern: str, ignore_case: bool = False, name: str | None = None) -> RunEvaluator:
    """Boolean: ``pattern`` (a Python regular expression) is found in the run's output (a
    structured output as its JSON text); anchor it (``^...$``) to match the whole output. Not
    applicable without an output."""
    if not isinstance(pattern, str):
        raise _bad("output_matches_regex", "pattern", "must be a string")
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise _bad("output_matches_regex", "pattern", f"is not a regular expression: {e}") from None
    _flag("output_matches_regex", "ignore_case", ignore_case)

    def judge(run: Run) -> bool | None:
        text = _text(run.output)
        return None if text is None else compiled.search(text) is not None

    params = {"pattern": pattern, "ignore_case": ignore_case}
    return _make("output_matches_regex", judge, params, f"the output matches /{pattern}/", name)


# -- against the reference answer ---------------------------------------------------------------


def reference_exact(*, ignore_case: bool = False, name: str | None = None) -> RunEvaluator:
    """Boolean: the output equals the reference. Texts are compared without leading and trailing
    whitespace (and case, with ``ignore_case``); other JSON values by value (a text output is
    parsed as JSON to be compared with a structured reference). No output: False. Not applicable
    without a reference."""
    _flag("reference_exact", "ignore_case", ignore_case)

    def judge(run: Run) -> bool | Score | None:
        if not run.has_reference:
            return None
        reference, output = run.reference, run.output
        if output is None:
            return Score(value=False, comment="no output")
        if isinstance(reference, str):
            if not isinstance(output, str):
                return False
            a, b = output.strip(), reference.strip()
            return a.casefold() == b.casefold() if ignore_case else a == b
        return json_equal(parsed_json(output), reference)

    return _make(
        "reference_exact", judge, {"ignore_case": ignore_case}, "the output equals the reference", name
    )


def reference_contains(*, ignore_case: bool = False, name: str | None = None) -> RunEvaluator:
    """Boolean: the reference's text is found in the output's (a structured value as its JSON
    text). No output: False. Not applicable without a reference."""
    _flag("reference_contains", "ignore_case", ignore_case)

    def judge(run: Run) -> bool | Score | None:
        if not run.has_reference:
            return None
        output = _text(run.output)
        if output is None:
            return Score(value=False, comment="no output")
        reference = _text(run.reference) or ""
        if ignore_case:
            return reference.casefold() in output.casefold()
        return reference in output

    params = {"ignore_case": ignore_case}
    return _make("reference_contains", judge, params, "the output contains the reference", name)


def reference_fuzzy(
    *, threshold: float = 0.8, scorer: str = "ratio", normalize: bool = True, name: str | None = None
) -> RunEvaluator:
    """The similarity of the output's text to the reference's (rapidfuzz ``scorer``, 0..1): a
    numeric score named after the evaluator, and ``<name>.pass`` (boolean: at least
    ``threshold``). ``normalize``: compare lower-cased, punctuation to spaces (rapidfuzz's
    ``default_process``). No output: similarity 0. Not applicable without a reference."""
    from rapidfuzz import fuzz, utils

    limit = _fraction("reference_fuzzy", "threshold", threshold)
    if scorer not in FUZZY_SCORERS:
        raise _bad("reference_fuzzy", "scorer", f"must be one of {', '.join(FUZZY_SCORERS)}, got {scorer!r}")
    _flag("reference_fuzzy", "normalize", normalize)
    score_fn: Callable[..., float] = getattr(fuzz, scorer)
    processor = utils.default_process if normalize else None
    label = name or "reference_fuzzy"

    def judge(run: Run) -> list[Score] | None:
        if not run.has_reference:
            return None
        output = _text(run.output)
        similarity = (
            0.0 if output is None else score_fn(output, _text(run.reference) or "", processor=processor) / 100
        )
        similarity = min(1.0, max(0.0, similarity))
        return [Score(value=similarity), Score(f"{label}.pass", similarity >= limit)]

    params = {"threshold": limit, "scorer": scorer, "normalize": normalize}
    return _make("reference_fuzzy", judge, params, f"the output is like the reference ({scorer})", name)


# -- the registry -------------------------------------------------------------------------------

BUILTINS: Mapping[str, Callable[..., RunEvaluator]] = MappingProxyType(
    {
        "run_succeeded": run_succeeded,
        "trajectory": trajectory,
        "tool_arguments_valid": tool_arguments_valid,
        "tool_error_rate": tool_error_rate,
        "no_loops": no_loops,
        "step_count": step_count,
        "cost_within": cost_within,
        "latency_within": latency_within,
        "tokens_within": tokens_within,
        "output_is_json": output_is_json,
        "output_matches_schema": output_matches_schema,
        "output_matches_regex": output_matches_regex,
        "reference_exact": reference_exact,
        "reference_contains": reference_contains,
        "reference_fuzzy": reference_fuzzy,
        "llm_judge": llm_judge,
    }
)
"""Every built-in evaluator's factory, by name."""


def builtin(builtin_name: str, /, **params: Any) -> RunEvaluator:
    """The built-in ``builtin_name`` made with ``params``; ValueError naming an unknown built-in,
    an unknown or missing parameter, or a bad value."""
    factory = BUILTINS.get(builtin_name)
    if factory is None:
        raise ValueError(f"no built-in evaluator {builtin_name!r}; the built-ins: {', '.join(BUILTINS)}")
    signature = inspect.signature(factory)
    known = list(signature.parameters)
    for key in params:
        if key not in known:
            raise ValueError(
                f"{builtin_name}: unknown parameter {key!r}; its parameters: {', '.join(known) or 'none'}"
            )
    for key, p in signature.parameters.items():
        if p.default is inspect.Parameter.empty and key not in params:
            raise ValueError(f"{builtin_name}: parameter {key!r} is required")
    return factory(**params)


# -- internals ----------------------------------------------------------------------------------


def _make(
    builtin_name: str,
    judge: Callable[[Run], Any],
    params: dict[str, Any],
    description: str,
    name: str | None,
    *,
    higher_is_better: bool = True,
) -> RunEvaluator:
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _bad(builtin_name, "name", f"must be a non-empty string, got {name!r}")
    return Evaluator(judge, name or builtin_name, "1", (0.0, 1.0), higher_is_better, description, params)


def _bad(builtin_name: str, parameter: str, message: str) -> ValueError:
    return ValueError(f"{builtin_name}: parameter {parameter!r} {message}")


def _flag(builtin_name: str, parameter: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(builtin_name, parameter, f"must be True or False, got {value!r}")


def _number(builtin_name: str, parameter: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(builtin_name, parameter, f"must be a finite number, got {value!r}")
    return float(value)


def _fraction(builtin_name: str, parameter: str, value: Any) -> float:
    number = _number(builtin_name, parameter, value)
    if not 0 <= number <= 1:
        raise _bad(builtin_name, parameter, f"must be between 0 and 1, got {value!r}")
    return number


def _non_negative(builtin_name: str, parameter: str, value: Any) -> float:
    number = _number(builtin_name, parameter, value)
    if number < 0:
        raise _bad(builtin_name, parameter, f"must be at least 0, got {value!r}")
    return number


def _count(builtin_name: str, parameter: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(builtin_name, parameter, f"must be an integer of at least 0, got {value!r}")
    return value


def _validator(builtin_name: str, parameter: str, schema: Any) -> Any:
    """A jsonschema validator of ``schema`` (its draft from ``$schema``, else 2020-12), the schema
    checked first."""
    from jsonschema import exceptions, validators

    if not isinstance(schema, Mapping | bool):
        raise _bad(builtin_name, parameter, "must be a JSON schema (an object)")
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as e:
        raise _bad(builtin_name, parameter, f"is not a valid JSON schema: {e.message}") from None
    return cls(schema)


def _schema_problem(validator: Any, instance: Any) -> str | None:
    if validator.is_valid(instance):
        return None
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(instance))
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"[:500]


def _text(value: Any) -> str | None:
    """A value's text: a string as it is, anything else as its JSON (keys sorted)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
