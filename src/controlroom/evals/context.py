"""Where an evaluation runs: the store and the project of the run being judged, for the
evaluators that need more than the run (an LLM judge records its own calls as runs of the
project, under the project's daily cap and its own budget). Set by the eval jobs around each
evaluation; None in a unit test or ``evals try`` without a store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EvalContext:
    store: Any  # controlroom.store.engine.Store (not imported: this module is light)
    project_id: int
    config: str | None  # the configuration's name, when a configuration runs it


_current: ContextVar[EvalContext | None] = ContextVar("controlroom_eval_context", default=None)


def current() -> EvalContext | None:
    return _current.get()


@contextmanager
def evaluating(ctx: EvalContext) -> Iterator[EvalContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
