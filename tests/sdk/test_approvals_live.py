"""The approval gate end to end: the SDK against a real server (SQLite and PostgreSQL), a person
deciding through the approvals domain, and agent processes killed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

import controlroom
from conftest import LiveServer
from controlroom.accounts.projects import get_project
from controlroom.accounts.users import Role, create_user, set_role
from controlroom.approvals import requests as ap
from controlroom.store.tables import approvals, events
from tests_support import wait_for

PASSWORD = "a long enough password"


@pytest.fixture
def agent(traced: LiveServer, cheap_hashes: None) -> Iterator[LiveServer]:
    """The SDK initialised against the live server, and an approver (ada) in its project, who
    decides through the API with a session (cheap password hashes: the tests are not about them)."""
    with traced.store.write() as conn:
        ada = create_user(conn, login="ada", password=PASSWORD)
        set_role(conn, user=ada, project=project_named(conn, "acme"), role=Role.approver)
    yield traced


def project_named(conn: Any, name: str) -> Any:
    p = get_project(conn, name=name)
    assert p is not None
    return p


def project_id(live: LiveServer) -> int:
    with live.store.read() as conn:
        return int(project_named(conn, "acme").id)


def requests_of(live: LiveServer) -> list[ap.Approval]:
    with live.store.read() as conn:
        return ap.queue(conn, project_id=project_id(live), limit=1000)


def nth_request(live: LiveServer, n: int = 1) -> ap.Approval:
    def found() -> ap.Approval | None:
        asked = sorted(requests_of(live), key=lambda a: a.requested_at)
        return asked[n - 1] if len(asked) >= n else None

    return wait_for(found)


def decide(live: LiveServer, a: ap.Approval, decision: str, reason: str | None = None) -> None:
    """Ada logs in and decides, as the dashboard would (her session, the CSRF header)."""
    with httpx.Client(base_url=live.url, timeout=30, headers={"X-Controlroom-CSRF": "1"}) as ada:
        r = ada.post("/v1/session", json={"login": "ada", "password": PASSWORD})
        assert r.status_code == 200, r.text
        body = {"decision": decision, "arguments_hash": a.arguments_hash, "reason": reason}
        r = ada.post(f"/v1/approvals/{a.id}/decision", json=body)
        assert r.status_code == 200, r.text


def decide_when_asked(live: LiveServer, decision: str, reason: str | None = None, n: int = 1) -> None:
    threading.Thread(target=lambda: decide(live, nth_request(live, n), decision, reason), daemon=True).start()


def test_approved_runs_once_with_exactly_the_arguments(agent: LiveServer) -> None:
    calls: list[tuple[int, str]] = []

    @controlroom.tool("refund", approval=True)
    def refund(order: int, usd: str) -> str:
        calls.append((order, usd))
        return "refunded"

    decide_when_asked(agent, "approved")
    with controlroom.run("support-bot") as run:
        assert refund(1042, "30.00") == "refunded"
    assert calls == [(1042, "30.00")]
    (a,) = requests_of(agent)
    assert (a.run_id, a.action, a.arguments, a.status, a.decided_by) == (
        run.run_id,
        "refund",
        {"order": 1042, "usd": "30.00"},
        "executed",
        "ada",
    )


def test_rejected_does_not_run_and_says_why(agent: LiveServer) -> None:
    calls: list[int] = []

    @controlroom.requires_approval
    def delete_account(user: int) -> None:
        calls.append(user)

    decide_when_asked(agent, "rejected", reason="not without a ticket")
    with controlroom.run("ops-bot"), pytest.raises(controlroom.ApprovalRejected) as caught:
        delete_account(7)
    assert calls == []
    assert (caught.value.reason, caught.value.decided_by, caught.value.status) == (
        "not without a ticket",
        "ada",
        "rejected",
    )


def test_never_actioned_stays_pending_and_can_still_be_decided(agent: LiveServer) -> None:
    calls: list[str] = []

    @controlroom.requires_approval("email_customer", wait=0.3)
    def email(to: str) -> None:
        calls.append(to)

    with controlroom.run("bot", run_id="a" * 32):
        with pytest.raises(controlroom.ApprovalPending) as caught:
            email("c@example.com")
        (a,) = requests_of(agent)
        assert (a.id, a.status, calls) == (caught.value.approval_id, "pending", [])
        decide(agent, a, "approved")
        email("c@example.com")  # asked again: the same request, now approved
    assert calls == ["c@example.com"]
    assert [(r.id, r.status) for r in requests_of(agent)] == [(a.id, "executed")]


def test_a_changed_argument_is_a_new_request_and_not_run_under_the_old_approval(agent: LiveServer) -> None:
    calls: list[int] = []

    @controlroom.requires_approval("refund", wait=0)
    def refund(usd: int) -> None:
        calls.append(usd)

    with controlroom.run("bot"):
        with pytest.raises(controlroom.ApprovalPending):
            refund(30)
        decide(agent, nth_request(agent), "approved")
        with pytest.raises(controlroom.ApprovalPending):
            refund(3000)
    assert calls == []
    assert sorted((a.arguments["usd"], a.status) for a in requests_of(agent)) == [
        (30, "approved"),
        (3000, "pending"),
    ]


def test_an_async_agent_serves_other_tasks_while_one_waits(agent: LiveServer) -> None:
    """Another task of the agent's loop decides, once the request exists: it could not run if the
    wait blocked the loop (the wait would end pending)."""
    calls: list[int] = []
    served: list[int] = []

    @controlroom.requires_approval("refund", wait=30)
    async def refund(order: int) -> None:
        calls.append(order)

    async def person() -> None:
        a = await asyncio.to_thread(nth_request, agent)
        served.append(1)
        await asyncio.to_thread(decide, agent, a, "approved")

    async def main() -> None:
        async with controlroom.run("bot"):
            await asyncio.gather(refund(1042), person())

    asyncio.run(main())
    assert calls == [1042] and served == [1]
    assert [a.status for a in requests_of(agent)] == ["executed"]


AGENT = textwrap.dedent("""
    import sys, controlroom
    url, key, spool, run_id, effects = sys.argv[1:6]
    controlroom.init(url=url, api_key=key, spool_dir=spool, flush_interval=0.05, shutdown_timeout=5)

    @controlroom.requires_approval("wire_transfer", wait=60)
    def wire(to, usd):
        with open(effects, "a") as f:
            f.write(f"{to} {usd}\\n")

    with controlroom.run("payments-bot", run_id=run_id):
        try:
            wire("ACME", 500)
            print("ran")
        except controlroom.ApprovalError as e:
            print(type(e).__name__, e.status)
