"""The evals on the demo's history: a scheduled job attaches scores to the runs of its window, and
the support bot's bad release is flagged with its evidence while the research agent's harmless one
is not. Evaluators read recorded runs only: the agent is never called."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from controlroom.accounts.projects import Project
from controlroom.demo import backfill, judge_history, set_demo_evals
from controlroom.evals import configs as cf
from controlroom.evals import jobs, monitor, schedule
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store
from controlroom.store.tables import eval_configs, runs, scores

pytestmark = pytest.mark.usefixtures("cheap_hashes")
DAY = 86_400 * 10**9


def test_scheduled_job_over_the_demo_history_and_the_regression_it_surfaces(
    store: Store, project: Project
) -> None:
    backfill(store, project, days=12)
    assert set_demo_evals(store, project) == ["succeeded", "steps"]
    Projector(store).catch_up()

    # the nightly "steps" configuration: at its time, a job over the day before it
    with store.read() as conn:
        steps = cf.get_config(conn, project_id=project.id, name="steps")
    assert steps.next_run_at is not None
    at = steps.next_run_at - DAY  # yesterday's time: a window that holds history
    with store.write() as conn:
        conn.execute(eval_configs.update().where(eval_configs.c.id == steps.id).values(next_run_at=at))
    assert schedule.queue_due(store, now=at) == 1
    job = jobs.take_job(store)
    assert job is not None and job.kind == "scheduled"
    done = jobs.run_job(store, job)
    assert done.state == "done" and done.scored > 50
    with store.read() as conn:
        in_window = set(
            conn.execute(
                select(runs.c.run_id).where(
                    runs.c.project_id == project.id,
                    runs.c.started_at >= at - DAY,
                    runs.c.started_at < at,
                    runs.c.status != "running",
                )
            ).scalars()
        )
        judged = set(
            conn.execute(
                select(scores.c.run_id).where(
                    scores.c.project_id == project.id, scores.c.evaluator == "step_count"
                )
            ).scalars()
        )
    assert judged == in_window  # the right runs: every ended run of the window, and no other

    # the whole history judged (as `controlroom demo` does), then the regression check
    scored, opened = judge_history(store, project)
    assert scored > 1000 and opened == 2
    with store.read() as conn:
        found = monitor.list_regressions(conn, project_id=project.id)
        settings = monitor.get_settings(conn, project_id=project.id)
        pairs = monitor.series(conn, project_id=project.id, settings=settings, now=_now())
    flagged = {(r.agent, r.evaluator, r.name): r for r in found}
    assert set(flagged) == {
        ("support-bot", "run_succeeded", "run_succeeded"),
        ("support-bot", "demo-judge", "helpfulness"),
    }
    evidence = flagged[("support-bot", "run_succeeded", "run_succeeded")].evidence
    assert evidence.startswith("pass rate ") and "95% CI of the change" in evidence and "p = " in evidence
    assert len(flagged[("support-bot", "run_succeeded", "run_succeeded")].details["worst_run_ids"]) == 5
    # the research agent's new version was tested too, and is not flagged
    tested = {(p.key.agent, p.key.evaluator) for p in pairs}
    assert ("research-agent", "run_succeeded") in tested and ("research-agent", "demo-judge") in tested
    assert not any(r.agent == "research-agent" for r in found)

    # checked again: still open, refreshed; nothing new
    again = monitor.check(store, project_id=project.id)
    assert (again.opened, again.refreshed, again.resolved) == (0, 2, 0)


def _now() -> int:
    import time

    return time.time_ns()


def test_a_regression_resolves_after_two_clean_windows(store: Store, project: Project) -> None:
    from controlroom.store.ingest import ingest_events
    from factories import rid, run_ended, run_started

    now = _now()
    hour = 3_600 * 10**9

    def runs_at(start: int, n: int, fail_every: int) -> None:
        events: list[dict[str, Any]] = []
        for i in range(n):
            r = rid()
            ts = start + i * 60 * 10**9
            status = "failed" if fail_every and i % fail_every == 0 else "succeeded"
            events += [run_started(r, agent="bot", ts=ts), run_ended(r, status, ts=ts + 10**9)]
        ingest_events(store, project.id, {"events": events}, max_events=10_000)

    runs_at(now - 5 * DAY, 300, 50)  # baseline: 98% succeed
    runs_at(now - 20 * hour, 200, 3)  # the last day: 66% succeed
    with store.write() as conn:
        cf.create_config(store, conn, project_id=project.id, name="ok", evaluator="run_succeeded")
    Projector(store).catch_up()
    with store.read() as conn:
        c = cf.get_config(conn, project_id=project.id, name="ok")
    with store.write() as conn:
        job_id = jobs.start_job(conn, c, kind="backfill", since=None, until=now)
    job = jobs.take_job(store, job_id=job_id)
    assert job is not None and jobs.run_job(store, job).scored == 500
    assert monitor.check(store, project_id=project.id, now=now).opened == 1
    # a day and more later the bad day is in the baseline and the recent window is empty: clean
    later = now + 2 * DAY
    assert monitor.check(store, project_id=project.id, now=later).resolved == 0  # one clean window
    assert monitor.check(store, project_id=project.id, now=later + DAY // 2).resolved == 0  # same window
    assert monitor.check(store, project_id=project.id, now=later + DAY).resolved == 1  # the second
    with store.read() as conn:
        [reg] = monitor.list_regressions(conn, project_id=project.id, state="resolved")
    assert reg.clean_windows == 2 and reg.resolved_at == later + DAY
