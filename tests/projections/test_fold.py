"""The projector's pure fold, without a database: rows, defaults, root cause, roll-ups, per-day
contributions and unguarded spend. (tests/projections/test_projector.py folds through real
databases.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from controlroom import events as ev
from controlroom.cost import PriceOverride, Pricer
from controlroom.projections import fold
from controlroom.projections.fold import new_run, new_span
from controlroom.store.tables import runs, spans

RUN = "a" * 32
T0 = 1_790_000_000 * 10**9  # 2026-09-21T14:13:20Z
MS = 10**6
# $1 per million input tokens, $2 per million output tokens
PRICER = Pricer(
    [PriceOverride(model="m-1", provider=None, input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))]
)


def test_new_rows_have_every_column() -> None:
    assert set(new_run(1, RUN, 1, 0, 0)) == {c.name for c in runs.c}
    assert set(new_span(1, RUN, "b" * 16, 1)) == {c.name for c in spans.c}


def span(
    span_id: str,
    *,
    parent: str | None = None,
    kind: str = "llm",
    start_ms: int = 0,
    end_ms: int = 100,
    seq: int = 1,
    **body: Any,
) -> fold.Row:
    """A span as the projector folds it: one span.recorded body (as the log stores it), priced."""
    row = new_span(1, RUN, span_id, seq)
    recorded = {
        "span_id": span_id,
        "kind": kind,
        "name": f"step-{span_id[-2:]}",
        "ended_at": T0 + end_ms * MS,
    }
    if parent:
        recorded["parent_span_id"] = parent
    fold.apply_span_event(row, ev.SPAN_RECORDED, T0 + start_ms * MS, {**recorded, **body})
    fold.price_span(row, PRICER)
    return row


def run_of(spans_: list[fold.Row], *, agent: str = "bot", **ended: Any) -> fold.Row:
    run = new_run(1, RUN, 1, T0, T0)
    fold.apply_run_event(run, ev.RUN_STARTED, T0, {"agent": agent})
    if ended:
        fold.apply_run_event(run, ev.RUN_ENDED, T0 + 10**9, ended)
    fold.summarise_run(run, spans_)
    return run


def error(message: str) -> dict[str, Any]:
    return {"status": "error", "error": {"type": "Timeout", "message": message}}


# -- defaults come from events.py ----------------------------------------------------------------


def test_a_body_without_defaults_folds_to_the_declared_defaults() -> None:
    row = new_span(1, RUN, "b" * 16, 1)
    fold.apply_span_event(row, ev.SPAN_RECORDED, T0, {"span_id": "b" * 16, "name": "x", "ended_at": T0})
    assert (row["kind"], row["status"], row["parent_span_id"], row["input"]) == ("other", "ok", None, None)
    run = new_run(1, RUN, 1, T0, T0)
    fold.apply_run_event(run, ev.RUN_STARTED, T0, {"agent": "bot"})
    assert (run["tags"], run["metadata"], run["inputs"]) == ([], {}, None)


def test_defaults_are_fresh_objects_and_nested_defaults_are_filled() -> None:
    first = ev.with_defaults(ev.RUN_STARTED, {"agent": "a"})
    first["tags"].append("changed")
    assert ev.with_defaults(ev.RUN_STARTED, {"agent": "a"})["tags"] == []
    body = ev.with_defaults(ev.SPAN_ENDED, {"span_id": "b" * 16, "usage": {"input_tokens": 5}})
    assert body["usage"] == {
        "input_tokens": 5,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert (
        ev.with_defaults(ev.RUN_ENDED, {"status": "failed", "error": {"type": "E"}})["error"]["message"] == ""
    )


# -- root cause ----------------------------------------------------------------------------------


def test_the_failing_span_is_the_deepest_error_of_the_last_failing_chain() -> None:
    spans_ = [
        span("a" * 14 + "01", kind="agent", end_ms=900, **error("agent gave up")),
        span("a" * 14 + "02", parent="a" * 14 + "01", end_ms=300, **error("first attempt timed out")),
        span("a" * 14 + "03", parent="a" * 14 + "01", end_ms=800, **error("tool failed")),
        span("a" * 14 + "04", parent="a" * 14 + "03", end_ms=700, **error("HTTP 500")),
        span("a" * 14 + "05", parent="a" * 14 + "01", end_ms=850),  # succeeded
    ]
    cause = fold.root_cause(spans_)
    assert cause is not None and cause["span_id"] == "a" * 14 + "04"
    run = run_of(spans_, status="failed")
    assert (run["status"], run["failing_span_id"], run["error_message"]) == (
        "failed",
        "a" * 14 + "04",
        "HTTP 500",
    )
    assert run["error_count"] == 4 and run["has_error"]


def test_the_run_s_own_failing_span_and_error_win() -> None:
    spans_ = [span("a" * 14 + "01", **error("deep")), span("a" * 14 + "02", end_ms=50, **error("named"))]
    run = run_of(
        spans_, status="failed", failing_span_id="a" * 14 + "02", error={"type": "Budget", "message": "stop"}
    )
    assert (run["failing_span_id"], run["error_type"], run["error_message"]) == (
        "a" * 14 + "02",
        "Budget",
        "stop",
    )


def test_spans_naming_each_other_as_parents_still_have_a_root_cause() -> None:
    spans_ = [
        span("a" * 14 + "01", parent="a" * 14 + "02", end_ms=100, **error("one")),
        span("a" * 14 + "02", parent="a" * 14 + "01", end_ms=200, **error("two")),
    ]
    assert fold.root_cause(spans_) is not None
    assert fold.root_cause([span("a" * 14 + "01")]) is None


def test_an_abandoned_run_without_errors_says_so() -> None:
    run = new_run(1, RUN, 1, T0, T0)
    fold.apply_run_event(run, ev.RUN_STARTED, T0, {"agent": "bot"})
    fold.apply_run_event(run, ev.RUN_ABANDONED, T0 + 10**12, {"quiet_seconds": 3600, "last_event_at": T0})
    fold.summarise_run(run, [span("a" * 14 + "01")])
    assert (run["status"], run["error_type"], run["failing_span_id"]) == ("abandoned", "abandoned", None)
    fold.apply_run_event(run, ev.RUN_ENDED, T0 + 2 * 10**12, {"status": "succeeded"})
    fold.summarise_run(run, [span("a" * 14 + "01")])
    assert (run["status"], run["error_type"]) == ("succeeded", None)


# -- roll-ups and costs --------------------------------------------------------------------------


def test_a_span_reporting_its_children_s_usage_is_not_counted_twice() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 500}
    spans_ = [
        span("a" * 14 + "01", kind="agent", usage={"input_tokens": 2000, "output_tokens": 1000}),
        span("a" * 14 + "02", parent="a" * 14 + "01", kind="chain", usage=usage),
        span("a" * 14 + "03", parent="a" * 14 + "02", model="m-1", usage=usage),
        span("a" * 14 + "04", parent="a" * 14 + "01", model="m-1", usage=usage),
        span("a" * 14 + "05", parent="a" * 14 + "01", kind="tool"),
    ]
    assert fold.rollups(spans_) == {"a" * 14 + "01", "a" * 14 + "02"}
    assert [s["span_id"] for s in fold.calls(spans_)] == ["a" * 14 + "03", "a" * 14 + "04"]
    run = run_of(spans_, status="succeeded")
    # each call: 1000 x $1/M + 500 x $2/M = $0.002
    assert (run["input_tokens"], run["output_tokens"], run["cost_nanos"]) == (2000, 1000, 4_000_000)
    assert (run["llm_count"], run["tool_count"], run["span_count"], run["unpriced_calls"]) == (2, 1, 5, 0)


def test_reported_cost_wins_and_unknown_models_are_counted_not_zero() -> None:
    reported = span("a" * 14 + "01", model="m-1", usage={"input_tokens": 10}, cost_usd="0.0000000015")
    unknown = span("a" * 14 + "02", model="no-such-model-anywhere", usage={"input_tokens": 10})
    assert (reported["cost_nanos"], reported["cost_source"], reported["computed_cost_nanos"]) == (
        2,
        "reported",
        10_000,
    )
    assert (unknown["cost_nanos"], unknown["cost_source"]) == (None, "unknown")
    run = run_of([reported, unknown], status="succeeded")
    assert (run["cost_nanos"], run["unpriced_calls"]) == (2, 1)


def test_retries_and_fallbacks_are_counted() -> None:
    first = span("a" * 14 + "01", **error("timeout"))
    retry = span("a" * 14 + "02", attempt=2, retry_of="a" * 14 + "01")
    fallback = span("a" * 14 + "03", fallback_from="a" * 14 + "02", model="m-1")
    run = run_of([first, retry, fallback], status="succeeded")
    assert (run["retry_count"], run["fallback_count"], run["error_count"]) == (1, 1, 1)
    assert run["status"] == "succeeded" and run["has_error"]


def test_contributions_split_by_local_day_agent_and_model() -> None:
    # T0 is 14:13 UTC; +10 h is past midnight in UTC but not in Los Angeles (UTC-7)
    late = 10 * 3600 * 1000
    spans_ = [
        span("a" * 14 + "01", model="m-1", usage={"input_tokens": 1000}),
        span("a" * 14 + "02", model="m-1", start_ms=late, end_ms=late + 100, usage={"output_tokens": 1000}),
    ]
    run = run_of(spans_, agent="bot", status="succeeded")
    utc = fold.contributions(run, spans_, "UTC")
    assert sorted(k.day for k in utc) == ["2026-09-21", "2026-09-22"]
    la = fold.contributions(run, spans_, "America/Los_Angeles")
    ((key, counts),) = la.items()
    assert (key.day, key.agent, key.model) == ("2026-09-21", "bot", "m-1")
    assert dict(zip(fold.COST_FIELDS, counts, strict=True)) == {
        "calls": 2,
        "input_tokens": 1000,
        "output_tokens": 1000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_nanos": 3_000_000,
        "unpriced_calls": 0,
    }


# -- unguarded spend -----------------------------------------------------------------------------


def test_only_a_reservation_the_ledger_knows_guards_a_call() -> None:
    def call(i: int, reservation: str | None, start_ms: int = 0) -> fold.Row:
        attrs = {fold.RESERVATION_ATTRIBUTE: reservation} if reservation else {}
        return span(
            "a" * 14 + f"{i:02d}",
            model="m-1",
            start_ms=start_ms,
            end_ms=start_ms + 10,
            usage={"input_tokens": 1000},
            attributes=attrs,
        )

    later = fold.BUCKET_SECONDS * 1000  # the next 15-minute bucket
    spans_ = [
        call(1, "known-reservation-01"),
        call(2, "made-up-reservation"),
        call(3, None),
        call(4, None, later),
    ]
    run = run_of(spans_, status="succeeded")
    out = fold.unguarded(run, spans_, {"known-reservation-01"})
    bucket = T0 // 10**9 // fold.BUCKET_SECONDS
    assert out == {(1, bucket, "bot"): 2_000_000, (1, bucket + 1, "bot"): 1_000_000}
    assert fold.unguarded(run, spans_, {"known-reservation-01", "made-up-reservation"}) == {
        (1, bucket, "bot"): 1_000_000,
        (1, bucket + 1, "bot"): 1_000_000,
    }


def test_a_call_still_running_is_not_spend_yet() -> None:
    row = new_span(1, RUN, "a" * 14 + "01", 1)
    fold.apply_span_event(
        row, ev.SPAN_STARTED, T0, {"span_id": "a" * 14 + "01", "name": "chat", "kind": "llm"}
    )
    fold.price_span(row, PRICER)
    run = run_of([row])
    assert fold.unguarded(run, [row], set()) == {} and fold.contributions(run, [row], "UTC") == {}
