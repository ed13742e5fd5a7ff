"""The cap at the call boundary, as an agent meets it: refused before the call, recorded on the run,
never retried, fail closed when the ledger is away."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import controlroom
from conftest import LiveServer, free_port, price_and_cap
from controlroom.sdk._control import ControlClient
from tests_support import wait_for


@pytest.fixture
def capped(live: LiveServer, tmp_path: Path) -> Iterator[LiveServer]:
    """Model acme-1 at $1/M tokens in and out; the project capped at $0.012 a day."""
    price_and_cap(live, "0.012")
    controlroom.init(
        url=live.url, api_key=live.key, spool_dir=tmp_path / "spool", strict=True, flush_interval=0.05
    )
    yield live
    controlroom.shutdown(timeout=10)


def call(made: list[str], **record: Any) -> None:
    # 1,000 input tokens (estimate) + max_tokens 4,000 at $1/M: a hold of $0.005
    with controlroom.llm("acme", "acme-1", max_tokens=4000, input_tokens_estimate=1000) as c:
        made.append("call")
        c.record(input_tokens=1000, output_tokens=1000, **record)


def test_calls_over_the_cap_are_refused_before_they_are_made(capped: LiveServer) -> None:
    made: list[str] = []
    with pytest.raises(controlroom.BudgetExceeded) as refused, controlroom.run("billing-bot") as run:
        for _ in range(10):
            call(made)  # each settles at $0.002
    # $0.002 each: after 4 calls $0.008 is spent, and a fifth hold of $0.005 would reach $0.013
    assert made == ["call"] * 4
    e = refused.value
    assert e.reason == "cap_reached" and not isinstance(e, httpx.HTTPError)
    assert (e.cap_usd, e.settled_usd, e.held_usd, e.requested_usd) == ("0.012", "0.008", "0", "0.005")
    assert e.resets_at and e.resets_at.endswith("T00:00:00Z")
    assert controlroom.flush(10)
    with capped.client() as http:
        view = wait_for(
            lambda: (
                (r := http.get(f"/v1/runs/{run.run_id}")).status_code == 200
                and r.json()["status"] == "failed"
                and r.json()
            )
        )
        budget = http.get("/v1/budgets").json()["budgets"][0]
    spans = view["spans"]
    refused_span = spans[-1]
    assert len(spans) == 5 and refused_span["status"] == "error"
    assert refused_span["error"]["type"] == "BudgetExceeded"
    assert refused_span["attributes"]["controlroom.budget.reason"] == "cap_reached"
    assert view["failing_span_id"] == refused_span["span_id"]
    assert budget["settled_usd"] == "0.008" and budget["held_usd"] == "0"


def test_a_refusal_is_not_retried_by_the_fallback_helper(capped: LiveServer) -> None:
    with capped.client(admin=True) as http:
        assert http.put("/v1/budgets", json={"cap_usd": "0.001"}).status_code == 200
    made: list[str] = []
    with controlroom.run("billing-bot"), pytest.raises(controlroom.BudgetExceeded):
        controlroom.call_with_fallback(lambda m: call(made), ["acme-1", "acme-1"], retries=5, backoff=0)
    assert made == []


def test_an_unpriced_model_is_refused_under_a_cap(capped: LiveServer) -> None:
    with controlroom.run("billing-bot"), pytest.raises(controlroom.BudgetExceeded) as refused:  # noqa: SIM117
        with controlroom.llm("acme", "mystery-model", max_tokens=10):
            pytest.fail("the call must not be made")
    assert refused.value.reason == "unpriced_model"
    assert "controlroom prices set" in str(refused.value)


def test_an_unreachable_ledger_refuses(tmp_path: Path) -> None:
    controlroom.init(
        url=f"http://127.0.0.1:{free_port()}",
        api_key="cr_" + "x" * 40,
        spool_dir=tmp_path / "spool",
        strict=True,
        shutdown_timeout=0.2,
    )
    try:
        with controlroom.run("billing-bot"), pytest.raises(controlroom.BudgetExceeded) as refused:  # noqa: SIM117
            with controlroom.llm("openai", "gpt-4o-mini", max_tokens=10):
                pytest.fail("the call must not be made")
        assert refused.value.reason == "ledger_unavailable"
    finally:
        controlroom.shutdown(timeout=0.2)


def test_http_refusal_is_a_402_problem_with_retry_after(capped: LiveServer) -> None:
    body = {"model": "acme-1", "input_tokens": 1_000_000, "max_output_tokens": 1_000_000, "agent": "x"}
    with capped.client() as http:
        r = http.post("/v1/budget/reservations", json=body)
    assert r.status_code == 402
    assert r.headers["content-type"] == "application/problem+json"
    assert 0 < int(r.headers["retry-after"]) <= 86_400
    problem = r.json()
    assert problem["code"] == "daily_cost_cap_reached" and problem["reason"] == "cap_reached"
    assert problem["requested_usd"] == "2" and problem["cap_usd"] == "0.012"


def test_a_call_that_reports_no_usage_is_charged_its_hold(capped: LiveServer) -> None:
    with (
        controlroom.run("billing-bot"),
        controlroom.llm("acme", "acme-1", max_tokens=4000, input_tokens_estimate=1000),
    ):
        pass  # the caller never recorded usage: the call may have cost anything up to its hold
    with capped.client() as http:
        budget = http.get("/v1/budgets").json()["budgets"][0]
    assert budget["settled_usd"] == "0.005" and budget["held_usd"] == "0"


def test_an_unpriced_refusal_says_no_retry_after(capped: LiveServer) -> None:
    with capped.client() as http:
        r = http.post("/v1/budget/reservations", json={"model": "mystery-model", "input_tokens": 10})
    assert r.status_code == 402 and r.json()["reason"] == "unpriced_model"
    assert "retry-after" not in r.headers


def _budget(live: LiveServer) -> dict[str, Any]:
    with live.client() as http:
        return dict(http.get("/v1/budgets").json()["budgets"][0])


def _lose_answers(monkeypatch: pytest.MonkeyPatch, how_many: int) -> list[int]:
    """The next ``how_many`` answers to reservation requests are lost after the request was sent
    (as when a keep-alive connection drops): the server acted on them, the agent never hears."""
    lost: list[int] = []
    real = http.client.HTTPConnection.getresponse

    def getresponse(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
        response = real(self)
        if len(lost) < how_many and self._controlroom_path.endswith("/reservations"):  # type: ignore[attr-defined]
            response.read()
            lost.append(response.status)
            raise http.client.RemoteDisconnected("the answer was lost")
        return response

    real_request = http.client.HTTPConnection.request

    def request(self: http.client.HTTPConnection, method: str, url: str, *a: Any, **kw: Any) -> None:
        self._controlroom_path = url  # type: ignore[attr-defined]
        real_request(self, method, url, *a, **kw)

    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", getresponse)
    monkeypatch.setattr(http.client.HTTPConnection, "request", request)
    return lost


def reserve_half_a_cent(control: ControlClient) -> str | None:
    """acme-1, 1,000 input + 4,000 output tokens: a hold of $0.005."""
    return control.reserve(
        agent="bot",
        provider="acme",
        model="acme-1",
        input_tokens=1000,
        max_output_tokens=4000,
    )


def test_a_reservation_retried_after_a_lost_answer_is_held_once(
    capped: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = _lose_answers(monkeypatch, 1)
    control = ControlClient(capped.url, capped.key, timeout=10)
    try:
        rid = reserve_half_a_cent(control)
        assert lost == [201]  # the first request was held by the server; its answer never arrived
        assert rid is not None
        assert _budget(capped)["held_usd"] == "0.005"  # held once, not twice
        assert control.settle(
            rid, outcome="completed", usage={"input_tokens": 1000, "output_tokens": 1000}, cost_usd=None
        )
    finally:
        control.close()
    assert (_budget(capped)["settled_usd"], _budget(capped)["held_usd"]) == ("0.002", "0")


def test_a_reservation_whose_answers_are_all_lost_is_released(
    capped: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call is refused (ledger_unavailable) and not made; the hold the server did make is
    released at once instead of being charged in full when it expires."""
    lost = _lose_answers(monkeypatch, 2)
    control = ControlClient(capped.url, capped.key, timeout=10)
    try:
        with pytest.raises(controlroom.BudgetExceeded) as refused:
            reserve_half_a_cent(control)
        assert refused.value.reason == "ledger_unavailable" and lost == [201, 201]
        wait_for(lambda: _budget(capped)["held_usd"] == "0")
        assert _budget(capped)["settled_usd"] == "0"
    finally:
        control.close()


