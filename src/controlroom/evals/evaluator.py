"""Evaluators: plain Python functions over a recorded run, and how what they return becomes scores.

Standard library only: this module is part of the SDK (``controlroom.evaluator``,
``controlroom.Score``), so an agent's own environment can define and unit-test evaluators.

::

    @controlroom.evaluator(name="answered", version="2")
    def answered(run) -> bool:
        return run.status == "succeeded" and bool(run.output)

What an evaluator returns:

============================  ==========================================================
``True`` / ``False``          a boolean score (recorded as value 1.0 / 0.0)
an int or a float             a numeric score; finite and inside the declared ``range``,
                              else the evaluation is an error (never a clipped score)
a str                         a categorical score: the string is its label
a :class:`Score`              that score (its name defaults to the evaluator's)
a list of :class:`Score`      those scores (names unique; an empty list: not applicable)
``None``                      not applicable: the run lacks what the evaluator judges
============================  ==========================================================

:func:`evaluate` runs one evaluator on one run and returns an :class:`Outcome`: the scores, not
applicable, or an error (the exception's type, message and the end of its traceback). It never
raises for what the evaluator does: an evaluator's bug is an eval error, never a failure of the
judged run.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

if TYPE_CHECKING:
    from controlroom.evals.snapshot import Run

__all__ = [
    "Evaluator",
    "Failure",
    "InvalidScore",
    "Outcome",
    "Score",
    "ScoreOutOfRange",
    "Skip",
    "aevaluate",
    "evaluate",
    "evaluator",
]

P = ParamSpec("P")
R = TypeVar("R")
Kind = Literal["boolean", "numeric", "categorical"]
Status = Literal["scored", "not_applicable", "error", "skipped"]
KINDS: tuple[Kind, ...] = ("boolean", "numeric", "categorical")
MAX_NAME = 256  # the score.recorded event's limits
MAX_LABEL = 256
MAX_COMMENT = 8192
MAX_TRACEBACK = 4000


class Skip(Exception):
    """Raised by an evaluator that leaves a run alone for now, saying why (an LLM judge whose
    budget is spent): not a score and not an error; the run may be judged later."""


class InvalidScore(ValueError):
    """An evaluator returned something that is not a score (an eval error, not a crash)."""


class ScoreOutOfRange(InvalidScore):
    """A numeric score outside the evaluator's declared range."""


