"""`controlroom evals`: add, list, show, pause and resume configurations; run one over past runs
after a preview; try an evaluator on one run; regressions. Bad values are a message, not a trace."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from controlroom.accounts import projects
from controlroom.cli import main
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from factories import BASE_TS, rid, run_ended, run_started


def run(*args: str, ok: bool = True, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


@pytest.fixture
def shop(db_url: str) -> list[str]:
    store = Store(db_url)
    store.migrate()
    with store.write() as conn:
        p = projects.ensure_project(conn, name="shop")
    ids, events = [], []
    for i in range(12):
        r = rid()
        ids.append(r)
        events += [
            run_started(r, agent="bot" if i % 2 else "other", ts=BASE_TS + i * 10**9),
            run_ended(r, "failed" if i % 4 == 1 else "succeeded", ts=BASE_TS + i * 10**9 + 1000),
        ]
    ingest_events(store, p.id, {"events": events}, max_events=1000)
    Projector(store).catch_up()
    store.dispose()
    return ids


def test_configure_run_and_try(db_url: str, shop: list[str]) -> None:
    at = ("--db", db_url, "--project", "shop")
    assert "added ok: run_succeeded v1 (manual: evals run)" in run(
        "evals", "add", *at, "ok", "--evaluator", "run_succeeded", "--agent", "bot"
    )
    assert "post-run, 5s after each run ends" in run(
        "evals",
        "add",
        *at,
        "steps",
        "--evaluator",
        "step_count",
        "--params",
        '{"max": 3}',
        "--trigger",
        "post_run",
        "--grace",
        "5s",
    )
    listing = run("evals", "list", *at)
    assert (
        "ok\trun_succeeded\tmanual\tagent=bot\tactive" in listing and "steps\tstep_count\tpost_run" in listing
    )

    assert "6 runs to judge with run_succeeded" in run(
        "evals", "run", *at, "ok", "--since", "2001-01-01T00:00:00Z", "--dry-run"
    )
    out = run("evals", "run", *at, "ok", "--since", "2001-01-01T00:00:00Z", "--yes")
    assert "backfill done: 6/6 runs, 6 scored, 0 n/a, 0 errors" in out
    again = run("evals", "run", *at, "ok", "--since", "2001-01-01T00:00:00Z", "--yes")
    assert "6/6 runs" not in again and "done: 0/6 runs" in again  # judged before: not again
    assert "job " in run("evals", "show", *at, "ok")

    assert "paused" in run("evals", "pause", *at, "steps")
    assert "— paused" in run("evals", "show", *at, "steps")
    assert "resumed" in run("evals", "resume", *at, "steps")

    failed = shop[1]  # an agent "bot" run that failed
    tried = run("evals", "try", *at, "ok", "--run", failed)
    assert f"run_succeeded v1 on run {failed}: scored" in tried and "run_succeeded (boolean) 0" in tried
    tried = run("evals", "try", *at, "step_count", "--params", '{"max": 0}', "--run", shop[0])
    assert "step_count" in tried
    assert "no run" in run("evals", "try", *at, "ok", "--run", "f" * 32, ok=False)
    assert "no open regressions" in run("evals", "regressions", *at, "--check")


def test_bad_values_name_themselves(db_url: str, shop: list[str]) -> None:
    at = ("--db", db_url, "--project", "shop")
    assert "neither a built-in" in run("evals", "add", *at, "x", "--evaluator", "nope", ok=False)
    assert "is not JSON" in run(
        "evals", "add", *at, "x", "--evaluator", "step_count", "--params", "{max", ok=False
    )
    assert "not a duration" in run(
        "evals",
        "add",
        *at,
        "x",
        "--evaluator",
        "run_succeeded",
        "--trigger",
        "schedule",
        "--window",
        "soon",
        ok=False,
    )
    assert "cron expression" in run(
        "evals",
        "add",
        *at,
        "x",
        "--evaluator",
        "run_succeeded",
        "--trigger",
        "schedule",
        "--schedule",
        "daily",
        "--window",
        "1d",
        ok=False,
    )
    assert "no eval configuration 'ghost'" in run("evals", "show", *at, "ghost", ok=False)
    assert "not RFC 3339" in run("evals", "run", *at, "ghost", "--since", "yesterday", ok=False)
    assert "Traceback" not in run("evals", "add", *at, "x", "--evaluator", "no.such.module:f", ok=False)
