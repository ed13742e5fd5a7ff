"""Waiting for a decision: many waiters share one poller (no thread each), a decision made by
another process is seen by the poll, one made in this process wakes its waiters at once, and a
wait nobody ends returns the request still pending."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from controlroom.accounts.projects import Project
from controlroom.accounts.users import Role
from controlroom.approvals import requests as ap
from controlroom.approvals.waiting import Waiters
from controlroom.store.engine import Store
from controlroom.store.tables import users

RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
BOB = ap.Decider(9, "bob", Role.approver)


@pytest.fixture
def bob(store: Store) -> None:
    with store.write() as conn:
        conn.execute(
            users.insert().values(
                id=9, login="bob", name="Bob", password_hash="x", created_at=0, password_changed_at=0
            )
        )


def ask(store: Store, project: Project, key: str) -> ap.Approval:
    return ap.request(
        store,
        project_id=project.id,
        run_id=RUN,
        action="deploy",
        arguments={"to": "prod"},
        idempotency_key=key,
    )[0]


@pytest.mark.usefixtures("bob")
def test_many_waiters_share_one_poller_and_see_decisions_made_elsewhere(
    store: Store, project: Project
) -> None:
    requests = [ask(store, project, f"step-{i}") for i in range(100)]

    async def scenario() -> list[ap.Approval]:
        waiters = Waiters(store)
        threads_before = threading.active_count()
        tasks = [
            asyncio.create_task(waiters.wait(project_id=project.id, approval_id=a.id, timeout=60))
            for a in requests
        ]
        while waiters.count < len(requests):
            await asyncio.sleep(0.01)
        # at most asyncio's default thread pool (for the database reads), not a thread per waiter
        assert threading.active_count() - threads_before <= min(32, (os.cpu_count() or 1) + 4)

        def decide_all() -> None:  # as another server process would: nothing tells this one
            for a in requests:
                ap.decide(
                    store,
                    project_id=project.id,
                    approval_id=a.id,
                    decision="approved",
                    arguments_hash=a.arguments_hash,
                    decider=BOB,
                )

        await asyncio.to_thread(decide_all)
        done = await asyncio.gather(*tasks)
        assert waiters.count == 0
        await waiters.close()
        return done

    done = asyncio.run(scenario())
    assert {a.status for a in done} == {"approved"}


@pytest.mark.usefixtures("bob")
def test_a_decision_in_this_process_wakes_at_once(store: Store, project: Project) -> None:
    a = ask(store, project, "one")

    async def scenario() -> ap.Approval:
        waiters = Waiters(store, poll_seconds=3600)  # the poll would never see it in time
        task = asyncio.create_task(waiters.wait(project_id=project.id, approval_id=a.id, timeout=60))
        while waiters.count == 0:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(
            ap.decide,
            store,
            project_id=project.id,
            approval_id=a.id,
            decision="rejected",
            reason="no",
            arguments_hash=a.arguments_hash,
            decider=BOB,
        )
        waiters.notify(a.id)
        result = await task
        await waiters.close()
        return result

    assert asyncio.run(scenario()).status == "rejected"


def test_a_wait_nobody_ends_returns_the_request_still_pending(store: Store, project: Project) -> None:
    a = ask(store, project, "lonely")

    async def scenario() -> ap.Approval:
        waiters = Waiters(store)
        result = await waiters.wait(project_id=project.id, approval_id=a.id, timeout=0.2)
        assert waiters.count == 0
        await waiters.close()
        return result

    assert asyncio.run(scenario()).status == "pending"
    with store.read() as conn:
        assert ap.get(conn, project_id=project.id, approval_id=a.id).status == "pending"
