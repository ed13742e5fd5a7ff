"""The demo fleet's history has what it promises: three agents, failures at a span, retries,
fallbacks, and a cost-spike day."""

from __future__ import annotations

from collections import defaultdict

from controlroom.accounts.projects import Project
from controlroom.demo import backfill
from controlroom.projections.projector import Projector
from controlroom.projections.queries import RunFilter, daily_costs, get_run, list_runs
from controlroom.server.routers.runs import costs_json, page_json, run_json
from controlroom.store.engine import Store


def test_demo_history(store: Store, project: Project) -> None:
    assert backfill(store, project.id, days=7) > 1000
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
