"""The SDK's approval gate against the approvals HTTP contract (an in-memory server on the
MockTransport): an action runs only when a person approved it, once, with exactly the approved
arguments; otherwise it raises and does not run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_approvals import FakeApprovals, answer, problem

import controlroom
from controlroom.approvals.binding import arguments_hash
from controlroom.sdk._transport import Request, Response

KEY = "cr_" + "k" * 40
URL = "http://controlroom.test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApprovals]:
    fake = FakeApprovals()
    controlroom.init(
        url=URL,
        api_key=KEY,
        spool_dir=tmp_path / "spool",
        strict=True,
        transport=fake.transport(),
        flush_interval=0.05,
    )
    yield fake
    controlroom.shutdown(timeout=10)


def decide_when_asked(
    fake: FakeApprovals, decision: str, reason: str | None = None, nth: int = 1
) -> threading.Thread:
    """A person who decides the ``nth`` request once it is asked."""
    thread = threading.Thread(
        target=lambda: fake.decide(fake.wait_for_request(nth)["id"], decision, reason=reason), daemon=True
    )
    thread.start()
    return thread


def spans_of(fake: FakeApprovals) -> dict[str, dict[str, Any]]:
    """Spans sent so far, by id: the start's body merged with the end's."""
    assert controlroom.flush(10)
    out: dict[str, dict[str, Any]] = {}
    for e in fake.events:
        if e["type"] in ("span.started", "span.ended"):
            body = dict(e["body"])
            attrs = {**out.get(body["span_id"], {}).get("attributes", {}), **body.pop("attributes", {})}
            out.setdefault(body["span_id"], {}).update(body, attributes=attrs)
    return out


# -- approved, rejected, pending ---------------------------------------------------------------


def test_approved_runs_once_with_exactly_the_arguments(server: FakeApprovals) -> None:
    calls: list[tuple[Any, ...]] = []

    @controlroom.requires_approval("refund")
    def refund(order: int, usd: str, *, note: str = "goodwill") -> str:
        calls.append((order, usd, note))
        return "refunded"

    decide_when_asked(server, "approved")
    with controlroom.run("support-bot", user_id="grace"):
        assert refund(1042, "30.00") == "refunded"

    assert calls == [(1042, "30.00", "goodwill")]
    a = server.only()
    assert a["arguments"] == {"order": 1042, "usd": "30.00", "note": "goodwill"}
    assert a["action"] == "refund" and a["idempotency_key"] == "refund#1" and a["agent"] == "support-bot"
    assert server.asked[0]["started_by"] == "grace"
    assert server.claims == [a["id"]]
    assert a["status"] == "executed"


def test_rejected_does_not_run_and_says_why(server: FakeApprovals) -> None:
    calls: list[int] = []

    @controlroom.requires_approval
    def delete_account(user: int) -> None:
        calls.append(user)

    decide_when_asked(server, "rejected", reason="not without a ticket")
    with controlroom.run("ops-bot"), pytest.raises(controlroom.ApprovalRejected) as caught:
        delete_account(7)

    assert calls == []
    e = caught.value
    assert (e.status, e.reason, e.decided_by, e.approval_id) == (
        "rejected",
        "not without a ticket",
        "ada",
        "ap1",
    )
    assert "not without a ticket" in str(e) and isinstance(e, controlroom.ApprovalError)
    assert server.claims == []


@pytest.mark.parametrize("status", ["expired", "cancelled"])
def test_expired_or_cancelled_is_a_rejection(server: FakeApprovals, status: str) -> None:
    decide_when_asked(server, status)
    with (
        pytest.raises(controlroom.ApprovalRejected) as caught,
        controlroom.approval("deploy", {"sha": "abc"}),
    ):
        raise AssertionError("ran without approval")
    assert caught.value.status == status


@pytest.mark.parametrize("wait", [0, 0.2])
def test_never_actioned_raises_pending_and_the_request_stays_pending(
    server: FakeApprovals, wait: float
) -> None:
    calls: list[str] = []

    @controlroom.requires_approval("email_customer", wait=wait)
    def email(to: str) -> None:
        calls.append(to)

    with controlroom.run("bot", run_id="r" * 32):
        with pytest.raises(controlroom.ApprovalPending) as caught:
            email("a@example.com")
        assert caught.value.approval_id == "ap1" and caught.value.status == "pending"
        assert calls == [] and server.only()["status"] == "pending"
        assert server.waits_answered_by_decision == ([False] if wait else [])

        # Approved later: asking again in the same run finds the same request, and runs once.
        server.decide("ap1", "approved")
        email("a@example.com")
    assert calls == ["a@example.com"] and len(server.approvals) == 1 and server.claims == ["ap1"]


# -- the binding ---------------------------------------------------------------------------------


def test_a_changed_argument_is_a_new_request_and_never_runs_under_the_old_approval(
    server: FakeApprovals,
) -> None:
    calls: list[int] = []

    @controlroom.requires_approval("refund", wait=0)
    def refund(usd: int) -> None:
        calls.append(usd)

    with controlroom.run("bot"):
        with pytest.raises(controlroom.ApprovalPending):
            refund(30)
        server.decide("ap1", "approved")
        with pytest.raises(controlroom.ApprovalPending) as caught:
            refund(3000)  # same step of the run, other arguments
    assert caught.value.approval_id == "ap2"
    assert calls == [] and server.claims == []
    assert server.approvals["ap1"]["status"] == "approved"  # the old grant stays unused
    assert server.approvals["ap2"]["arguments"] == {"usd": 3000}


def test_arguments_changed_while_waiting_are_not_claimed(server: FakeApprovals) -> None:
    order = {"id": 1, "usd": 30}

    def change_then_approve() -> None:
        a = server.wait_for_request()
        order["usd"] = 3000  # the agent's object changes while the person looks at the request
        server.decide(a["id"], "approved")

    threading.Thread(target=change_then_approve, daemon=True).start()
    with (
        pytest.raises(controlroom.ApprovalError, match="changed while waiting"),
        controlroom.approval("refund", order),
    ):
        raise AssertionError("ran with changed arguments")
    assert server.claims == [] and server.only()["status"] == "approved"


def test_a_grant_runs_once_a_replayed_run_does_not_run_it_again(server: FakeApprovals) -> None:
    """The same run asked again (a restarted agent with the same run id) finds the request; once its
    grant was claimed, it raises instead of running twice."""
    calls: list[str] = []

    @controlroom.tool("send_wire", approval=True)
    def send_wire(to: str) -> None:
        calls.append(to)

    decide_when_asked(server, "approved")
    for _attempt in range(2):
        with controlroom.run("bot", run_id="f" * 32):
            try:
                send_wire("ACME")
            except controlroom.ApprovalError as e:
                assert type(e) is controlroom.ApprovalError and e.status == "executed"
    assert calls == ["ACME"] and server.claims == ["ap1"] and len(server.approvals) == 1


def test_a_second_claim_refused_by_the_server_never_runs(server: FakeApprovals) -> None:
    server.fail = lambda r: (
        problem(409, "claimed", status_now="claimed") if r.path.endswith("/claim") else None
    )
    decide_when_asked(server, "approved")
    with (
        pytest.raises(controlroom.ApprovalError, match="a grant runs once") as caught,
        controlroom.approval("deploy", {"sha": "abc"}),
    ):
        raise AssertionError("ran twice")
    assert caught.value.status == "claimed"


def test_steps_move_on_once_decided(server: FakeApprovals) -> None:
    """Two refunds with the same arguments in one run are two requests (steps 1 and 2)."""
    for nth in (1, 2):
        decide_when_asked(server, "approved", nth=nth)
    with controlroom.run("bot"):
        for _ in range(2):
            with controlroom.approval("refund", {"usd": 5}):
                pass
    assert [a["idempotency_key"] for a in server.approvals.values()] == ["refund#1", "refund#2"]
    assert [a["status"] for a in server.approvals.values()] == ["executed", "executed"]


def test_the_key_is_the_idempotency_key(server: FakeApprovals) -> None:
    @controlroom.requires_approval("refund", wait=0, key=lambda args: args["call_id"])
    def refund(call_id: str, usd: int) -> None:
        raise AssertionError("not approved")

    with pytest.raises(controlroom.ApprovalPending):
        refund("call_9Xb", 5)
    with pytest.raises(controlroom.ApprovalPending):
        controlroom.approval("deploy", {}, key="call_1", wait=0).grant()
    assert [a["idempotency_key"] for a in server.approvals.values()] == ["call_9Xb", "call_1"]


# -- failures of the action, of the server ------------------------------------------------------


def test_a_failing_action_is_reported_failed_and_reraised(server: FakeApprovals) -> None:
    decide_when_asked(server, "approved")
    with pytest.raises(ZeroDivisionError), controlroom.approval("divide", {"by": 0}) as grant:
        assert grant.arguments == {"by": 0} and grant.decided_by == "ada"
        _ = 1 / 0
    a = server.only()
    assert a["status"] == "failed" and a["error"]["type"] == "ZeroDivisionError"


def test_an_unreachable_server_never_runs_the_action(server: FakeApprovals) -> None:
    def unreachable(request: Request) -> Response:
        raise ConnectionRefusedError("connection refused")

    server.fail = unreachable
    with (
        pytest.raises(controlroom.ApprovalError, match="could not be asked") as caught,
        controlroom.approval("deploy", {"sha": "abc"}, wait=0),
    ):
        raise AssertionError("ran without approval")
    assert caught.value.approval_id is None


def test_a_lost_wait_answer_is_retried_within_the_wait(server: FakeApprovals) -> None:
    lost: list[str] = []

    def lose_the_first_wait(request: Request) -> Response | None:
        if "/wait" in request.path and not lost:
            lost.append(request.path)
            raise ConnectionResetError("reset")
        return None

    server.fail = lose_the_first_wait
    decide_when_asked(server, "approved")
    with controlroom.approval("deploy", {"sha": "abc"}) as grant:
        assert grant.status == "claimed"
    assert lost and server.only()["status"] == "executed"


def test_a_claim_without_an_answer_is_marked_failed_and_does_not_run(server: FakeApprovals) -> None:
    def claim_lands_answer_lost(request: Request) -> Response | None:
        if request.path.endswith("/claim"):
            server.fail = lambda r: None
            server.handle(request)  # the claim lands on the server ...
            raise TimeoutError("timed out")  # ... but its answer never comes
        return None

    server.fail = claim_lands_answer_lost
    decide_when_asked(server, "approved")
    with (
        pytest.raises(controlroom.ApprovalError, match="got no answer"),
        controlroom.approval("deploy", {"sha": "abc"}),
    ):
        raise AssertionError("ran without a claim answer")
    a = server.only()
    assert a["status"] == "failed" and a["error"]["type"] == "ClaimUnanswered"


def test_other_errors_of_the_server_never_run_the_action(server: FakeApprovals) -> None:
    server.fail = lambda r: problem(403, "this key may not ask for approvals") if r.method == "POST" else None
    with pytest.raises(controlroom.ApprovalError, match="may not ask"):
        controlroom.approval("deploy", {}).grant()


def test_an_answer_about_other_arguments_is_not_claimed(server: FakeApprovals) -> None:
    def other_hash(request: Request) -> Response | None:
        if request.path == "/v1/approvals":
            server.fail = lambda r: None
            doc = server.handle(request).json()
            return answer(201, {**doc, "arguments_hash": "0" * 64, "status": "approved"})
        return None

    server.fail = other_hash
    with pytest.raises(controlroom.ApprovalError, match="other arguments"):
        controlroom.approval("deploy", {"sha": "abc"}).grant()
    assert server.claims == []


def test_without_init_nothing_runs() -> None:
    controlroom.shutdown()
    with pytest.raises(controlroom.ApprovalError, match="init"), controlroom.approval("deploy", {}):
        raise AssertionError("ran without approval")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"arguments": {"when": object()}}, TypeError, "must be JSON values"),
        ({"arguments": {"x": float("nan")}}, TypeError, "must be JSON values"),
        ({"role": "boss"}, ValueError, "role='boss'"),
        ({"wait": -1}, ValueError, "wait=-1"),
        ({"key": ""}, ValueError, "key=''"),
        ({"action": ""}, ValueError, "non-empty string"),
    ],
)
def test_bad_input_fails_at_once(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    args: dict[str, Any] = {"action": "deploy", "arguments": {}, **kwargs}
    with pytest.raises(error, match=message):
        controlroom.approval(args.pop("action"), args.pop("arguments"), **args)


def test_tool_with_approval_is_a_decorator_only() -> None:
    with pytest.raises(TypeError, match="decorates a function"), controlroom.tool("x", approval=True):
        pass


# -- the timeline --------------------------------------------------------------------------------


def test_the_approval_is_a_span_of_the_run(server: FakeApprovals) -> None:
    @controlroom.tool("refund", approval="admin")
    def refund(order: int) -> str:
        return "done"

    decide_when_asked(server, "approved")
    with controlroom.run("bot") as run:
        refund(1042)
    decide_when_asked(server, "rejected", reason="too much", nth=2)
    with controlroom.run("bot"), pytest.raises(controlroom.ApprovalRejected):
        refund(99)

    spans = spans_of(server)
    approvals = [s for s in spans.values() if s["kind"] == "approval"]
    granted, refused = approvals
    tool = spans[granted["parent_span_id"]]
    assert (tool["kind"], tool["name"], tool["output"]) == ("tool", "refund", "done")
    assert granted["status"] == "ok" and granted["input"] == {"order": 1042}
    assert granted["attributes"] == {
        "controlroom.approval.id": "ap1",
        "controlroom.approval.status": "claimed",
        "controlroom.approval.decided_by": "ada",
    }
    assert server.approvals["ap1"]["span_id"] == granted["span_id"]
    assert server.approvals["ap1"]["run_id"] == run.run_id
    assert server.approvals["ap1"]["min_role"] == "admin"
    assert refused["status"] == "error" and refused["error"]["type"] == "ApprovalRejected"
    assert refused["attributes"]["controlroom.approval.reason"] == "too much"
    assert refused["attributes"]["controlroom.approval.status"] == "rejected"


def test_the_hash_is_the_servers(server: FakeApprovals) -> None:
    decide_when_asked(server, "approved")
    with controlroom.run("bot") as run, controlroom.approval("pay", {"b": [1, 2.5], "a": "é"}) as grant:
        pass
    assert grant.arguments_hash == arguments_hash(
        run_id=run.run_id, action="pay", arguments={"a": "é", "b": [1, 2.5]}
    )


# -- async -----------------------------------------------------------------------------------------


def test_an_async_agent_serves_other_tasks_while_one_waits(server: FakeApprovals) -> None:
    """The person deciding is another task of the agent's event loop; it runs only once the
    approval's long poll is waiting on the server. If waiting blocked the loop, it could never
    decide, and the wait would end undecided (ApprovalPending)."""
    calls: list[int] = []
    served: list[int] = []

    @controlroom.requires_approval("refund")
    async def refund(order: int) -> str:
        calls.append(order)
        return "refunded"

    async def main() -> str:
        loop = asyncio.get_running_loop()
        waiting = asyncio.Event()
        server.on_wait = lambda: loop.call_soon_threadsafe(waiting.set)

        async def other_work() -> None:
            await waiting.wait()  # the agent's task is waiting for a person right now
            for n in range(3):
                served.append(n)
                await asyncio.sleep(0)
            server.decide(server.only()["id"], "approved")

        async with controlroom.run("bot"):
            result, _ = await asyncio.gather(refund(1042), other_work())
        return str(result)

    assert asyncio.run(main()) == "refunded"
    assert served == [0, 1, 2] and calls == [1042]
    assert server.waits_answered_by_decision == [True]
    assert server.only()["status"] == "executed"


def test_async_with_and_await(server: FakeApprovals) -> None:
    async def main() -> None:
        decide_when_asked(server, "approved")
        async with controlroom.approval("deploy", {"sha": "abc"}) as grant:
            assert grant.approval_id == "ap1"
        decide_when_asked(server, "rejected", reason="no", nth=2)
        with pytest.raises(controlroom.ApprovalRejected):
            await controlroom.approval("deploy", {"sha": "def"})
        with pytest.raises(controlroom.ApprovalPending):
            await controlroom.approval("deploy", {"sha": "ghi"}, wait=0)

    asyncio.run(main())
    assert [a["status"] for a in server.approvals.values()] == ["executed", "rejected", "pending"]


def test_a_cancelled_async_claim_is_reported_failed(server: FakeApprovals) -> None:
    """A task cancelled while its claim is out ends at once; the grant it got is marked failed, so
    the action, which did not run, is never run later either."""
    claimed = threading.Event()
    go_on = threading.Event()

    def slow_claim(request: Request) -> Response | None:
        if request.path.endswith("/claim"):
            claimed.set()
            assert go_on.wait(15)
        return None

    server.fail = slow_claim

    async def main() -> None:
        task = asyncio.create_task(controlroom.approval("deploy", {"sha": "abc"}).agrant())
        await asyncio.to_thread(lambda: server.decide(server.wait_for_request()["id"], "approved"))
        await asyncio.to_thread(claimed.wait, 15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go_on.set()

    asyncio.run(main())
    with server.cond:
        assert server.cond.wait_for(lambda: server.only()["status"] == "failed", 15)
    assert server.only()["error"]["type"] == "Cancelled"


def test_a_method_is_approved_without_self_and_an_async_tool_is_awaited(server: FakeApprovals) -> None:
    class Payments:
        def __init__(self) -> None:
            self.sent: list[tuple[str, int]] = []

        @controlroom.requires_approval("wire")
        def wire(self, to: str, usd: int) -> None:
            self.sent.append((to, usd))

    @controlroom.tool("scale_up", approval="admin")
    async def scale_up(replicas: int) -> int:
        return replicas

    payments = Payments()
    decide_when_asked(server, "approved")
    payments.wire("ACME", 500)
    decide_when_asked(server, "approved", nth=2)
    assert asyncio.run(scale_up(3)) == 3
    assert payments.sent == [("ACME", 500)]
    assert [(a["arguments"], a["min_role"], a["status"]) for a in server.approvals.values()] == [
        ({"to": "ACME", "usd": 500}, "approver", "executed"),
        ({"replicas": 3}, "admin", "executed"),
    ]


def test_call_with_fallback_does_not_ask_again(server: FakeApprovals) -> None:
    asked: list[str] = []

    def attempt(model: str) -> None:
        asked.append(model)
        controlroom.approval("deploy", {"model": model}, wait=0).grant()

    with controlroom.run("bot"), pytest.raises(controlroom.ApprovalPending):
        controlroom.call_with_fallback(attempt, ["m1", "m2"], retries=2, backoff=0)
    assert asked == ["m1"] and len(server.approvals) == 1
