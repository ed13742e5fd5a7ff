"""The demo fleet's history has what it promises: three agents, failures at a span, retries,
fallbacks, and a cost-spike day."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from controlroom.accounts.projects import Project
from controlroom.approvals import policies
from controlroom.approvals import requests as ap
from controlroom.demo import DemoApprover, LiveFleet, backfill, ensure_demo_people
from controlroom.projections.projector import Projector
from controlroom.projections.queries import RunFilter, daily_costs, get_run, list_runs
from controlroom.server.routers.runs import costs_json, page_json, run_json
from controlroom.store.engine import Store
from tests_support import wait_for


@pytest.mark.usefixtures("cheap_hashes")
def test_demo_history(store: Store, project: Project) -> None:
    assert backfill(store, project, days=7) > 1000
    Projector(store).catch_up()
    with store.read() as conn:
        page = page_json(list_runs(conn, project.id, RunFilter(), limit=200))["runs"]
        failed = page_json(list_runs(conn, project.id, RunFilter(status=("failed",)), limit=5))["runs"]
        costs = costs_json(
            daily_costs(conn, project.id, "UTC", since="2000-01-01", until="2100-01-01", group_by=("agent",))
        )
        detail = run_json(get_run(conn, project.id, failed[0]["run_id"]))
    assert {r["agent"] for r in page} == {"support-bot", "research-agent", "coding-agent"}
    assert failed and all(r["failing_span_id"] for r in failed)
    assert detail["error"]["type"] in ("OrderServiceError", "CalledProcessError")
    assert sum(r["counts"]["retry"] for r in page) > 0 and sum(r["counts"]["fallback"] for r in page) > 0
    assert costs["total"]["unpriced_calls"] == 0
    research = defaultdict(float)
    for row in costs["days"]:
        if row["agent"] == "research-agent":
            research[row["day"]] += float(row["cost_usd"])
    days = sorted(research.values())
    assert days[-1] > 2 * days[len(days) // 2]  # the spike day stands out

    # approvals: refunds decided by the approver, erasures by an admin; some rejected with a
    # reason, some expired unanswered, the last hours' still waiting — each on a run of the history
    with store.read() as conn:
        asked = ap.queue(conn, project_id=project.id, limit=10_000)
        runs = {a.run_id: get_run(conn, project.id, a.run_id) for a in asked}
    by_status = Counter(a.status for a in asked)
    assert set(by_status) == {"executed", "rejected", "expired", "pending"}, by_status
    assert by_status["executed"] > by_status["rejected"] > 0
    for a in asked:
        assert a.span_id in {s.span_id for s in _walk(runs[a.run_id].spans)}
        if a.status in ("executed", "rejected"):
            assert a.decided_by == ("admin" if a.action == "erase_customer_data" else "approver")
        if a.status == "rejected":
            assert a.reason
    pending = [a for a in asked if a.status == "pending"]
    assert pending and all(a.requested_at > time.time_ns() - 7 * 3_600 * 10**9 for a in pending)
    with store.read() as conn:
        assert policies.get_policy(conn, project_id=project.id, action="erase_customer_data").four_eyes


def _walk(spans: list[Any]) -> Iterator[Any]:
    for s in spans:
        yield s
        yield from _walk(s.children)


def test_the_demo_has_a_person_per_role(store: Store, project: Project) -> None:
    from argon2 import PasswordHasher

    from controlroom.accounts import passwords, sessions
    from controlroom.accounts import users as u
    from controlroom.demo import DEMO_PASSWORD, ensure_demo_people

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        assert ensure_demo_people(store, project) == [
            "admin (admin)",
            "approver (approver)",
            "viewer (viewer)",
        ]
        ensure_demo_people(store, project)  # a second start keeps them
        with store.read() as conn:
            assert [(m.user.login, m.role) for m in u.members(conn, project=project)] == [
                ("admin", u.Role.admin),
                ("approver", u.Role.approver),
                ("viewer", u.Role.viewer),
            ]
        s = sessions.login(store, login="approver", password=DEMO_PASSWORD, address=None, max_seconds=60)
        assert s.session.roles == {project.id: u.Role.approver}
    finally:
        passwords.use_hasher(None)


@pytest.mark.usefixtures("cheap_hashes")
def test_live_refunds_wait_for_a_person_and_the_demo_approver_takes_the_small_ones(traced: Any) -> None:
    import controlroom

    live = traced
    with live.store.read() as conn:
        from controlroom.accounts.projects import get_project

        project = get_project(conn, name="acme")
    assert project is not None
    ensure_demo_people(live.store, project)
    approver = DemoApprover(live.store, project)
    fleet = LiveFleet(live.url, live.key, approver=approver)
    big = small = None
    for order in range(1000, 2000):  # one refund the approver takes, one it leaves to a person
        usd = random.Random(order).uniform(5, 300)
        if usd <= 150 and small is None:
            small = order
        if usd > 250 and big is None:
            big = order
    assert small is not None and big is not None
    for _ in (small, big):
        assert fleet._waiting.acquire(blocking=False)
    agents = [threading.Thread(target=fleet._refund_run, args=(controlroom, o)) for o in (small, big)]
    for t in agents:
        t.start()
    rng, minutes = random.Random(1), itertools.count()
    # on the demo approver's clock, a minute passes between looks: it decides once the small one is due
    wait_for(lambda: approver.decide_due(rng, time.monotonic() + 60 * next(minutes)) == 1)
    agents[0].join(30)
    assert not agents[0].is_alive()
    with live.store.read() as conn:
        asked = {a.arguments["order_id"]: a for a in ap.queue(conn, project_id=project.id, limit=10)}
    assert asked[small].status in ("executed", "rejected") and asked[small].decided_by == "approver"
    assert asked[big].status == "pending"  # over the demo approver's limit: a person decides
    # the big one's agent is still waiting; a real person decides, and it runs
    with live.store.read() as conn:
        from controlroom.accounts import users as u

        admin = u.user(conn, "admin")
    ap.decide(
        live.store,
        project_id=project.id,
        approval_id=asked[big].id,
        decision="approved",
        arguments_hash=asked[big].arguments_hash,
        decider=ap.Decider(admin.id, "admin", u.Role.admin),
    )
    agents[1].join(30)
    assert not agents[1].is_alive()
    with live.store.read() as conn:
        assert ap.get(conn, project_id=project.id, approval_id=asked[big].id).status == "executed"
