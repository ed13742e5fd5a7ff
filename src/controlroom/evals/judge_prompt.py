"""What an LLM judge asks and how its answer is read (the judge itself: :mod:`controlroom.evals.judge`).

The prompt is two chat messages. The system message states the protocol: classify into exactly one
of the choices, reasoning first, and answer with one JSON object ``{"reasoning": "...", "choice":
"..."}``. The user message is the template filled from the run, then the choices listed one a
line, then the answer's shape again. A placeholder takes a text as it is and any other value as
indented JSON.

The answer is read strictly: one JSON object (alone, or alone in one fenced code block) whose
``choice`` is one of the choices as written (surrounding spaces aside) and whose ``reasoning`` is a
string. Anything else is :class:`InvalidAnswer`, an eval error: the judge never guesses which
choice a model meant from prose, a near-miss label or a truncated reply.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from controlroom.evals.evaluator import InvalidScore
from controlroom.evals.snapshot import Run

__all__ = ["PLACEHOLDERS", "SYSTEM", "Answer", "InvalidAnswer", "Prompt", "parse_answer"]

PLACEHOLDERS = ("agent", "status", "inputs", "output", "reference", "messages", "tool_calls", "error")
PROMPT_VERSION = "1"  # part of a judge's default version: a changed prompt shape starts a new series
MAX_LABEL = 256  # a score label's limit
FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

SYSTEM = (
    "You are a careful evaluator. You are given a task and a fixed list of choices, and you "
    "classify into exactly one of them. Reason first, then choose. Answer with one JSON object "
    'and nothing else: {"reasoning": "<why, in a few sentences>", "choice": "<one of the choices, '
    'exactly as written>"}, with "reasoning" before "choice".'
)


class InvalidAnswer(InvalidScore):
    """The judge's model answered something that names no valid choice (an eval error)."""


@dataclass(frozen=True, slots=True)
class Answer:
    choice: str
    reasoning: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """A checked template (literal text and placeholder, in order) and the choices (label ->
    score, in the order given)."""

    pieces: tuple[tuple[str, str | None], ...]
    labels: Mapping[str, float]

    @classmethod
    def make(cls, template: Any, choices: Any) -> Prompt:
        """ValueError naming ``template`` or ``choices`` when either is not what a judge takes."""
        return cls(_template(template), MappingProxyType(_choices(choices)))

    @property
    def uses(self) -> frozenset[str]:
        return frozenset(field for _, field in self.pieces if field is not None)

    def messages(self, run: Run) -> list[dict[str, str]] | None:
        """The chat messages that ask about ``run``; None when the run lacks what the template
        needs (an output, a reference)."""
        uses = self.uses
        if "output" in uses and run.output is None:
            return None
        if "reference" in uses and not run.has_reference:
            return None
        values = {field: _render(_value(run, field)) for field in uses}
        text = "".join(literal + (values[field] if field else "") for literal, field in self.pieces)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.question(text)}]

    def question(self, task: str) -> str:
        """The user message: the filled template, the choices, the answer's shape."""
        listed = "\n".join(f"- {label}" for label in self.labels)
        return (
            f"{task.rstrip()}\n\nChoices (answer with exactly one of them, as written):\n{listed}\n\n"
            'Answer with one JSON object: {"reasoning": "...", "choice": "..."}'
        )

    def fixed_chars(self) -> int:
        """The characters of the prompt that do not depend on the run."""
        return len(SYSTEM) + len(self.question("".join(literal for literal, _ in self.pieces)))

    def placeholders(self) -> int:
        return sum(1 for _, field in self.pieces if field is not None)


def parse_answer(
    text: str, labels: Mapping[str, float], *, cut: bool = False, max_output_tokens: int | None = None
) -> Answer:
    """The choice and reasoning of an answer (see the module's docstring); :class:`InvalidAnswer`
    otherwise, saying that the answer was cut at ``max_output_tokens`` when ``cut``."""
    body = text.strip()
    fenced = FENCED.match(body)
    if fenced is not None:
        body = fenced.group(1)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        if cut:
            raise InvalidAnswer(
                f"the judge's answer was cut at max_output_tokens={max_output_tokens} before it named "
                f"a choice: {_short(text)}"
            )
        raise InvalidAnswer(f"the judge's answer is not one JSON object: {_short(text)}")
    choice, reasoning = doc.get("choice"), doc.get("reasoning")
    if not isinstance(choice, str) or choice.strip() not in labels:
        raise InvalidAnswer(
            f"the judge's answer names no valid choice (got {_short(repr(choice), 100)}; "
            f"the choices: {', '.join(labels)})"
        )
    if not isinstance(reasoning, str):
        raise InvalidAnswer("the judge's answer gives no reasoning (a string)")
    return Answer(choice.strip(), reasoning.strip())


def bad(parameter: str, message: str) -> ValueError:
    """The error of a parameter the judge does not take, named as the built-ins name theirs."""
    return ValueError(f"llm_judge: parameter {parameter!r} {message}")


# -- internals ----------------------------------------------------------------------------------


def _template(template: Any) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(template, str) or not template.strip():
        raise bad("template", "must be a non-empty string")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise bad("template", f"is not a template: {e} (write {{{{ and }}}} for braces)") from None
    pieces: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (field not in PLACEHOLDERS or spec or conversion):
            shown = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise bad(
                "template",
                f"has an unknown placeholder {{{shown}}}; the placeholders: {', '.join(PLACEHOLDERS)}",
            )
        pieces.append((literal, field))
    if not any(field for _, field in pieces):
        raise bad("template", f"names nothing of the run; use some of {', '.join(PLACEHOLDERS)}")
    return tuple(pieces)


def _choices(choices: Any) -> dict[str, float]:
    if not isinstance(choices, Mapping) or len(choices) < 2:
        raise bad("choices", "must map at least two labels to their scores, e.g. {'correct': 1, 'wrong': 0}")
    out: dict[str, float] = {}
    for label, value in choices.items():
        if not isinstance(label, str) or not label or label != label.strip() or len(label) > MAX_LABEL:
            raise bad("choices", f"label {label!r} must be 1 to {MAX_LABEL} characters, without padding")
        if "\n" in label:
            raise bad("choices", f"label {label!r} must be on one line")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad("choices", f"score of {label!r} must be a finite number, got {value!r}")
        out[label] = float(value)
    if min(out.values()) == max(out.values()):
        raise bad("choices", "must map to at least two different scores")
    return out


def _value(run: Run, field: str) -> Any:
    if field == "agent":
        return run.agent or ""
    if field == "status":
        return run.status
    if field == "inputs":
        return run.inputs
    if field == "output":
        return run.output
    if field == "reference":
        return run.reference
    if field == "messages":
        return run.messages()
    if field == "tool_calls":
        return [
            {"name": c.name, "arguments": c.arguments, "result": c.result}
            | ({"error": f"{c.error.type}: {c.error.message or ''}"} if c.error else {})
            for c in run.tool_calls()
        ]
    if field == "error":
        return None if run.error is None else {"type": run.error.type, "message": run.error.message}
    raise AssertionError(field)  # the template was checked


def _render(value: Any) -> str:
    """A text as it is; any other value as JSON (indented: models read it as easily as people)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _short(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
