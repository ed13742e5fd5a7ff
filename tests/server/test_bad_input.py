"""Bad input through the real HTTP server: every malformed, oversized, unauthenticated or otherwise
wrong request gets a 4xx RFC 9457 problem document (never a 500), and events accepted before it
stay exactly as they were, in the run log and in the read model."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_support import assert_problem, call, ev, new_run_id, new_span_id
from api_support import wait_projected as wait_projected_on
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from controlroom.accounts import projects
from controlroom.events import CLIENT_EVENT_TYPES
from controlroom.server import deps
from controlroom.server.schemas import IngestResponse, RunDetail
from controlroom.store.tables import events as events_table

DAY_NS = 86_400 * 10**9
# Midnight UTC three days ago: inside the accepted range (2000-01-01 .. now + 1 day) and in the
# default 30-day window of /v1/costs/daily.
BASE_NS = (time.time_ns() // DAY_NS - 3) * DAY_NS
SEC = 10**9


# -- helpers -------------------------------------------------------------------------------------


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex


def run_started(run_id: str, ts: Any = BASE_NS, **body: Any) -> dict[str, Any]:
    return ev("run.started", run_id, ts, {"agent": "bad-input-agent", **body})


def span_recorded(run_id: str, span_id: str, ts: Any = BASE_NS + SEC, **body: Any) -> dict[str, Any]:
    body = {"span_id": span_id, "name": "call", "kind": "llm", "ended_at": BASE_NS + 2 * SEC, **body}
    return ev("span.recorded", run_id, ts, body)


def post_events(live: Any, payload: Any, *, key: str | bool | None = True) -> httpx.Response:
    return call(live, "POST", "/v1/events", key=key, json=payload)


def wait_projected(live: Any, timeout: float = 20.0) -> None:
    """Poll /v1/health until the projector has folded every event in the log."""
    with httpx.Client(base_url=live.url, timeout=30) as client:
        wait_projected_on(client, timeout)


def log_event_ids(live: Any) -> list[str]:
    """The event ids in the run log of the live server's project, in log order."""
    with live.store.read() as conn:
        project = projects.project_for_key(conn, live.key)
        assert project is not None
        q = select(events_table.c.event_id).where(events_table.c.project_id == project.id)
        return list(conn.execute(q.order_by(events_table.c.seq)).scalars())


def quiet_projector_retries(caplog: pytest.LogCaptureFixture) -> None:
    """For tests that expect the projector to fail on every pass: drop its once-a-second traceback
    (expected noise, and formatting it in the worker thread while pytest formats this test's
    failure can trip the CPython 3.11 bug described in `call`)."""
    caplog.set_level(logging.CRITICAL, logger="controlroom.workers.runtime")


@dataclass
class Baseline:
    run_id: str
    event_ids: list[str]
    detail: dict[str, Any]
    extra_ids: list[str] = field(default_factory=list)


@pytest.fixture
def baseline(live: Any) -> Baseline:
    """A good batch (a finished run with a priced LLM call), accepted and projected."""
    rid = new_run_id()
    batch = [
        run_started(rid, environment="prod", tags=["baseline"]),
        span_recorded(
            rid,
            new_span_id(),
            provider="openai",
            model="gpt-4o",
            usage={"input_tokens": 1000, "output_tokens": 100},
        ),
        ev("run.ended", rid, BASE_NS + 3 * SEC, {"status": "succeeded", "output": "ok"}),
    ]
    r = post_events(live, {"events": batch})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    wait_projected(live)
    detail = call(live, "GET", f"/v1/runs/{rid}").json()
    # 1000 * $2.50/M + 100 * $10/M = $0.0025 + $0.001
    assert detail["cost_usd"] == "0.0035"
    assert detail["counts"]["span"] == 1
    return Baseline(rid, [e["id"] for e in batch], detail)


def assert_intact(live: Any, base: Baseline, *extra_ids: str) -> None:
    """The log holds exactly the baseline events (plus ``extra_ids``), and the baseline run reads back
    exactly as it did."""
    base.extra_ids.extend(extra_ids)
    assert sorted(log_event_ids(live)) == sorted(base.event_ids + base.extra_ids)
    wait_projected(live)
    r = call(live, "GET", f"/v1/runs/{base.run_id}")
    assert r.status_code == 200, r.text
    assert r.json() == base.detail


# -- request-level bad input ---------------------------------------------------------------------

MAX_BODY = 2_000_000


def _json_post(content: bytes, **headers: str) -> Callable[[Any], httpx.Response]:
    def send(live: Any) -> httpx.Response:
        h = {"content-type": "application/json", **headers}
        return call(live, "POST", "/v1/events", content=content, headers=h)

    return send


def _get(path: str, key: str | bool | None = True, **params: str) -> Callable[[Any], httpx.Response]:
    def send(live: Any) -> httpx.Response:
        return call(live, "GET", path, key=key, params=params)

    return send


def _chunked(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 64 * 1024):
        yield data[i : i + 64 * 1024]


def _oversized_chunked(live: Any) -> httpx.Response:
    big = b'{"events": [' + b" " * (MAX_BODY + 10) + b"]}"
    # A generator body has no Content-Length: the server must count while streaming.
    return call(
        live, "POST", "/v1/events", content=_chunked(big), headers={"content-type": "application/json"}
    )