""")


def test_an_agent_killed_while_waiting_finds_its_request_again_and_runs_once(
    agent: LiveServer, tmp_path: Path
) -> None:
    run_id = "b" * 32
    effects = tmp_path / "effects.txt"
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    AGENT,
                    agent.url,
                    agent.key,
                    str(tmp_path / "spool"),
                    run_id,
                    str(effects),
                ],
                env={**os.environ, "CONTROLROOM_STRICT": "0"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return started[-1]

    def approval_spans() -> set[str]:
        with agent.store.read() as conn:
            rows = conn.execute(
                select(events.c.body).where(events.c.run_id == run_id, events.c.type == "span.started")
            ).all()
        bodies = [orjson.loads(bytes(r.body)) for r in rows]
        return {b["span_id"] for b in bodies if b.get("kind") == "approval"}

    try:
        first = start()
        a = nth_request(agent)  # asked, and waiting
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=15)
        assert not effects.exists()

        second = start()  # the same run again
        wait_for(
            lambda: approval_spans() - {a.span_id}
        )  # the restarted agent is asking (its span comes first)
        decide(agent, a, "approved")
        out, err = second.communicate(timeout=60)
        assert out.strip() == "ran", err
        assert effects.read_text() == "ACME 500\n"

        third = start()  # and once more: the grant was used, it does not run twice
        out, err = third.communicate(timeout=60)
        assert out.strip() == "ApprovalError executed", err
        assert effects.read_text() == "ACME 500\n"
        with agent.store.read() as conn:
            assert conn.execute(select(approvals.c.id, approvals.c.status)).all() == [(a.id, "executed")]
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=15)
