"""Tool-call trajectories compared with an expected one (the ``trajectory`` built-in), and the
JSON comparisons the built-ins share.

JSON values compare as JSON, not as Python: 1 equals 1.0 (JSON has one number type), but ``true``
does not equal 1 (Python's ``True == 1`` would say it does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import orjson

from controlroom.evals.evaluator import Score
from controlroom.evals.snapshot import ToolCall

__all__ = [
    "ARGUMENTS_MODES",
    "TRAJECTORY_MODES",
    "ArgumentsMode",
    "Trajectory",
    "TrajectoryMode",
    "canonical_json",
    "json_equal",
    "json_within",
    "listed",
    "parsed_json",
    "short",
]

TrajectoryMode = Literal["strict", "unordered", "subset", "superset"]
ArgumentsMode = Literal["exact", "ignored", "subset"]
TRAJECTORY_MODES: tuple[TrajectoryMode, ...] = ("strict", "unordered", "subset", "superset")
ARGUMENTS_MODES: tuple[ArgumentsMode, ...] = ("exact", "ignored", "subset")
MAX_COMMENT_ITEMS = 3
_ANY = object()  # an expected call whose arguments are not given: any arguments match


class Trajectory:
    """An expected trajectory, checked once (a ValueError naming the bad parameter, in the
    built-in's words), then compared with any number of runs' tool calls."""

    __slots__ = ("arguments", "expected", "mode")

    def __init__(self, expected: Any, mode: Any, arguments: Any) -> None:
        if mode not in TRAJECTORY_MODES:
            raise _bad("mode", f"must be one of {', '.join(TRAJECTORY_MODES)}, got {mode!r}")
        if arguments not in ARGUMENTS_MODES:
            raise _bad("arguments", f"must be one of {', '.join(ARGUMENTS_MODES)}, got {arguments!r}")
        if isinstance(expected, str | bytes) or not isinstance(expected, Sequence):
            raise _bad("expected", "must be a list of tool names or {name, arguments} objects")
        self.mode: TrajectoryMode = mode
        self.arguments: ArgumentsMode = arguments
        self.expected = tuple(_expected_item(i, item, arguments) for i, item in enumerate(expected))

    def describe(self) -> list[Any]:
        """The expected items as given (JSON values): a configuration's parameters."""
        return [
            w.name if w.arguments is _ANY else {"name": w.name, "arguments": w.arguments}
            for w in self.expected
        ]

    def judge(self, calls: list[ToolCall]) -> bool | Score:
        """True, or a False score whose comment says what differed."""
        want, got = self.expected, [_Actual(c) for c in calls]
        if self.mode == "strict":
            return _strict(want, got)
        pairs = _matching(want, got)
        missing = [_label(w) for i, w in enumerate(want) if i not in pairs]
        paired = set(pairs.values())
        extra = [_label(g) for j, g in enumerate(got) if j not in paired]
        problems = []
        if missing and self.mode in ("unordered", "superset"):
            problems.append(listed(missing, "missing"))
        if extra and self.mode in ("unordered", "subset"):
            problems.append(listed(extra, "not expected"))
        return Score(value=False, comment="; ".join(problems)) if problems else True


# -- JSON ---------------------------------------------------------------------------------------------


def parsed_json(value: Any) -> Any:
    """A text holding JSON, parsed; anything else (a text that is not JSON too) as it is."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def canonical_json(value: Any) -> str:
    """The JSON text of a value, the same for values :func:`json_equal` finds equal (keys
    sorted, integral floats as integers): for counting equal values."""
    return orjson.dumps(_normal(value), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, True does not equal 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def json_within(expected: Any, actual: Any) -> bool:
    """``expected`` is part of ``actual``: its keys present with values alike (nested objects
    alike, recursively); anything but an object must be equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and json_within(v, actual[k]) for k, v in expected.items()
        )
    return json_equal(expected, actual)


