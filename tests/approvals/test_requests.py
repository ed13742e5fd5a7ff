"""Approval requests in the store, on SQLite and PostgreSQL: bound to their arguments, decided only
by the right role, first decision wins, a grant is claimed once, expiry never approves, and every
transition is an event in the run log with who, role and when."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from controlroom import events as ev
from controlroom.accounts.projects import Project
from controlroom.accounts.users import Role
from controlroom.approvals import requests as ap
from controlroom.approvals.binding import arguments_hash
from controlroom.approvals.policies import Policy, set_policy
from controlroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from controlroom.store.engine import Store
from controlroom.store.tables import events

RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
REFUND = {"order": "A-1001", "amount_usd": 120}
ALICE = ap.Decider(1, "alice", Role.approver)
VIEWER = ap.Decider(2, "victor", Role.viewer)
ADMIN = ap.Decider(3, "ada", Role.admin)


@pytest.fixture
def people(store: Store) -> None:
    """The deciders' user rows (decisions reference them)."""
    from controlroom.store.tables import users

    with store.write() as conn:
        for d in (ALICE, VIEWER, ADMIN):
            conn.execute(
                users.insert().values(
                    id=d.user_id,
                    login=d.login,
                    name=d.login,
                    password_hash="x",
                    created_at=0,
                    password_changed_at=0,
                )
            )


def ask(
    store: Store, project: Project, arguments: Any = REFUND, key: str = "call_1", **kw: Any
) -> tuple[ap.Approval, bool]:
    return ap.request(
        store,
        project_id=project.id,
        run_id=RUN,
        action="refund",
        arguments=arguments,
        idempotency_key=key,
        agent="support-bot",
        **kw,
    )


def decide(
    store: Store, project: Project, a: ap.Approval, d: ap.Decider, decision: str = "approved", **kw: Any
) -> ap.Approval:
    kw.setdefault("arguments_hash", a.arguments_hash)
    return ap.decide(store, project_id=project.id, approval_id=a.id, decision=decision, decider=d, **kw)


def logged(store: Store) -> list[tuple[str, dict[str, Any]]]:
    with store.read() as conn:
        rows = conn.execute(
            select(events.c.type, events.c.body, events.c.run_id).order_by(events.c.seq)
        ).all()
    assert all(r.run_id == RUN for r in rows)
    return [(r.type, orjson.loads(r.body)) for r in rows]


def test_asking_again_with_the_same_binding_finds_the_same_request(store: Store, project: Project) -> None:
    first, new = ask(store, project)
    again, new_again = ask(store, project, arguments={"amount_usd": 120, "order": "A-1001"})  # key order
    assert new and not new_again and again.id == first.id and first.status == "pending"
    assert first.arguments_hash == arguments_hash(run_id=RUN, action="refund", arguments=REFUND)
    changed, new_changed = ask(store, project, arguments={**REFUND, "amount_usd": 1200})
    assert new_changed and changed.id != first.id  # a changed argument is a new request
    other_key, _ = ask(store, project, key="call_2")
    assert other_key.id not in (first.id, changed.id)
    assert [t for t, _ in logged(store)] == [ev.APPROVAL_REQUESTED] * 3


def test_concurrent_twins_make_one_request(store: Store, project: Project) -> None:
    results: list[ap.Approval] = []

    def go() -> None:
        results.append(ask(store, project)[0])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a.id for a in results}) == 1
    assert [t for t, _ in logged(store)] == [ev.APPROVAL_REQUESTED]


@pytest.mark.usefixtures("people")
def test_an_approver_decides_and_the_decision_records_who_role_when(store: Store, project: Project) -> None:
    a, _ = ask(store, project)
    with pytest.raises(Forbidden, match="needs the approver role; you are viewer"):
        decide(store, project, a, VIEWER, "approved")
    done = decide(store, project, a, ALICE, "approved", now=a.requested_at + 5)
    assert (done.status, done.decided_by, done.decided_role, done.decided_at) == (
        "approved",
        "alice",
        Role.approver,
        a.requested_at + 5,
    )
    (requested_type, _), (etype, decided) = logged(store)
    assert requested_type == ev.APPROVAL_REQUESTED
    assert etype == ev.APPROVAL_DECIDED
    assert decided == {
        "approval_id": a.id,
        "decision": "approved",
        "user_id": 1,
        "user": "alice",
        "role": "approver",
    }
    with pytest.raises(Conflict, match="is approved, not pending"):
        decide(store, project, a, ADMIN, "rejected", reason="late")