def test_the_demo_fleet_meets_its_caps_quietly(traced: LiveServer) -> None:
    """`controlroom demo` caps a new project; its live coding agent is refused once its cap is
    spent, and the fleet goes on (the refused run is recorded as failed)."""
    import random

    from controlroom.accounts.projects import get_project
    from controlroom.demo import LiveFleet, set_demo_caps

    with traced.store.read() as conn:
        project = get_project(conn, name="acme")
    assert project is not None
    assert set_demo_caps(traced.store, project) == ["$500 for the project", "$0.25 for coding-agent"]
    assert set_demo_caps(traced.store, project) == []  # a project with caps keeps its own
    with traced.client(admin=True) as http:
        assert http.put("/v1/budgets", json={"cap_usd": "0", "agent": "coding-agent"}).status_code == 200
    LiveFleet._one_run(controlroom, random.Random(1), agent="coding-agent")  # no exception escapes
    LiveFleet._one_run(controlroom, random.Random(1), agent="support-bot")
    assert controlroom.flush(10)
    with traced.client() as http:
        wait_for(lambda: len(http.get("/v1/runs").json()["runs"]) == 2)
        runs = {r["agent"]: r for r in http.get("/v1/runs").json()["runs"]}
    assert runs["coding-agent"]["status"] == "failed"
    assert runs["coding-agent"]["error"]["type"] == "BudgetExceeded"
    assert runs["support-bot"]["error"] is None or runs["support-bot"]["error"]["type"] != "BudgetExceeded"