@dataclass(frozen=True, slots=True)
class Score:
    """One score. ``kind`` is inferred when not given: a bool ``value`` is boolean (stored as 1.0 /
    0.0), another number numeric, a ``label`` alone categorical. A categorical score may carry a
    value too (a judge's choice and the number it maps to). ``name`` empty: the evaluator's name.
    A comment longer than 8,192 characters is cut there."""

    name: str = ""
    value: float | None = None
    label: str | None = None
    comment: str | None = None
    kind: Kind | None = None

    def __post_init__(self) -> None:
        value, kind = self.value, self.kind
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME:
            raise ValueError(f"Score.name must be a string of at most {MAX_NAME} characters")
        if self.label is not None and (
            not isinstance(self.label, str) or not self.label or len(self.label) > MAX_LABEL
        ):
            raise ValueError(f"Score.label must be a non-empty string of at most {MAX_LABEL} characters")
        if self.comment is not None:
            if not isinstance(self.comment, str):
                raise ValueError("Score.comment must be a string")
            if len(self.comment) > MAX_COMMENT:
                object.__setattr__(self, "comment", self.comment[:MAX_COMMENT])
        if kind is not None and kind not in KINDS:
            raise ValueError(f"Score.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if value is not None:
            if isinstance(value, bool):
                kind = kind or "boolean"
                value = 1.0 if value else 0.0
            elif isinstance(value, numbers.Real):
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"Score.value must be finite, got {value}")
            else:
                raise ValueError(f"Score.value must be a bool or a number, got {type(value).__name__}")
            object.__setattr__(self, "value", value)
        if kind is None:
            kind = "numeric" if value is not None else "categorical"
        object.__setattr__(self, "kind", kind)
        if kind == "boolean" and value not in (0.0, 1.0):
            raise ValueError(f"a boolean Score's value is True or False (1 or 0), got {value!r}")
        if kind == "numeric" and value is None:
            raise ValueError("a numeric Score needs a value")
        if kind == "categorical" and self.label is None:
            raise ValueError("a categorical Score needs a label")

    @property
    def passed(self) -> bool | None:
        """A boolean score's verdict; None for other kinds."""
        return self.value == 1.0 if self.kind == "boolean" else None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an evaluation produced no score: the exception's type and message, and the end of its
    traceback (the evaluator's frames; empty when what it returned was the problem)."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation gave: ``scores`` (status ``scored``), nothing (``not_applicable``),
    ``error``, or ``skipped`` (the evaluator raised :class:`Skip`; ``error`` says why)."""

    evaluator: str
    version: str
    status: Status
    scores: tuple[Score, ...] = ()
    error: Failure | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Evaluator(Generic[P, R]):
    """A function over a run, with what is needed to record its scores: a name and version (a new
    version starts a new score series), the range of its numeric scores and their direction (a
    boolean score's True is always the good outcome), a description, and the parameters it was
    made with (built-ins). Calling it calls the function."""

    fn: Callable[P, R]
    name: str
    version: str = "1"
    range: tuple[float, float] = (0.0, 1.0)
    higher_is_better: bool = True
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # What it reads beyond the run's own row: "spans", "scores" (both unless it says otherwise);
    # a batch job loads only those. The built-ins say; your own evaluators read everything.
    reads: frozenset[str] = frozenset(("spans", "scores"))

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"an evaluator wraps a function, got {type(self.fn).__name__}")
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > MAX_NAME:
            raise ValueError(f"evaluator name must be a non-empty string of at most {MAX_NAME} characters")
        if not isinstance(self.version, str) or not self.version.strip() or len(self.version) > 64:
            raise ValueError("evaluator version must be a non-empty string of at most 64 characters")
        lo, hi = _range(self.range)
        object.__setattr__(self, "range", (lo, hi))
        if not isinstance(self.higher_is_better, bool):
            raise ValueError("evaluator higher_is_better must be True or False")
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def __name__(self) -> str:
        return self.name

    @property
    def __wrapped__(self) -> Callable[P, R]:
        return self.fn

    @property
    def is_async(self) -> bool:
        return _is_async(self.fn)


@overload
def evaluator(fn: Callable[P, R], /) -> Evaluator[P, R]: ...
@overload
def evaluator(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    version: str = "1",
    range: tuple[float, float] = (0.0, 1.0),
    higher_is_better: bool = True,
    description: str | None = None,
) -> Callable[[Callable[P, R]], Evaluator[P, R]]: ...
def evaluator(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str = "1",
    range: tuple[float, float] = (0.0, 1.0),
    higher_is_better: bool = True,
    description: str | None = None,
) -> Evaluator[P, R] | Callable[[Callable[P, R]], Evaluator[P, R]]:
    """Make a function over a run an evaluator: ``@evaluator`` or ``@evaluator(name=..., ...)``.

    ``name`` defaults to the function's name, ``description`` to its docstring's first paragraph;
    ``range`` bounds its numeric scores (a number outside it is an eval error). Bad arguments fail
    here, at decoration, not at the first run judged."""

    def wrap(f: Callable[P, R]) -> Evaluator[P, R]:
        if not callable(f):
            raise TypeError(f"@evaluator decorates a function, got {type(f).__name__}")
        doc = inspect.getdoc(f) or ""
        return Evaluator(
            f,
            name if name is not None else getattr(f, "__name__", type(f).__name__),
            version,
            range,
            higher_is_better,
            description if description is not None else doc.split("\n\n", 1)[0].strip(),
        )

    return wrap(fn) if fn is not None else wrap


def evaluate(ev: Evaluator[..., Any] | Callable[[Run], Any], run: Run, /) -> Outcome:
    """Run ``ev`` on ``run``; never raises for what the evaluator does (an exception, a bad return
    value): that is an outcome with ``status="error"``.

    An ``async def`` evaluator runs on a private event loop in a background thread (one per
    process, shared by every call, so clients an evaluator keeps across calls stay on one loop),
    and this call waits for it. Called from a thread running an event loop, that loop is blocked
    until the evaluator finishes: in async code, ``await aevaluate(...)`` instead. From inside an
    async evaluator it is an error outcome (it would wait on itself)."""
    e = _as_evaluator(ev)
    start = time.perf_counter()
    try:
        result = e.fn(run)
        if not isinstance(result, _PLAIN) and inspect.isawaitable(result):
            result = _run_coroutine(result)
        return _outcome(e, result, start)
    except Exception as exc:
        return _error(e, exc, start)


async def aevaluate(ev: Evaluator[..., Any] | Callable[[Run], Any], run: Run, /) -> Outcome:
    """:func:`evaluate` in async code: an ``async def`` evaluator is awaited on the caller's loop;
    a plain one runs on the caller's thread (keep those fast, or give them ``async def``)."""
    e = _as_evaluator(ev)
    start = time.perf_counter()
    try:
        result = e.fn(run)
        if not isinstance(result, _PLAIN) and inspect.isawaitable(result):
            result = await result
        return _outcome(e, result, start)
    except Exception as exc:
        return _error(e, exc, start)


# -- internals ------------------------------------------------------------------------------------

_PLAIN = (type(None), bool, int, float, str, Score, list, tuple)  # never awaitable: no check needed
_SCORE_FIELDS = ("name", "value", "label", "comment", "kind")


def _as_evaluator(ev: Evaluator[..., Any] | Callable[[Run], Any]) -> Evaluator[..., Any]:
    if isinstance(ev, Evaluator):
        return ev
    return evaluator(ev)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _range(value: Any) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"evaluator range must be (low, high), two numbers, got {value!r}") from None
    if any(isinstance(x, bool) or not isinstance(x, numbers.Real) for x in (lo, hi)):
        raise ValueError(f"evaluator range must be two finite numbers, got {value!r}")
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"evaluator range must be two finite numbers, got {value!r}")
    if lo >= hi:
        raise ValueError(f"evaluator range must have low < high, got {value!r}")
    return lo, hi


