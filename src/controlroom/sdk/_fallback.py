"""Retries and fallbacks as one call: try model A, retry it, then fall back to model B — each
attempt an LLM span that says which attempt it was, what it repeats and what it falls back from."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from controlroom.sdk._client import get_client
from controlroom.sdk._tracing import (
    AttemptPlan,
    LLMSpan,
    _attempt_plan,
    _current_run,
    _current_span,
    error_info,
)

T = TypeVar("T")


def call_with_fallback(
    fn: Callable[[str], T],
    models: Sequence[str],
    *,
    retries: int = 2,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    provider: str | None = None,
) -> T:
    """Call ``fn(model)`` for the first model, retrying it up to ``retries`` times on ``retry_on``
    errors, then falling back to the next model, and so on. Each attempt is an LLM span with
    ``attempt``, ``retry_of`` (the failed attempt it repeats) and ``fallback_from`` (the last failed
    call on the previous model), so the run's timeline shows what happened and why.

    If ``fn`` makes its call through an instrumented client (or :func:`controlroom.llm`), that call's
    span carries these fields; otherwise an LLM span named after the model is recorded around it.
    The last error is raised when every model failed. Errors not in ``retry_on`` propagate at once.
    """
    if not models:
        raise ValueError("call_with_fallback needs at least one model")
    last_failed: str | None = None
    last_error: BaseException | None = None
    for model_index, model in enumerate(models):
        previous_model_failure = last_failed if model_index > 0 else None
        retry_of: str | None = None
        for attempt in range(1, retries + 2):
            plan = AttemptPlan(
                attempt=attempt,
                retry_of=retry_of,
                fallback_from=previous_model_failure if attempt == 1 else None,
            )
            token = _attempt_plan.set(plan)
            started = time.time_ns()
            try:
                result = fn(model)
                if plan.span is None:
                    _record_attempt(plan, provider, model, started, None)
                return result
            except retry_on as e:
                if plan.span is None:
                    _record_attempt(plan, provider, model, started, e)
                last_error = e
                last_failed = retry_of = plan.span.span_id if plan.span is not None else None
                if getattr(e, "controlroom_no_retry", False):
                    raise
                if attempt <= retries:
                    time.sleep(min(max_backoff, backoff * 2 ** (attempt - 1)))
            finally:
                _attempt_plan.reset(token)
    assert last_error is not None
    raise last_error


def _record_attempt(
    plan: AttemptPlan, provider: str | None, model: str, started: int, error: BaseException | None
) -> None:
    """An LLM span for an attempt whose function recorded none (after the fact)."""
    client = get_client()
    run = _current_run.get()
    if client is None or run is None:
        return
    span = LLMSpan(provider or "unknown", model)
    plan.span = span
    now = time.time_ns()
    parent = _current_span.get()
    body: dict[str, Any] = {
        "span_id": span.span_id,
        "kind": "llm",
        "name": span.name,
        "provider": span.provider,
        "model": model,
        "attempt": plan.attempt,
        "ended_at": now,
        "status": "ok" if error is None else "error",
    }
    if parent is not None:
        body["parent_span_id"] = parent.span_id
    if plan.retry_of:
        body["retry_of"] = plan.retry_of
    if plan.fallback_from:
        body["fallback_from"] = plan.fallback_from
    if error is not None:
        body["error"] = error_info(error)
    client.emit(
        {
            "id": f"{run.run_id}{span.span_id}.r",
            "type": "span.recorded",
            "run_id": run.run_id,
            "ts": started,
            "body": body,
        }
    )
