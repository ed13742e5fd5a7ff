"""Eval jobs on both databases: post-run evals fire once per ended run (not on a duplicate, not on a
rebuild, not twice with two workers), batch jobs judge the runs of their window and resume after a
restart, and an evaluator that raises is an eval error while the next evaluator still runs."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, update

import controlroom
from controlroom.accounts.projects import Project
from controlroom.evals import configs as cf
from controlroom.evals import jobs, judging, postrun
from controlroom.projections.projector import Projector
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import eval_items, eval_jobs, scores
from controlroom.workers.runtime import PostRunEvals
from factories import BASE_TS, rid, run_ended, run_started

SEC = 10**9


def send(store: Store, project: Project, events: list[dict[str, Any]]) -> None:
    result = ingest_events(store, project.id, {"events": events}, max_events=10_000)
    assert result.accepted == len(events), result


def finished_runs(
    store: Store, project: Project, n: int, *, agent: str = "bot", failed_every: int = 0, t0: int = BASE_TS
) -> list[str]:
    ids, events = [], []
    for i in range(n):
        r = rid()
        ids.append(r)
        failed = failed_every and i % failed_every == 0
        events += [
            run_started(r, agent=agent, ts=t0 + i * SEC),
            run_ended(
                r, "failed" if failed else "succeeded", ts=t0 + i * SEC + SEC // 2, output={"answer": i}
            ),
        ]
    send(store, project, events)
    return ids


def evaluator_scores(store: Store, project: Project, evaluator: str) -> list[Any]:
    with store.read() as conn:
        return list(
            conn.execute(
                select(scores).where(scores.c.project_id == project.id, scores.c.evaluator == evaluator)
            )
        )


def score_events(store: Store) -> list[log.LoggedEvent]:
    with store.read() as conn:
        return log.read_after(conn, 0, 100_000, types=["score.recorded"])


def config(
    store: Store, project: Project, name: str, evaluator: str = "run_succeeded", **kw: Any
) -> cf.EvalConfig:
    with store.write() as conn:
        return cf.create_config(store, conn, project_id=project.id, name=name, evaluator=evaluator, **kw)


def test_post_run_evals_fire_once_per_ended_run(store: Store, project: Project) -> None:
    config(store, project, "succeeded", trigger="post_run", grace_seconds=0)
    ids = finished_runs(store, project, 30, failed_every=3)
    projector, consumer = Projector(store), PostRunEvals(store)
    projector.catch_up()
    assert consumer.run_once() == 30
    assert postrun.judge_due(store) == 30
    got = {s.run_id: s.value for s in evaluator_scores(store, project, "run_succeeded")}
    assert got == {r: (0.0 if i % 3 == 0 else 1.0) for i, r in enumerate(ids)}
    assert len(score_events(store)) == 30  # in the run log too, folded into the read model as well

    # a duplicate run.ended (the same event again) is not in the log twice; another run.ended for a
    # judged run is queued, and not judged again (its evaluator version judged it)
    send(store, project, [run_ended(ids[1], "succeeded", ts=BASE_TS + 100 * SEC)])
    assert consumer.run_once() == 1 and postrun.judge_due(store) == 1
    # a rebuild of the read model replays the projector only: no eval runs again
    projector.rebuild()
    assert consumer.run_once() == 0 and postrun.judge_due(store) == 0
    assert len(evaluator_scores(store, project, "run_succeeded")) == 30
    assert len(score_events(store)) == 30
    with store.read() as conn:
        job = jobs.list_jobs(conn, project_id=project.id)[0]
    assert (job.kind, job.state, job.processed, job.scored, job.errors) == ("post_run", "running", 30, 30, 0)


def test_score_event_ids_are_deterministic_so_a_replayed_score_is_a_no_op(
    store: Store, project: Project
) -> None:
    [run] = finished_runs(store, project, 1)
    Projector(store).catch_up()
    c = config(store, project, "once")
    first = judging.judge_chunk(store, project_id=project.id, e=c.resolve(), job_id=0, run_ids=[run])
    assert first.scored == 1
    [logged] = score_events(store)
    assert logged.event_id == judging.score_event_id("run_succeeded", "1", run, "run_succeeded")
    body = orjson.loads(logged.body)
    assert body["source"] == "evaluator" and body["kind"] == "boolean" and body["normalised"] == 1.0
    # the claim was made: the same evaluator version never judges the run again
    assert (
        judging.judge_chunk(store, project_id=project.id, e=c.resolve(), job_id=0, run_ids=[run]).processed
        == 0
    )
    with store.write() as conn:  # even if its item were lost, the score's id makes a replay a no-op
        conn.execute(eval_items.delete())
    assert (
        judging.judge_chunk(store, project_id=project.id, e=c.resolve(), job_id=0, run_ids=[run]).scored == 1
    )
    assert len(score_events(store)) == 1 and len(evaluator_scores(store, project, "run_succeeded")) == 1


CALLS: list[str] = []
CALLS_LOCK = threading.Lock()


@controlroom.evaluator(name="counting")
def counting(run: Any) -> bool:
    with CALLS_LOCK:
        CALLS.append(run.id)
    return True


def test_two_workers_never_judge_a_run_twice(store: Store, project: Project) -> None:
    CALLS.clear()
    config(store, project, "counted", evaluator=f"{__name__}:counting", trigger="post_run", grace_seconds=0)
    ids = finished_runs(store, project, 400)
    Projector(store).catch_up()
    assert PostRunEvals(store).run_once() == 400
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        while postrun.judge_due(store):
            pass

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(CALLS) == sorted(ids)  # each run judged once, by one of the two
    assert len(evaluator_scores(store, project, "counting")) == 400


@controlroom.evaluator(name="explodes")
def explodes(run: Any) -> bool:
    raise RuntimeError(f"cannot judge {run.id}")


def test_an_evaluator_that_raises_is_an_eval_error_and_the_next_one_still_runs(
    store: Store, project: Project
) -> None:
    config(store, project, "a-bad-one", evaluator=f"{__name__}:explodes", trigger="post_run", grace_seconds=0)
    config(store, project, "a-good-one", trigger="post_run", grace_seconds=0)
    ids = finished_runs(store, project, 5)
    Projector(store).catch_up()
    PostRunEvals(store).run_once()
    postrun.judge_due(store)
    assert len(evaluator_scores(store, project, "run_succeeded")) == 5
    with store.read() as conn:
        by_config = {j.config: j for j in jobs.list_jobs(conn, project_id=project.id)}
        errors = jobs.item_errors(conn, job_id=by_config["a-bad-one"].id)
    assert (by_config["a-bad-one"].errors, by_config["a-bad-one"].scored) == (5, 0)
    assert by_config["a-good-one"].scored == 5
    assert sorted(r for r, _, _ in errors) == sorted(ids)
    assert {(t, m) for _, t, m in errors} == {("RuntimeError", f"cannot judge {r}") for r in ids}
    with store.read() as conn:  # the judged runs did not fail for it
        assert conn.execute(select(func.count()).select_from(scores)).scalar_one() == 5


def test_a_backfill_judges_its_window_and_resumes_after_a_restart(store: Store, project: Project) -> None:
    early = finished_runs(store, project, 5, agent="bot", t0=BASE_TS)
    window = finished_runs(store, project, 2500, agent="bot", failed_every=10, t0=BASE_TS + 1000 * SEC)
    others = finished_runs(store, project, 50, agent="other-bot", t0=BASE_TS + 1000 * SEC)
    Projector(store).catch_up()
    c = config(store, project, "backfill", selector=cf.Selector(agents=("bot",)))
    since, until = BASE_TS + 1000 * SEC, BASE_TS + 10_000 * SEC
    with store.read() as conn:
        assert jobs.preview(conn, c, since=since, until=until) == jobs.Preview(2500, None)
    with store.write() as conn:
        job_id = jobs.start_job(conn, c, kind="backfill", since=since, until=until)
    job = jobs.take_job(store)
    assert job is not None and job.id == job_id and jobs.take_job(store) is None  # taken once

    # the worker stops after its first chunk (a restart): another takes the job when the lease ends
    stop = threading.Event()
    original = jobs.judge_chunk

    def one_chunk_then_stop(*a: Any, **kw: Any) -> judging.Counts:
        stop.set()
        return original(*a, **kw)

    jobs.judge_chunk = one_chunk_then_stop  # type: ignore[assignment]
    try:
        stopped = jobs.run_job(store, job, stop=stop)
    finally:
        jobs.judge_chunk = original  # type: ignore[assignment]
    assert stopped.state == "running" and stopped.processed == jobs.CHUNK and stopped.total == 2500
    with store.write() as conn:
        conn.execute(update(eval_jobs).where(eval_jobs.c.id == job_id).values(lease_until=0))
    resumed = jobs.take_job(store)
    assert resumed is not None and resumed.id == job_id
    done = jobs.run_job(store, resumed)
    assert (done.state, done.processed, done.scored, done.total) == ("done", 2500, 2500, 2500)
    judged = {s.run_id: s.value for s in evaluator_scores(store, project, "run_succeeded")}
    assert judged == {r: (0.0 if i % 10 == 0 else 1.0) for i, r in enumerate(window)}
    assert not set(judged) & set(early + others)


def test_sampling_is_deterministic_by_run_id(store: Store, project: Project) -> None:
    ids = finished_runs(store, project, 400)
    Projector(store).catch_up()
    c = config(store, project, "tenth", selector=cf.Selector(sample_rate=0.1))
    with store.read() as conn:
        n = jobs.preview(conn, c, since=None, until=None).runs
    assert 20 <= n <= 60
    assert n == sum(c.selector.sampled(r) for r in ids)
    assert [c.selector.sampled(r) for r in ids] == [cf.Selector(sample_rate=0.1).sampled(r) for r in ids]


def test_configurations_are_checked_when_saved(store: Store, project: Project) -> None:
    from controlroom.errors import Conflict, ValidationFailed

    bad = [
        ({"evaluator": "no_such_builtin"}, "neither a built-in"),
        ({"evaluator": "no.such.module:f"}, "cannot be imported"),
        ({"evaluator": "step_count", "params": {"max": -1}}, "max"),
        ({"trigger": "hourly"}, "trigger"),
        ({"trigger": "schedule", "schedule": "every day", "window_seconds": 60}, "cron"),
        ({"trigger": "schedule", "schedule": "0 3 * * *"}, "window_seconds"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"name": "has space"}, "name"),
        ({"selector": None, "sample": 0}, None),
    ]
    for kw, message in bad:
        if message is None:
            with pytest.raises(ValidationFailed, match="sample_rate"):
                cf.Selector(sample_rate=0)
            continue
        args = {"name": "x", "evaluator": "run_succeeded", **kw}
        with store.write() as conn, pytest.raises(ValidationFailed, match=message):
            cf.create_config(store, conn, project_id=project.id, **args)
    config(store, project, "x")
    with pytest.raises(Conflict):
        config(store, project, "x")


def test_scheduled_jobs_are_queued_once_per_time(store: Store, project: Project) -> None:
    from controlroom.evals import schedule

    now = BASE_TS
    with store.write() as conn:
        c = cf.create_config(
            store,
            conn,
            project_id=project.id,
            name="nightly",
            evaluator="run_succeeded",
            trigger="schedule",
            schedule="0 3 * * *",
            timezone="Europe/Paris",
            window_seconds=86_400,
            now=now,
        )
    assert c.next_run_at is not None and c.next_run_at > now
    assert schedule.queue_due(store, now=c.next_run_at - 1) == 0
    assert schedule.queue_due(store, now=c.next_run_at) == 1
    assert schedule.queue_due(store, now=c.next_run_at) == 0  # moved on: once per time
    with store.read() as conn:
        [job] = [j for j in jobs.list_jobs(conn, project_id=project.id) if j.kind == "scheduled"]
        again = cf.get_config(conn, project_id=project.id, name="nightly")
    assert (job.since_ns, job.until_ns) == (c.next_run_at - 86_400 * SEC, c.next_run_at)
    assert again.next_run_at is not None and again.next_run_at - c.next_run_at == 86_400 * SEC
    # 03:00 in Paris
    import datetime as dt
    import zoneinfo

    at = dt.datetime.fromtimestamp(again.next_run_at / 1e9, zoneinfo.ZoneInfo("Europe/Paris"))
    assert (at.hour, at.minute) == (3, 0)


def test_paused_configurations_queue_nothing(store: Store, project: Project) -> None:
    config(store, project, "quiet", trigger="post_run", grace_seconds=0)
    with store.write() as conn:
        cf.set_paused(conn, project_id=project.id, name="quiet", paused=True)
    finished_runs(store, project, 3)
    Projector(store).catch_up()
    PostRunEvals(store).run_once()
    assert postrun.judge_due(store) == 0


def test_built_ins_judged_by_two_workers_at_once_keep_one_outcome_per_run(
    store: Store, project: Project
) -> None:
    """A model-free built-in is judged without a claim of its own (claim and outcome in one
    transaction): two workers racing may both judge a run, and the unique key keeps one outcome."""
    ids = finished_runs(store, project, 500, failed_every=5)
    Projector(store).catch_up()
    c = config(store, project, "race")
    assert not c.claim_first and config(store, project, "own", evaluator=f"{__name__}:counting").claim_first
    barrier, counted = threading.Barrier(2), []

    def worker() -> None:
        barrier.wait()
        counted.append(
            judging.judge_chunk(
                store, project_id=project.id, e=c.resolve(), job_id=0, run_ids=ids, claim_first=False
            )
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(x.scored for x in counted) == 500  # each run's outcome counted by exactly one worker
    assert len(evaluator_scores(store, project, "run_succeeded")) == 500 and len(score_events(store)) == 500
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(eval_items)).scalar_one() == 500