def _scores(e: Evaluator[..., Any], result: Any) -> tuple[Score, ...]:
    """What an evaluator returned, as scores named and checked against its range."""
    if isinstance(result, bool):
        return (_checked(e.name, 1.0 if result else 0.0, None, "boolean"),)
    if isinstance(result, int | float):
        value = float(result)
        if not math.isfinite(value):
            raise InvalidScore(f"returned {result!r}: a numeric score must be finite")
        _check_range(e, value)
        return (_checked(e.name, value, None, "numeric"),)
    if isinstance(result, numbers.Real):  # numpy's numbers, Fraction, Decimal
        return _scores(e, float(result))
    if isinstance(result, str):
        if not result or len(result) > MAX_LABEL:
            raise InvalidScore(f"returned a string of {len(result)} characters: a label has 1 to {MAX_LABEL}")
        return (_checked(e.name, None, result, "categorical"),)
    if isinstance(result, Score):
        items: list[Any] = [result]
    elif isinstance(result, list | tuple):
        items = list(result)
    else:
        raise InvalidScore(
            f"returned {type(result).__name__}: an evaluator returns bool, a number, str, Score, "
            "list[Score] or None"
        )
    out: list[Score] = []
    names: set[str] = set()
    for item in items:
        if not isinstance(item, Score):
            raise InvalidScore(
                f"returned a list holding {type(item).__name__}: a list holds Score objects only"
            )
        score = item if item.name else replace(item, name=e.name)
        if score.name in names:
            raise InvalidScore(f"returned two scores named {score.name!r}")
        names.add(score.name)
        if score.kind != "boolean" and score.value is not None:
            _check_range(e, score.value)
        out.append(score)
    return tuple(out)


def _checked(name: str, value: float | None, label: str | None, kind: Kind) -> Score:
    """A Score whose fields were checked already (the common return values: thousands a second)."""
    score = object.__new__(Score)
    for field_name, field_value in zip(_SCORE_FIELDS, (name, value, label, None, kind), strict=True):
        object.__setattr__(score, field_name, field_value)
    return score


def _check_range(e: Evaluator[..., Any], value: float) -> None:
    lo, hi = e.range
    if not lo <= value <= hi:
        raise ScoreOutOfRange(f"returned {value!r}, outside the declared range [{lo}, {hi}]")


def _outcome(e: Evaluator[..., Any], result: Any, start: float) -> Outcome:
    if result is None:
        return Outcome(e.name, e.version, "not_applicable", seconds=time.perf_counter() - start)
    scores = _scores(e, result)
    status: Status = "scored" if scores else "not_applicable"
    return Outcome(e.name, e.version, status, scores, seconds=time.perf_counter() - start)


def _error(e: Evaluator[..., Any], exc: Exception, start: float) -> Outcome:
    if isinstance(exc, Skip):
        failure = Failure("Skip", str(exc)[:MAX_COMMENT])
        return Outcome(e.name, e.version, "skipped", error=failure, seconds=time.perf_counter() - start)
    if isinstance(exc, InvalidScore):
        failure = Failure(type(exc).__name__, str(exc))
    else:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:  # our own frames
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb, limit=-8))
        failure = Failure(type(exc).__name__, str(exc)[:MAX_COMMENT], text[-MAX_TRACEBACK:])
    return Outcome(e.name, e.version, "error", error=failure, seconds=time.perf_counter() - start)


class _Loop:
    """The private event loop that synchronous :func:`evaluate` runs async evaluators on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.pid = 0

    def get(self) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
        with self.lock:
            if (
                self.loop is None
                or self.thread is None
                or self.pid != os.getpid()
                or not self.thread.is_alive()
            ):
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="controlroom-evaluate", daemon=True)
                thread.start()
                self.loop, self.thread, self.pid = loop, thread, os.getpid()
            return self.loop, self.thread


_loop = _Loop()


def _run_coroutine(awaitable: Awaitable[Any]) -> Any:
    loop, thread = _loop.get()
    if threading.current_thread() is thread:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never awaited: no warning
        raise RuntimeError(
            "evaluate() of an async evaluator from inside an async evaluator would wait on itself: "
            "await aevaluate() instead"
        )

    async def wrapper() -> Any:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(wrapper(), loop).result()