def test_a_refusal_says_how_long_to_wait(capped: LiveServer) -> None:
    control = ControlClient(capped.url, capped.key, timeout=10)
    try:
        held = [reserve_half_a_cent(control), reserve_half_a_cent(control)]  # $0.010 of $0.012 held
        with pytest.raises(controlroom.BudgetExceeded) as busy:
            reserve_half_a_cent(control)
        assert busy.value.reason == "held_by_in_flight_calls" and busy.value.retry_after == 2
        for rid in held:
            assert rid and control.settle(rid, outcome="unknown", usage=None, cost_usd=None)  # $0.010 spent
        with pytest.raises(controlroom.BudgetExceeded) as spent:
            reserve_half_a_cent(control)
        assert spent.value.reason == "cap_reached"
        assert spent.value.retry_after is not None and 2 < spent.value.retry_after <= 86_400  # the day's end
        with pytest.raises(controlroom.BudgetExceeded) as unpriced:
            control.reserve(
                agent="bot",
                provider=None,
                model="mystery-model",
                input_tokens=1,
                max_output_tokens=1,
            )
        assert unpriced.value.reason == "unpriced_model" and unpriced.value.retry_after is None
    finally:
        control.close()


def test_a_reservation_that_times_out_is_sent_once_then_released() -> None:
    """A server that takes the request and never answers: the SDK does not send it again (the
    server may still be working on it), refuses the call, and releases the id in the background."""
    import socket
    import threading

    lines: list[bytes] = []
    held: list[socket.socket] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never answered, never closed until the end
            threading.Thread(target=lambda c=conn: lines.append(c.recv(65536).split(b"\r\n", 1)[0])).start()

    threading.Thread(target=accept, daemon=True).start()
    control = ControlClient(f"http://127.0.0.1:{server.getsockname()[1]}", "cr_" + "k" * 40, timeout=0.3)
    try:
        with pytest.raises(controlroom.BudgetExceeded) as refused:
            reserve_half_a_cent(control)
        assert refused.value.reason == "ledger_unavailable"
        wait_for(lambda: any(b"/settle" in line for line in lines))
        assert [line.split()[1] for line in lines if b"/settle" not in line] == [b"/v1/budget/reservations"]
    finally:
        control.close()
        server.close()
        for conn in held:
            conn.close()


def test_an_agent_no_cap_applies_to_is_not_measured(traced: LiveServer) -> None:
    """The input estimate (a JSON serialisation of the prompt, tools and schemas) is computed only
    when the ledger is asked: once the server said no cap applies, calls skip it."""
    from controlroom.sdk._tracing import LLMSpan

    measured: list[int] = []

    def estimate() -> int:
        measured.append(1)
        return 10

    for _ in range(3):
        with (
            controlroom.run("bot"),
            LLMSpan("acme", "acme-1", max_tokens=5, input_tokens_estimate=estimate) as c,
        ):
            c.record(input_tokens=1, output_tokens=1)
    assert measured == [1]  # the first call asked (no cap applies); the next two did not