def listed(items: list[str], head: str) -> str:
    """``head: a; b; c; and 2 more`` for a comment."""
    more = len(items) - MAX_COMMENT_ITEMS
    return f"{head}: " + "; ".join(items[:MAX_COMMENT_ITEMS]) + (f"; and {more} more" if more > 0 else "")


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- internals ------------------------------------------------------------------------------------


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _bad(parameter: str, message: str) -> ValueError:
    return ValueError(f"trajectory: parameter {parameter!r} {message}")


class _Actual:
    """A call of the run: its name, its arguments (JSON text parsed), their canonical text."""

    __slots__ = ("_key", "arguments", "name")

    def __init__(self, call: ToolCall) -> None:
        self.name = call.name
        self.arguments = parsed_json(call.arguments)
        self._key: str | None = None

    def key(self) -> str:
        if self._key is None:
            self._key = canonical_json(self.arguments)
        return self._key


class _Expected:
    """An expected call, with the test of whether a call matches it."""

    __slots__ = ("arguments", "match", "name")

    def __init__(self, name: str, arguments: Any, mode: ArgumentsMode) -> None:
        self.name = name
        self.arguments = arguments
        if mode == "ignored" or arguments is _ANY:
            self.match: Callable[[_Actual], bool] = lambda call: call.name == name
        elif mode == "exact":
            key = canonical_json(arguments)
            self.match = lambda call: call.name == name and call.key() == key
        else:
            self.match = lambda call: call.name == name and json_within(arguments, call.arguments)


def _expected_item(i: int, item: Any, arguments: ArgumentsMode) -> _Expected:
    where = f"expected[{i}]"
    if isinstance(item, str):
        if not item:
            raise _bad(where, "is an empty tool name")
        return _Expected(item, _ANY, arguments)
    if not isinstance(item, Mapping):
        raise _bad(where, f"must be a tool name or a {{name, arguments}} object, got {item!r}")
    extra = set(item) - {"name", "arguments"}
    if extra:
        raise _bad(where, f"has unknown keys {sorted(extra)}; an item has name and arguments")
    tool = item.get("name")
    if not isinstance(tool, str) or not tool:
        raise _bad(where, "needs a name (a non-empty string)")
    given = item.get("arguments", _ANY)
    if given is not _ANY:
        try:
            given = orjson.loads(orjson.dumps(given))  # a JSON value of its own
        except TypeError as e:
            raise _bad(f"{where}.arguments", f"must be JSON values: {e}") from None
    return _Expected(tool, given, arguments)


def _label(w: _Expected | _Actual) -> str:
    if isinstance(w, _Expected) and w.arguments is _ANY:
        return w.name
    return f"{w.name}({short(canonical_json(w.arguments), 80)})"


def _strict(want: tuple[_Expected, ...], got: list[_Actual]) -> bool | Score:
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if not w.match(g):
            return Score(value=False, comment=f"call {i + 1}: expected {_label(w)}, got {_label(g)}")
    head = f"{len(got)} calls, {len(want)} expected"
    if len(got) < len(want):
        return Score(value=False, comment=listed([_label(w) for w in want[len(got) :]], f"{head}; missing"))
    if len(got) > len(want):
        return Score(value=False, comment=listed([_label(g) for g in got[len(want) :]], f"{head}; extra"))
    return True


def _matching(want: tuple[_Expected, ...], got: list[_Actual]) -> dict[int, int]:
    """A largest pairing of expected items with calls that match them (each used once), by
    augmenting paths (Kuhn's algorithm) within each tool name: taking the first call that fits
    could give a general item the only call a specific one matches. A run's tool calls are tens,
    not thousands."""
    by_name: dict[str, list[int]] = {}
    for j, g in enumerate(got):
        by_name.setdefault(g.name, []).append(j)
    owner: dict[int, int] = {}  # call -> expected item

    def assign(i: int, seen: set[int]) -> bool:
        for j in by_name.get(want[i].name, ()):
            if j in seen or not want[i].match(got[j]):
                continue
            seen.add(j)
            if j not in owner or assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(want)):
        assign(i, set())
    return {i: j for j, i in owner.items()}