@pytest.mark.usefixtures("people")
def test_two_approvers_race_and_exactly_one_decision_lands(store: Store, project: Project) -> None:
    a, _ = ask(store, project)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(d: ap.Decider, decision: str) -> None:
        barrier.wait()
        try:
            ap.decide(
                store,
                project_id=project.id,
                approval_id=a.id,
                decision=decision,
                reason="no",
                arguments_hash=a.arguments_hash,
                decider=d,
            )
            outcomes.append("decided")
        except Conflict:
            outcomes.append("409")

    threads = [
        threading.Thread(target=decide, args=(ALICE, "approved")),
        threading.Thread(target=decide, args=(ADMIN, "rejected")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409", "decided"]
    assert [t for t, _ in logged(store)].count(ev.APPROVAL_DECIDED) == 1


@pytest.mark.usefixtures("people")
def test_policies_raise_the_role_and_forbid_the_run_s_own_user(store: Store, project: Project) -> None:
    with store.write() as conn:
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", Role.admin, four_eyes=True))
    a, _ = ask(store, project, started_by="ADA")
    assert (a.min_role, a.four_eyes) == (Role.admin, True)
    with pytest.raises(Forbidden, match="needs the admin role"):
        decide(store, project, a, ALICE, "approved")
    with pytest.raises(Forbidden, match="four eyes"):
        decide(store, project, a, ADMIN, "approved")
    # an agent may ask for more than the policy, never less
    with store.write() as conn:
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", Role.approver))
    stricter, _ = ask(store, project, key="k2", min_role=Role.admin)
    weaker, _ = ask(store, project, key="k3", min_role=Role.viewer)
    assert (stricter.min_role, weaker.min_role) == (Role.admin, Role.approver)


@pytest.mark.usefixtures("people")
def test_a_rejection_needs_a_reason_and_a_stale_hash_is_refused(store: Store, project: Project) -> None:
    a, _ = ask(store, project)
    with pytest.raises(ValidationFailed, match="a rejection needs a reason"):
        decide(store, project, a, ALICE, "rejected")
    with pytest.raises(Conflict, match="arguments changed since you saw them"):
        decide(store, project, a, ALICE, "approved", arguments_hash="0" * 64)
    done = decide(store, project, a, ALICE, "rejected", reason="  over the limit ")
    assert (done.status, done.reason) == ("rejected", "over the limit")
    with pytest.raises(Conflict, match="is rejected, not approved"):
        ap.claim(store, project_id=project.id, approval_id=a.id, arguments_hash=a.arguments_hash)


@pytest.mark.usefixtures("people")
def test_a_grant_is_claimed_once_and_only_for_the_approved_arguments(store: Store, project: Project) -> None:
    a, _ = ask(store, project)
    with pytest.raises(Conflict, match="is pending, not approved"):
        ap.claim(store, project_id=project.id, approval_id=a.id, arguments_hash=a.arguments_hash)
    decide(store, project, a, ALICE, "approved")
    other = arguments_hash(run_id=RUN, action="refund", arguments={**REFUND, "amount_usd": 9999})
    with pytest.raises(Conflict, match="not the ones approved"):
        ap.claim(store, project_id=project.id, approval_id=a.id, arguments_hash=other)
    assert (
        ap.claim(store, project_id=project.id, approval_id=a.id, arguments_hash=a.arguments_hash).status
        == "claimed"
    )
    with pytest.raises(Conflict, match="is claimed, not approved"):
        ap.claim(store, project_id=project.id, approval_id=a.id, arguments_hash=a.arguments_hash)
    done = ap.complete(
        store,
        project_id=project.id,
        approval_id=a.id,
        outcome="failed",
        error={"type": "HTTPError", "message": "502"},
    )
    assert (done.status, done.error) == ("failed", {"type": "HTTPError", "message": "502"})
    assert [t for t, _ in logged(store)] == [
        ev.APPROVAL_REQUESTED,
        ev.APPROVAL_DECIDED,
        ev.APPROVAL_CLAIMED,
        ev.APPROVAL_FAILED,
    ]


@pytest.mark.usefixtures("people")
def test_expiry_never_approves_and_never_actioned_stays_pending(store: Store, project: Project) -> None:
    lasting, _ = ask(store, project, key="no-expiry")
    with store.write() as conn:
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", expires_after_seconds=60))
    a, _ = ask(store, project)
    assert a.expires_at == a.requested_at + 60 * 10**9
    assert ap.expire_due(store, now=a.requested_at + 59 * 10**9) == 0
    later = a.requested_at + 61 * 10**9
    with pytest.raises(Conflict, match="expired before the decision"):
        decide(store, project, a, ALICE, "approved", now=later)
    with store.read() as conn:
        assert ap.get(conn, project_id=project.id, approval_id=a.id).status == "expired"
        # a year later, the request without expiry is still pending, first in the queue, decidable
        assert [q.id for q in ap.queue(conn, project_id=project.id, status="pending")] == [lasting.id]
    assert ap.expire_due(store, now=later + 365 * 86_400 * 10**9) == 0
    done = decide(store, project, lasting, ALICE, "approved")
    assert done.status == "approved"


def test_another_project_s_request_is_not_found(store: Store, project: Project) -> None:
    from controlroom.accounts.projects import create_project

    a, _ = ask(store, project)
    with store.write() as conn:
        other = create_project(conn, name="other")
    with store.read() as conn, pytest.raises(NotFound):
        ap.get(conn, project_id=other.id, approval_id=a.id)
    with pytest.raises(NotFound):
        ap.claim(store, project_id=other.id, approval_id=a.id, arguments_hash=a.arguments_hash)


def test_a_pending_request_can_be_cancelled_but_not_after_claiming(store: Store, project: Project) -> None:
    a, _ = ask(store, project)
    assert ap.cancel(store, project_id=project.id, approval_id=a.id, reason="run ended").status == "cancelled"
    with pytest.raises(Conflict):
        ap.cancel(store, project_id=project.id, approval_id=a.id)


@pytest.mark.parametrize("arguments", [0, 5, 1.5, "x", None, [1, "a"], {"n": 2}])
def test_arguments_read_back_as_the_agent_sent_them(store: Store, project: Project, arguments: Any) -> None:
    a, _ = ask(store, project, arguments=arguments)
    with store.read() as conn:
        assert ap.get(conn, project_id=project.id, approval_id=a.id).arguments == arguments


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_arguments_that_are_not_json_are_refused(store: Store, project: Project, number: float) -> None:
    with pytest.raises(ValidationFailed, match="NaN and infinite numbers are not JSON"):
        ask(store, project, arguments={"usd": number})
    assert logged(store) == []
