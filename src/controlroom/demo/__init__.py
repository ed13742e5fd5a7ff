"""`controlroom demo`: a living system for a first look. A simulated fleet of three agents (a support
bot, a research agent, a coding agent) on a simulated model provider: 30 days of history written
straight into the run log, then live runs sent through the real SDK while the server runs.

The history has what production has: successes, provider timeouts and their retries, fallbacks to
another model, tool errors, abandoned runs, cost that varies by day — and one cost-spike day, when the
research agent looped. A new demo project also gets daily cost caps (DEMO_CAPS): a generous one for
the project, and a small one for the coding agent, whose live runs are refused once it is spent.

The package: ``history`` writes the past (events and approval requests), ``fleet`` runs the agents
now; this module sets a demo project up (caps, people, approval policies, evals) and backfills it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from controlroom.accounts.projects import Project
from controlroom.demo.fleet import DemoApprover, LiveFleet
from controlroom.demo.history import MS, DemoApproval, history
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import budgets

__all__ = [
    "DEMO_PASSWORD",
    "DemoApprover",
    "LiveFleet",
    "backfill",
    "ensure_demo_people",
    "history",
    "judge_history",
    "set_demo_caps",
    "set_demo_evals",
    "set_demo_policies",
]


# (agent or None for the whole project, USD per day)
DEMO_CAPS: tuple[tuple[str | None, str], ...] = ((None, "500"), ("coding-agent", "0.25"))


def set_demo_caps(store: Store, project: Project) -> list[str]:
    """The demo's daily cost caps, for a project that has none yet; what was set, for the console."""
    from controlroom.budget import ledger

    with store.write() as conn:
        if conn.execute(select(budgets.c.id).where(budgets.c.project_id == project.id).limit(1)).first():
            return []
        for agent, cap in DEMO_CAPS:
            ledger.set_budget(store, conn, project=project, agent=agent, cap_usd=cap, timezone="UTC")
    return [f"${cap} for {agent or 'the project'}" for agent, cap in DEMO_CAPS]


DEMO_PASSWORD = "controlroom-demo"
DEMO_PEOPLE = (("admin", "admin"), ("approver", "approver"), ("viewer", "viewer"))


def ensure_demo_people(store: Store, project: Project) -> list[str]:
    """The demo's people, one per role, created the first time: "login (role)" for the console."""
    from controlroom.accounts import users as u

    with store.write() as conn:
        for login, role in DEMO_PEOPLE:
            if u.get_user(conn, login=login) is None:
                user = u.create_user(conn, login=login, password=DEMO_PASSWORD, name=f"Demo {role}")
                u.set_role(conn, user=user, project=project, role=u.Role[role])
    return [f"{login} ({role})" for login, role in DEMO_PEOPLE]


# The demo's evals: every run judged on whether it succeeded (post-run, and over the history at
# once), a nightly check of step counts; regressions compared by agent version.
DEMO_EVALS: tuple[dict[str, Any], ...] = (
    {"name": "succeeded", "evaluator": "run_succeeded", "trigger": "post_run", "grace_seconds": 5.0},
    {
        "name": "steps",
        "evaluator": "step_count",
        "params": {"max": 40},
        "trigger": "schedule",
        "schedule": "0 3 * * *",
        "window_seconds": 86_400.0,
    },
)


def set_demo_evals(store: Store, project: Project) -> list[str]:
    """The demo's eval configurations and regression settings, for a project that has none."""
    from controlroom.evals import configs as cf
    from controlroom.evals import monitor

    with store.write() as conn:
        if cf.list_configs(conn, project_id=project.id):
            return []
        for c in DEMO_EVALS:
            cf.create_config(store, conn, project_id=project.id, **c)
        monitor.set_settings(
            store, conn, project_id=project.id, settings=monitor.Settings(compare="agent_version")
        )
    return [str(c["name"]) for c in DEMO_EVALS]