def _too_many_events(live: Any) -> httpx.Response:
    rid = new_run_id()
    return post_events(live, {"events": [run_started(rid) for _ in range(1001)]})


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _price(**body: Any) -> Callable[[Any], httpx.Response]:
    def send(live: Any) -> httpx.Response:
        return call(live, "POST", "/v1/prices", json=body, key=live.admin_key)

    return send


ZIP_BOMB = gzip.compress(b'{"events": [' + b" " * (3 * MAX_BODY) + b"]}")
DEFLATE_BOMB = zlib.compress(b'{"events": [' + b" " * (3 * MAX_BODY) + b"]}")
assert len(ZIP_BOMB) < 20_000  # small on the wire, 6 MB once inflated


@dataclass(frozen=True)
class Case:
    id: str
    send: Callable[[Any], httpx.Response]
    status: int
    code: str
    needles: tuple[str, ...] = ()


def case(id: str, send: Callable[[Any], httpx.Response], status: int, code: str, *needles: str) -> Case:
    return Case(id, send, status, code, needles)


RUN = "ab" * 16
GROUPS: dict[str, list[Case]] = {
    "ingest-body-and-encoding": [
        case("malformed-json", _json_post(b'{"events": [{"id": '), 400, "invalid_json", "not valid JSON"),
        case("empty-body", _json_post(b""), 400, "invalid_json", "not valid JSON"),
        case("trailing-garbage", _json_post(b'{"events": []} x'), 400, "invalid_json", "not valid JSON"),
        case("invalid-utf8", _json_post(b'{"events": ["\xff\xfe"]}'), 400, "invalid_json", "not valid JSON"),
        case("body-is-a-list", _json_post(b"[1, 2]"), 400, "invalid_event", '{"events": [...]}'),
        case("body-is-a-string", _json_post(b'"events"'), 400, "invalid_event", '{"events": [...]}'),
        case("events-missing", _json_post(b'{"evnets": []}'), 400, "invalid_event", '{"events": [...]}'),
        case("events-not-a-list", _json_post(b'{"events": {"a": 1}}'), 400, "invalid_event", "events"),
        case("events-null", _json_post(b'{"events": null}'), 400, "invalid_event", "events"),
    ],
    "size-limits": [
        case(
            "oversized-body",
            _json_post(b'{"events": [' + b" " * (MAX_BODY + 10) + b"]}"),
            413,
            "payload_too_large",
            "exceeds the limit of 2000000",
        ),
        case("oversized-chunked-body", _oversized_chunked, 413, "payload_too_large", "exceeds the limit"),
        case("too-many-events", _too_many_events, 413, "payload_too_large", "1001 events", "limit is 1000"),
        case(
            "gzip-bomb",
            _json_post(ZIP_BOMB, **{"content-encoding": "gzip"}),
            413,
            "payload_too_large",
            "decompressed body exceeds",
        ),
        case(
            "deflate-bomb",
            _json_post(DEFLATE_BOMB, **{"content-encoding": "deflate"}),
            413,
            "payload_too_large",
            "decompressed body exceeds",
        ),
        case(
            "invalid-gzip",
            _json_post(b"this is not gzip", **{"content-encoding": "gzip"}),
            400,
            "invalid_encoding",
            "not valid gzip",
        ),
        case(
            "truncated-gzip",
            _json_post(gzip.compress(b'{"events": []}')[:-6], **{"content-encoding": "gzip"}),
            400,
            "invalid_encoding",
            "not valid gzip",
        ),
        case(
            "invalid-deflate",
            _json_post(b"xx not deflate", **{"content-encoding": "deflate"}),
            400,
            "invalid_encoding",
            "not valid deflate",
        ),
        case(
            "gzip-of-bad-json",
            _json_post(gzip.compress(b'{"events": ['), **{"content-encoding": "gzip"}),
            400,
            "invalid_json",
            "not valid JSON",
        ),
        case(
            "unsupported-encoding-br",
            _json_post(b'{"events": []}', **{"content-encoding": "br"}),
            415,
            "unsupported_media_type",
            "content-encoding 'br'",
        ),
        case(
            "text-plain",
            _json_post(b'{"events": []}', **{"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
            "'text/plain'",
        ),
        case(
            "form-urlencoded",
            _json_post(b"events=1", **{"content-type": "application/x-www-form-urlencoded"}),
            415,
            "unsupported_media_type",
            "application/x-www-form-urlencoded",
        ),
    ],
    "authentication": [
        case(
            "no-authorization",
            lambda live: post_events(live, {"events": [run_started(RUN)]}, key=None),
            401,
            "unauthorized",
            "Authorization: Bearer",
        ),
        case(
            "basic-scheme",
            lambda live: call(
                live,
                "POST",
                "/v1/events",
                key=None,
                json={"events": []},
                headers={"Authorization": "Basic eDp5"},
            ),
            401,
            "unauthorized",
            "Bearer",
        ),
        case(
            "bearer-without-key",
            lambda live: call(live, "GET", "/v1/runs", key=None, headers={"Authorization": "Bearer"}),
            401,
            "unauthorized",
            "Bearer",
        ),
        case(
            "wrong-key",
            lambda live: post_events(live, {"events": [run_started(RUN)]}, key="cr_" + "x" * 43),
            401,
            "unauthorized",
            "not valid",
        ),
        case("wrong-key-on-read", _get("/v1/runs", key="cr_nope"), 401, "unauthorized", "not valid"),
        case("no-key-on-run", _get(f"/v1/runs/{RUN}", key=None), 401, "unauthorized", "Bearer"),
        case("no-key-on-costs", _get("/v1/costs/daily", key=None), 401, "unauthorized", "Bearer"),
        case("no-key-on-prices", _get("/v1/prices", key=None), 401, "unauthorized", "Bearer"),
    ],
    "read-queries": [
        case("status-bogus", _get("/v1/runs", status="bogus"), 400, "invalid_query", "'bogus'"),
        case(
            "status-list-with-bogus",
            _get("/v1/runs", status="succeeded,exploded"),
            400,
            "invalid_query",
            "'exploded'",
        ),
        case("limit-zero", _get("/v1/runs", limit="0"), 400, "invalid_query", "limit"),
        case("limit-huge", _get("/v1/runs", limit="100000"), 400, "invalid_query", "limit"),
        case("limit-not-int", _get("/v1/runs", limit="ten"), 400, "invalid_query", "limit"),
        case("since-garbage", _get("/v1/runs", since="garbage"), 400, "invalid_query", "since", "garbage"),
        case("until-1970", _get("/v1/runs", until="1970-01-01T00:00:00Z"), 400, "invalid_query", "until"),
        case("since-superscript-digit", _get("/v1/runs", since="²"), 400, "invalid_query", "since"),
        case("since-huge-integer", _get("/v1/runs", since="9" * 5000), 400, "invalid_query", "since"),
        case("cursor-garbage", _get("/v1/runs", cursor="garbage!"), 400, "invalid_query", "cursor"),
        case("cursor-not-a-pair", _get("/v1/runs", cursor=_cursor({"a": 1})), 400, "invalid_query", "cursor"),
        case(
            "cursor-wrong-types", _get("/v1/runs", cursor=_cursor(["x", 1])), 400, "invalid_query", "cursor"
        ),
        case("has-error-maybe", _get("/v1/runs", has_error="maybe"), 400, "invalid_query", "has_error"),
        case("run-id-not-hex", _get("/v1/runs/" + "zz" * 16), 400, "invalid_query", "not 32 hex"),
        case("run-id-short", _get("/v1/runs/abc123"), 400, "invalid_query", "not 32 hex"),
        case("run-id-long", _get("/v1/runs/" + "ab" * 17), 400, "invalid_query", "not 32 hex"),
        case("run-unknown", _get("/v1/runs/" + "cd" * 16), 404, "not_found", "not found"),
        case("bad-date", _get("/v1/costs/daily", since="2026-13-45"), 400, "invalid_query", "2026-13-45"),
        case("bad-until", _get("/v1/costs/daily", until="tomorrow"), 400, "invalid_query", "tomorrow"),
        case("group-by-colour", _get("/v1/costs/daily", group_by="colour"), 400, "invalid_query", "colour"),
        case(
            "group-by-mixed", _get("/v1/costs/daily", group_by="agent,colour"), 400, "invalid_query", "colour"
        ),
        case(
            "since-after-until",
            _get("/v1/costs/daily", since="2026-02-01", until="2026-01-01"),
            400,
            "invalid_query",
            "after",
        ),
    ],
    "prices-and-routing": [
        case(
            "not-a-number",
            _price(model="m", input_per_mtok="cheap", output_per_mtok="1"),
            422,
            "validation_failed",
            "input_per_mtok",
        ),
        case(
            "negative",
            _price(model="m", input_per_mtok="1", output_per_mtok="-2"),
            422,
            "validation_failed",
            "output_per_mtok",
        ),
        case(
            "model-too-long",
            _price(model="m" * 300, input_per_mtok="1", output_per_mtok="1"),
            422,
            "validation_failed",
            "model",
        ),
        case(
            "missing-model",
            _price(input_per_mtok="1", output_per_mtok="1"),
            422,
            "validation_failed",
            "model",
        ),
        case(
            "unknown-field",
            _price(model="m", input_per_mtok="1", output_per_mtok="1", colour="red"),
            422,
            "validation_failed",
            "colour",
        ),
        case(
            "bad-effective-from",
            _price(model="m", input_per_mtok="1", output_per_mtok="1", effective_from="soon"),
            422,
            "validation_failed",
            "effective_from",
        ),
        case("unknown-route", _get("/v1/nope"), 404, "not_found", "not found"),
        case("unknown-route-no-key", _get("/v2/runs", key=None), 404, "not_found", "not found"),
        case("wrong-method", _get("/v1/events"), 405, "method_not_allowed", "method not allowed"),
    ],
}


def _check(live: Any, base: Baseline, c: Case) -> str | None:
    """Run one case; the failure message, or None."""
    try:
        doc = assert_problem(c.send(live), c.status, c.code, *c.needles)
        if c.status == 413:
            assert doc["limit"] in (1000, MAX_BODY), doc
        assert_intact(live, base)
    except AssertionError as e:
        return f"[{c.id}] {e}"
    return None


@pytest.mark.parametrize("group", list(GROUPS))
def test_bad_requests_get_a_problem_and_keep_the_log(live: Any, baseline: Baseline, group: str) -> None:
    """Each case of the group on one server; every failing case is reported, not just the first."""
    failures = [f for c in GROUPS[group] if (f := _check(live, baseline, c))]
    assert not failures, "\n".join(failures)


def bug_case(id: str, send: Callable[[Any], httpx.Response], status: int, code: str, *needles: str) -> Any:
    """A case that once found a bug (a 500 or a wrong code), kept as a regression test."""
    return pytest.param(Case(id, send, status, code, needles), id=id)


BUG_CASES = [
    bug_case(
        "cursor-out-of-int64",
        _get("/v1/runs", cursor=_cursor([2**64 - 1, RUN])),
        400,
        "invalid_query",
        "cursor",
    ),
    bug_case(
        "min-cost-not-a-number",
        _get("/v1/runs", min_cost_usd="abc"),
        400,
        "invalid_query",
        "min_cost_usd",
    ),
    bug_case(
        "min-cost-negative",
        _get("/v1/runs", min_cost_usd="-1"),
        400,
        "invalid_query",
        "min_cost_usd",
    ),
    bug_case(
        "costs-until-year-1",
        _get("/v1/costs/daily", until="0001-01-01"),
        400,
        "invalid_query",
        "until",
    ),
    bug_case(
        "price-provider-too-long",
        _price(model="m", provider="p" * 300, input_per_mtok="1", output_per_mtok="1"),
        422,
        "validation_failed",
        "provider",
    ),
    bug_case(
        "price-effective-from-year-9999",  # once a 500: epoch nanoseconds beyond 64 bits
        _price(model="m", input_per_mtok="1", output_per_mtok="1", effective_from="9999-01-01T00:00:00Z"),
        422,
        "validation_failed",
        "effective_from",
    ),
    # NUL cannot be stored or compared by PostgreSQL: refused on both backends alike.
    bug_case("agent-with-nul", _get("/v1/runs", agent="planner\x00"), 400, "invalid_query", "agent"),
    bug_case(
        "price-rate-tiny",
        _price(model="m", input_per_mtok="1e-50", output_per_mtok="1"),
        422,
        "validation_failed",
        "input_per_mtok",
    ),
]


@pytest.mark.parametrize("c", BUG_CASES)
def test_known_bad_requests(live: Any, baseline: Baseline, c: Case) -> None:
    if c.status < 400:
        r = c.send(live)
        assert r.status_code == c.status, r.text
        assert_intact(live, baseline)
    else:
        assert _check(live, baseline, c) is None


# -- event-level bad input: per-index rejection --------------------------------------------------


def _span_body(**over: Any) -> dict[str, Any]:
    return {"span_id": "cd" * 8, "name": "llm", "kind": "llm", "ended_at": BASE_NS + 2 * SEC, **over}


def _env(**over: Any) -> dict[str, Any]:
    """A valid run.started envelope with fields replaced (a value of ... removes the field)."""
    e = {"id": new_event_id(), "type": "run.started", "run_id": RUN, "ts": BASE_NS, "body": {"agent": "a"}}
    e.update(over)
    return {k: v for k, v in e.items() if v is not ...}


def _span(**body: Any) -> dict[str, Any]:
    return _env(type="span.recorded", body=_span_body(**body))


BAD_EVENTS = {
    "unknown-type": (_env(type="run.exploded"), "unknown event type"),
    "type-is-a-list": (_env(type=["run.started"]), "unknown event type"),
    "missing-type": (_env(type=...), "missing event type"),
    "server-only-run-abandoned": (_env(type="run.abandoned"), "written by the server"),
    "run-id-short": (_env(run_id="abc123"), "run_id 'abc123' is not 32 hex"),
    "run-id-33-chars": (_env(run_id="a" * 33), "not 32 hex"),
    "run-id-non-hex": (_env(run_id="g" * 32), "not 32 hex"),
    "run-id-all-zeros": (_env(run_id="0" * 32), "must not be all zeros"),
    "run-id-not-a-string": (_env(run_id=12345), "run_id must be a string"),
    "span-id-short": (_span(span_id="abc"), "span_id 'abc' is not 16 hex"),
    "span-id-non-hex": (_span(span_id="xy" * 8), "not 16 hex"),
    "span-id-all-zeros": (_span(span_id="0" * 16), "must not be all zeros"),
    "parent-span-id-bad": (_span(parent_span_id="nope"), "parent_span_id"),
    "negative-input-tokens": (_span(usage={"input_tokens": -5}), "input_tokens: Input should be greater"),
    "negative-output-tokens": (_span(usage={"output_tokens": -1}), "output_tokens: Input should be greater"),
    "absurd-token-count": (
        _span(usage={"reasoning_tokens": 10**13}),
        "reasoning_tokens: Input should be less",
    ),
    "fractional-tokens": (_span(usage={"input_tokens": 1.5}), "input_tokens"),
    "negative-cost": (_span(cost_usd=-0.01), "cost_usd"),
    "ts-1970-string": (_env(ts="1970-01-01T00:00:00Z"), "before 2000-01-01"),
    "ts-1970-epoch-zero": (_env(ts=0), "before 2000-01-01"),
    "ts-negative": (_env(ts=-1), "before 2000-01-01"),
    "ts-year-3000": (_env(ts="3000-01-01T00:00:00Z"), "more than a day in the future"),
    "ts-year-2200-ns": (_env(ts=7_258_118_400 * SEC), "more than a day in the future"),
    "ts-garbage": (_env(ts="yesterday at noon"), "not RFC 3339"),
    "ts-no-timezone": (_env(ts="2026-01-01T00:00:00"), "not RFC 3339"),
    "ts-feb-30": (_env(ts="2026-02-30T00:00:00Z"), "day is out of range"),
    "ts-true": (_env(ts=True), "must be an RFC 3339 string or integer"),
    "ts-false": (_env(ts=False), "must be an RFC 3339 string or integer"),
    "ts-float": (_env(ts=1.7e18), "must be an RFC 3339 string or integer"),
    "ts-null": (_env(ts=None), "must be an RFC 3339 string or integer"),
    "ts-missing": (_env(ts=...), "ts: Field required"),
    "span-ended-at-year-3000": (_span(ended_at="3000-01-01T00:00:00Z"), "ended_at"),
    "span-ends-before-it-starts": (_span(ended_at=BASE_NS - SEC), "cannot end before it starts"),
    "id-65-chars": (_env(id="x" * 65), "at most 64 characters"),
    "id-empty": (_env(id=""), "at least 1 character"),
    "id-not-a-string": (_env(id=42), "id"),
    "unknown-envelope-field": (_env(colour="red"), "colour: Extra inputs are not permitted"),
    "body-missing": (_env(body=...), "body: Field required"),
    "agent-missing": (_env(body={"inputs": 1}), "body.agent: Field required"),
    "run-ended-bad-status": (_env(type="run.ended", body={"status": "exploded"}), "body.status"),
    "score-without-value-or-label": (
        _env(type="score.recorded", body={"name": "quality"}),
        "needs a value or a label",
    ),
    "event-is-a-string": ("run.started", "valid dictionary"),
    "event-is-null": (None, "valid dictionary"),
}


def _expected_id(bad: Any) -> str | None:
    return bad["id"][:64] if isinstance(bad, dict) and isinstance(bad.get("id"), str) else None


def test_all_invalid_batches_are_a_400_listing_every_index(live: Any, baseline: Baseline) -> None:
    """Nothing valid in the batch -> 400 invalid_event with `rejected`: each bad event alone (its
    reason at index 0), then several in one batch (each at its own index)."""
    failures = []
    for name, (bad, reason) in BAD_EVENTS.items():
        try:
            doc = assert_problem(post_events(live, {"events": [bad]}), 400, "invalid_event", "no event")
            assert len(doc["rejected"]) == 1, doc
            rej = doc["rejected"][0]
            assert (rej["index"], rej["id"]) == (0, _expected_id(bad)), rej
            assert reason.lower() in rej["reason"].lower(), rej
        except AssertionError as e:
            failures.append(f"[{name}] {e}")
    assert not failures, "\n".join(failures)
    assert_intact(live, baseline)

    batch = [
        _env(type="run.exploded", id="bad-0"),
        _env(run_id="0" * 32, id="bad-1"),
        _span(usage={"input_tokens": -1}),
        42,
        _env(ts=True, id="y" * 100),
    ]
    doc = assert_problem(post_events(live, {"events": batch}), 400, "invalid_event", "no event")
    assert [(x["index"], x["id"]) for x in doc["rejected"]] == [
        (0, "bad-0"),
        (1, "bad-1"),
        (2, batch[2]["id"]),  # type: ignore[index]
        (3, None),
        (4, "y" * 64),  # a long id is echoed cut to 64 characters
    ]
    assert "unknown event type" in doc["rejected"][0]["reason"]
    assert "all zeros" in doc["rejected"][1]["reason"]
    assert "input_tokens" in doc["rejected"][2]["reason"]
    assert "timestamp" in doc["rejected"][4]["reason"]
    assert_intact(live, baseline)


def test_mixed_batch_accepts_the_valid_events_and_lists_the_bad_by_index(
    live: Any, baseline: Baseline
) -> None:
    """Every bad event interleaved with good ones in ONE batch: the good ones are all accepted and
    projected; each bad one is listed at its own index with its own reason."""
    rid = new_run_id()
    good = [run_started(rid, agent="mixed")]
    batch: list[Any] = [good[0]]
    expected = []
    for name, (bad, reason) in BAD_EVENTS.items():
        expected.append((len(batch), _expected_id(bad), reason, name))
        batch.append(bad)
        good.append(span_recorded(rid, new_span_id()))
        batch.append(good[-1])
    r = post_events(live, {"events": batch})
    assert r.status_code == 200, r.text
    body = IngestResponse.model_validate(r.json())
    assert (body.accepted, body.duplicates) == (len(good), 0)
    assert [(x.index, x.id) for x in body.rejected] == [(i, eid) for i, eid, _, _ in expected]
    for got, (_, _, reason, name) in zip(body.rejected, expected, strict=True):
        assert reason.lower() in got.reason.lower(), (name, got.reason)
    assert_intact(live, baseline, *(e["id"] for e in good))
    detail = call(live, "GET", f"/v1/runs/{rid}").json()
    assert detail["agent"] == "mixed"
    assert detail["counts"]["span"] == len(good) - 1


def test_batch_at_the_event_limit_is_accepted(live: Any, baseline: Baseline) -> None:
    """The 413 boundary: exactly max_batch_events is fine."""
    assert live.settings.max_batch_events == 1000
    rid = new_run_id()
    batch = [run_started(rid)] + [span_recorded(rid, f"{i + 1:016x}") for i in range(999)]
    r = post_events(live, {"events": batch})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}
    assert_intact(live, baseline, *(e["id"] for e in batch))
    assert call(live, "GET", f"/v1/runs/{rid}").json()["counts"]["span"] == 999


def test_gzip_and_deflate_bodies_are_accepted(live: Any, baseline: Baseline) -> None:
    """The encodings that are refused when broken work when well-formed (raw deflate included)."""
    ids = []
    for encoding, compress in (
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some clients send it
    ):
        event = run_started(new_run_id())
        ids.append(event["id"])
        r = call(
            live,
            "POST",
            "/v1/events",
            content=compress(json.dumps({"events": [event]}).encode()),
            headers={"content-type": "application/json", "content-encoding": encoding},
        )
        assert r.status_code == 200, (encoding, r.text)
        assert r.json()["accepted"] == 1
    assert_intact(live, baseline, *ids)


# -- authentication: revoked keys ----------------------------------------------------------------


def test_revoked_key_is_refused(live: Any, baseline: Baseline) -> None:
    """A key revoked before its first use is refused at once (the server caches keys for
    KEY_CACHE_SECONDS, so a key never seen before revocation is the clean case)."""
    assert deps.KEY_CACHE_SECONDS <= 30
    with live.store.write() as conn:
        project = projects.get_project(conn, name="acme")
        assert project is not None
        new = projects.create_key(conn, project=project, name="soon-revoked")
    with live.store.write() as conn:
        projects.revoke_key(conn, key_id=new.id)
    r = post_events(live, {"events": [run_started(new_run_id())]}, key=new.key)
    assert_problem(r, 401, "unauthorized", "not valid")
    assert_problem(call(live, "GET", "/v1/runs", key=new.key), 401, "unauthorized")
    assert_problem(call(live, "GET", f"/v1/runs/{baseline.run_id}", key=new.key), 401, "unauthorized")
    assert_intact(live, baseline)


def test_revoking_a_used_key_takes_effect_once_the_cache_expires(
    live: Any, baseline: Baseline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that was used, then revoked, is refused once its cache entry expires. The cache
    lifetime is read at each lookup, so setting it to 0 shows the revocation path without waiting."""
    monkeypatch.setattr(deps, "KEY_CACHE_SECONDS", 0.0)
    with live.store.write() as conn:
        project = projects.get_project(conn, name="acme")
        assert project is not None
        new = projects.create_key(conn, project=project, name="used-then-revoked")
    event = run_started(new_run_id())
    r = post_events(live, {"events": [event]}, key=new.key)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    with live.store.write() as conn:
        projects.revoke_key(conn, key_id=new.id)
    assert_problem(
        post_events(live, {"events": [run_started(new_run_id())]}, key=new.key), 401, "unauthorized"
    )
    # The project's other key is unaffected.
    assert call(live, "GET", "/v1/runs").status_code == 200
    assert_intact(live, baseline, event["id"])


# -- duplicates ----------------------------------------------------------------------------------


def _read_model(live: Any, run_ids: list[str]) -> dict[str, Any]:
    since = time.strftime("%Y-%m-%d", time.gmtime(BASE_NS // SEC - 86_400))
    until = time.strftime("%Y-%m-%d", time.gmtime(BASE_NS // SEC + 86_400))
    out: dict[str, Any] = {"runs": {rid: call(live, "GET", f"/v1/runs/{rid}").json() for rid in run_ids}}
    out["list"] = call(live, "GET", "/v1/runs", params={"limit": "200"}).json()
    for group in ("", "agent", "agent,provider,model"):
        params = {"since": since, "until": until, **({"group_by": group} if group else {})}
        out[f"costs:{group}"] = call(live, "GET", "/v1/costs/daily", params=params).json()
    return out


def test_duplicate_delivery_counts_nothing_twice(live: Any) -> None:
    price = call(
        live,
        "POST",
        "/v1/prices",
        json={"model": "acme-1", "input_per_mtok": "1.00", "output_per_mtok": "2.00"},
        key=live.admin_key,
    )
    assert price.status_code == 201, price.text
    rid, rid2 = new_run_id(), new_run_id()
    root, child = new_span_id(), new_span_id()
    batch = [
        run_started(rid, agent="dup-agent"),
        ev("span.started", rid, BASE_NS + SEC, {"span_id": root, "name": "plan", "kind": "agent"}),
        span_recorded(
            rid,
            child,
            parent_span_id=root,
            provider="acme",
            model="acme-1",
            usage={"input_tokens": 1_000_000, "output_tokens": 500_000},
        ),
        span_recorded(
            rid,
            new_span_id(),
            parent_span_id=root,
            provider="openai",
            model="gpt-4o",
            usage={"input_tokens": 2000, "output_tokens": 300},
        ),
        ev("span.ended", rid, BASE_NS + 5 * SEC, {"span_id": root}),
        ev("score.recorded", rid, BASE_NS + 6 * SEC, {"name": "quality", "value": 0.5}),
        ev("run.ended", rid, BASE_NS + 6 * SEC, {"status": "succeeded"}),
        run_started(rid2, agent="dup-agent-2"),
        span_recorded(rid2, new_span_id(), model="acme-1", usage={"input_tokens": 10, "output_tokens": 10}),
    ]
    first = post_events(live, {"events": batch})
    assert first.json() == {"accepted": 9, "duplicates": 0, "rejected": []}
    wait_projected(live)
    before = _read_model(live, [rid, rid2])
    run = before["runs"][rid]
    # acme-1: $1.00 + $1.00; gpt-4o: 2000 * 2.5/M + 300 * 10/M = $0.005 + $0.003
    assert run["cost_usd"] == "2.008"
    assert run["counts"]["span"] == 3 and run["counts"]["llm"] == 2
    assert len(run["scores"]) == 1
    assert before["costs:"]["total"]["calls"] == 3
    assert Decimal(before["costs:"]["total"]["cost_usd"]) == Decimal("2.008") + Decimal("0.00003")

    # The same batch again: every event is a duplicate and the read model does not move.
    second = post_events(live, {"events": batch})
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 9, "rejected": []}
    wait_projected(live)
    assert _read_model(live, [rid, rid2]) == before
    assert sorted(log_event_ids(live)) == sorted(e["id"] for e in batch)

    # A batch that repeats an id inside itself, and one that overlaps the log: new events only.
    extra = span_recorded(rid2, new_span_id(), model="acme-1", usage={"input_tokens": 10, "output_tokens": 0})
    third = post_events(live, {"events": [batch[0], extra, extra, batch[-1]]})
    assert third.json() == {"accepted": 1, "duplicates": 3, "rejected": []}
    wait_projected(live)
    after = _read_model(live, [rid, rid2])
    assert after["runs"][rid] == before["runs"][rid]
    assert after["runs"][rid2]["counts"]["span"] == 2
    assert after["costs:"]["total"]["calls"] == 4
    assert sorted(log_event_ids(live)) == sorted([*(e["id"] for e in batch), extra["id"]])


# -- known crashes on hostile-but-parseable input ------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_event_body_is_rejected_not_a_500(live: Any, baseline: Baseline) -> None:
    rid = new_run_id()
    good = run_started(rid)
    deep = run_started(new_run_id(), inputs=_nested(300))
    r = post_events(live, {"events": [good, deep]})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert [x["index"] for x in r.json()["rejected"]] == [1]
    assert_intact(live, baseline, good["id"])


def test_nul_character_in_event_id(live: Any, baseline: Baseline, request: pytest.FixtureRequest) -> None:
    good = run_started(new_run_id())
    nul = run_started(new_run_id())
    nul["id"] = "nul\x00id"
    r = post_events(live, {"events": [good, nul]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["accepted"], doc["duplicates"]) == (1, 0)
    assert [x["index"] for x in doc["rejected"]] == [1]
    assert "NUL characters (U+0000) are not allowed" in doc["rejected"][0]["reason"]
    assert_intact(live, baseline, good["id"])


def test_nul_character_in_body_does_not_stop_the_projector(
    live: Any, baseline: Baseline, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_projector_retries(caplog)
    nul_run = new_run_id()
    r = post_events(live, {"events": [run_started(nul_run, agent="a\x00b", inputs={"q": "x\x00y"})]})
    doc = assert_problem(r, 400, "invalid_event")  # the batch's only event is refused: NUL in its text
    assert [x["index"] for x in doc["rejected"]] == [0]
    assert "NUL characters (U+0000) are not allowed" in doc["rejected"][0]["reason"]
    # Later good events still reach the read model; the refused run never does.
    later = run_started(new_run_id(), agent="after-nul")
    assert post_events(live, {"events": [later]}).json()["accepted"] == 1
    wait_projected(live, timeout=2)
    assert call(live, "GET", f"/v1/runs/{later['run_id']}").status_code == 200
    assert call(live, "GET", f"/v1/runs/{nul_run}").status_code == 404


def test_absurd_but_valid_token_counts_do_not_stop_the_projector(
    live: Any, baseline: Baseline, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_projector_retries(caplog)
    # the largest a call may be: 1e10 tokens each way at the dearest override ($10,000 per MTok)
    price = {"model": "pricey-1", "input_per_mtok": "10000", "output_per_mtok": "10000"}
    assert call(live, "POST", "/v1/prices", json=price, key=live.admin_key).status_code == 201
    rid = new_run_id()
    usage = {"input_tokens": 10**10, "output_tokens": 10**10}
    batch = [run_started(rid), span_recorded(rid, new_span_id(), model="pricey-1", usage=usage)]
    assert post_events(live, {"events": batch}).json()["accepted"] == 2
    later = run_started(new_run_id(), agent="after-overflow")
    assert post_events(live, {"events": [later]}).json()["accepted"] == 1
    wait_projected(live, timeout=2)
    assert call(live, "GET", f"/v1/runs/{later['run_id']}").status_code == 200
    assert call(live, "GET", f"/v1/runs/{rid}").status_code == 200


# -- property: random JSON-ish events ------------------------------------------------------------

# NUL is left out of generated text: it has its own tests above (PostgreSQL cannot store it).
_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=8
)
_RUN_IDS = ("ab" * 16, "cd" * 16, "0123456789abcdef" * 2)
_SPAN_IDS = ("a1" * 8, "b2" * 8, "c3" * 8)
_NOW = time.time_ns()


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes any JSON value."""
    return st.one_of(valid, valid, valid, _JSON)


_TS = _maybe(
    st.integers(_NOW - 20 * DAY_NS, _NOW)
    | st.sampled_from(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "3000-01-01T00:00:00Z", "soon"])
    | st.integers(-(2**63), 2**64 - 1)
)
# Bounded so sums stay far from int64 nano-dollars (the largest valid call has its own test above).
_TOKENS = _maybe(st.integers(-3, 10**9) | st.just(10**12 + 1))
_USAGE = st.fixed_dictionaries(
    {},
    optional={
        k: _TOKENS
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        )
    },
)
_SPAN_ID = _maybe(st.sampled_from(_SPAN_IDS) | st.text("0123456789abcdef", min_size=15, max_size=17))
_BODY = st.fixed_dictionaries(
    {},
    optional={
        "agent": _maybe(st.sampled_from(["a", "b"]) | _TEXT),
        "span_id": _SPAN_ID,
        "parent_span_id": _SPAN_ID,
        "name": _maybe(st.sampled_from(["llm", "tool"])),
        "kind": _maybe(st.sampled_from(["llm", "tool", "agent", "nope"])),
        "status": _maybe(st.sampled_from(["ok", "error", "succeeded", "failed", "cancelled"])),
        "ended_at": _TS,
        "usage": _maybe(_USAGE),
        "model": _maybe(st.sampled_from(["gpt-4o", "claude-3-5-sonnet-latest", "mystery-9000"]) | _TEXT),
        "provider": _maybe(st.sampled_from(["openai", "anthropic", "azure.ai.openai"]) | _TEXT),
        "cost_usd": _maybe(st.decimals(-1, 10**6 + 1, places=9, allow_nan=False).map(str)),
        "tags": _maybe(st.lists(_TEXT, max_size=3)),
        "attempt": _maybe(st.integers(0, 1001)),
        "retry_of": _SPAN_ID,
        "error": _maybe(st.fixed_dictionaries({"type": _TEXT, "message": _TEXT})),
        "inputs": _JSON,
        "value": _maybe(st.floats(allow_nan=False, allow_infinity=False)),
        "label": _TEXT,
        "extra": _JSON,
    },
)
_EVENT = st.fixed_dictionaries(
    {
        "id": _maybe(st.text("abcd", min_size=1, max_size=3)),  # few ids: many re-sends
        "type": _maybe(st.sampled_from([*CLIENT_EVENT_TYPES, "run.abandoned", "run.exploded"])),
        "run_id": _maybe(
            st.sampled_from(_RUN_IDS) | st.text("0123456789abcdefABCDEF", min_size=31, max_size=33)
        ),
        "ts": _TS,
        "body": _maybe(_BODY),
    },
    optional={"extra": _JSON},
)
_PAYLOAD = st.one_of(
    st.fixed_dictionaries({"events": st.lists(st.one_of(_EVENT, _EVENT, _EVENT, _JSON), max_size=6)}),
    _JSON,
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(payload=_PAYLOAD)
def test_random_events_never_500_and_never_lose_accepted_events(live: Any, payload: Any) -> None:
    """Shares one server across examples: the log must hold exactly the events acknowledged so far,
    the projector must keep up, and every run an accepted event belongs to must be readable."""
    before = set(log_event_ids(live))
    r = call(
        live, "POST", "/v1/events", content=json.dumps(payload), headers={"content-type": "application/json"}
    )
    assert r.status_code in (200, 400), r.text
    raw = payload.get("events") if isinstance(payload, dict) else None
    if r.status_code == 400:
        doc = assert_problem(r, 400, "invalid_event")
        assert set(log_event_ids(live)) == before
        if isinstance(raw, list) and raw:
            assert [x["index"] for x in doc["rejected"]] == list(range(len(raw)))
        return
    assert isinstance(raw, list)
    res = IngestResponse.model_validate(r.json())
    assert res.accepted + res.duplicates + len(res.rejected) == len(raw)
    rejected = {x.index for x in res.rejected}
    assert rejected <= set(range(len(raw)))
    kept = [e for i, e in enumerate(raw) if i not in rejected]
    after = log_event_ids(live)
    assert len(after) == len(set(after)), "an event id is in the log twice"
    assert set(after) == before | {e["id"] for e in kept}, "acknowledged events missing from the log"
    assert len(set(after) - before) == res.accepted
    # The newly accepted events: the first of each id not already in the log. (A re-used id is a
    # no-op even when the content differs: the id is the idempotency key.)
    new: dict[str, dict[str, Any]] = {}
    for e in kept:
        if e["id"] not in before:
            new.setdefault(e["id"], e)
    assert len(new) == res.accepted
    with live.store.read() as conn:
        q = select(events_table.c.event_id, events_table.c.type, events_table.c.run_id)
        stored = {i: (t, r) for i, t, r in conn.execute(q.where(events_table.c.event_id.in_(list(new))))}
    assert stored == {i: (e["type"], e["run_id"].lower()) for i, e in new.items()}
    wait_projected(live, timeout=10)
    for rid in {e["run_id"].lower() for e in new.values()}:
        got = call(live, "GET", f"/v1/runs/{rid}")
        assert got.status_code == 200, got.text
        RunDetail.model_validate(got.json())