def judge_history(store: Store, project: Project) -> tuple[int, int]:
    """Fold the history into the read model, judge it with the demo's evals (a backfill of each
    configuration over the 30 days) and look for regressions: the scores and the support bot's
    regression are there when the server starts. Returns (runs scored, regressions opened)."""
    from controlroom.evals import configs as cf
    from controlroom.evals import jobs, monitor
    from controlroom.projections.projector import Projector

    Projector(store).catch_up()
    scored = 0
    with store.read() as conn:
        configs = cf.list_configs(conn, project_id=project.id)
    for c in configs:
        with store.write() as conn:
            job_id = jobs.start_job(conn, c, kind="backfill", since=None, until=time.time_ns())
        job = jobs.take_job(store, job_id=job_id)
        if job is not None:
            scored += jobs.run_job(store, job).scored
    return scored, monitor.check(store, project_id=project.id).opened


# Approval policies of a new demo project: refunds need an approver and expire after 8 hours
# unanswered; erasing a customer's data needs an admin, and not the one who started the run.
DEMO_POLICIES = (("refund", "approver", False, 8 * 3_600.0), ("erase_customer_data", "admin", True, None))


def set_demo_policies(store: Store, project: Project) -> list[str]:
    from controlroom.accounts.users import Role
    from controlroom.approvals import policies

    with store.write() as conn:
        if policies.list_policies(conn, project_id=project.id):
            return []
        for action, role, four_eyes, expiry in DEMO_POLICIES:
            policy = policies.Policy(action, Role[role], four_eyes, expiry)
            policies.set_policy(store, conn, project_id=project.id, policy=policy)
    return [
        f"{action} needs {role}{' (four eyes)' if four_eyes else ''}"
        for action, role, four_eyes, _ in DEMO_POLICIES
    ]


def backfill(store: Store, project: Project, *, days: int = 30) -> int:
    """Write the history into the run log, with its approval requests and what people made of
    them (the demo's approver and admin deciding, as they would have); returns the number of events
    written. The project's approval policies and people are set first (see :data:`DEMO_POLICIES`,
    :func:`ensure_demo_people`)."""
    set_demo_policies(store, project)
    ensure_demo_people(store, project)
    total = 0
    for batch, asked in history(days=days):
        for i in range(0, len(batch), 5000):
            result = ingest_events(store, project.id, {"events": batch[i : i + 5000]}, max_events=5000)
            total += result.accepted
        for a in sorted(asked, key=lambda a: a.requested_at):
            _replay_approval(store, project.id, a)
    return total


def _replay_approval(store: Store, project_id: int, a: DemoApproval) -> None:
    from controlroom.accounts import users as u
    from controlroom.approvals import requests as ap

    request, _ = ap.request(
        store,
        project_id=project_id,
        run_id=a.run_id,
        action=a.action,
        arguments=a.arguments,
        idempotency_key=f"{a.action}#1",
        agent=a.agent,
        span_id=a.span_id,
        now=a.requested_at,
    )
    if a.decision == "expired":
        # the requests due by then: this one (those asked earlier were replayed before it, the
        # ones still waiting were asked in the last hours and are not due)
        ap.expire_due(store, now=a.decided_at)
    elif a.decision is not None:
        with store.read() as conn:
            person = u.user(conn, a.by)
            role = u.role_in(conn, user_id=person.id, project_id=project_id)
        assert role is not None, f"the demo's {a.by} has no role in the project"
        decider = ap.Decider(person.id, person.login, role)
        ap.decide(
            store,
            project_id=project_id,
            approval_id=request.id,
            decision=a.decision,
            arguments_hash=request.arguments_hash,
            decider=decider,
            reason=a.reason,
            now=a.decided_at,
        )
        if a.decision == "approved":
            claimed_at = a.decided_at + 50 * MS
            ap.claim(
                store,
                project_id=project_id,
                approval_id=request.id,
                arguments_hash=request.arguments_hash,
                now=claimed_at,
            )
            ap.complete(
                store,
                project_id=project_id,
                approval_id=request.id,
                outcome="executed",
                now=claimed_at + 500 * MS,
            )
