"""`controlroom evals`: eval configurations (add, list, show, pause, resume), running one now over
a window of past runs (a backfill, after a preview), trying an evaluator on one run, and the
regressions found in the scores."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from controlroom.cli import _fail_cleanly, _project, _store, db_option, main

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """'30', '90s', '15m', '24h', '7d' -> seconds."""
    if value is None:
        return None
    m = _DURATION.match(value.strip())
    if m is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 3600, 90s, 15m, 24h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """An RFC 3339 time, or a duration ago ('7d': seven days ago) -> epoch ns."""
    if value is None:
        return None
    from controlroom.events import parse_ts

    m = _DURATION.match(value.strip())
    if m is not None and m.group(2):
        return time.time_ns() - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)
    try:
        return parse_ts(value, future_ok=True)
    except ValueError as e:
        raise click.BadParameter(f"{value!r}: {e} (or a duration ago, such as 7d)") from None


def _json(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    import orjson

    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise click.BadParameter(f"{value!r} is not JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"{value!r} must be a JSON object of parameters")
    return parsed


@main.group()
def evals() -> None:
    """Eval configurations, backfills, trying an evaluator, regressions (docs/evals.md)."""


@evals.command("add")
@db_option
@click.option("--project", required=True)
@click.argument("name")
@click.option("--evaluator", required=True, help="A built-in's name, or module:attribute of your own.")
@click.option("--params", callback=_json, help="The evaluator's parameters, as a JSON object.")
@click.option("--agent", "agents", multiple=True, help="Only runs of this agent (repeatable).")
@click.option(
    "--environment", "environments", multiple=True, help="Only runs in this environment (repeatable)."
)
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable: any of them).")
@click.option("--sample-rate", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option(
    "--trigger", type=click.Choice(["post_run", "schedule", "manual"]), default="manual", show_default=True
)
@click.option("--schedule", help="Cron (5 fields) for --trigger schedule, e.g. '0 3 * * *'.")
@click.option("--timezone", default="UTC", show_default=True, help="The schedule's timezone.")
@click.option("--window", callback=_seconds, help="A scheduled job's window of past runs, e.g. 24h.")
@click.option(
    "--grace", callback=_seconds, default="30", show_default=True, help="Post-run: wait after a run ends."
)
@_fail_cleanly
def evals_add(
    db: str | None,
    project: str,
    name: str,
    evaluator: str,
    params: dict[str, Any],
    agents: tuple[str, ...],
    environments: tuple[str, ...],
    tags: tuple[str, ...],
    sample_rate: float,
    trigger: str,
    schedule: str | None,
    timezone: str,
    window: float | None,
    grace: float,
) -> None:
    """Add configuration NAME: which evaluator over which runs, and when."""
    from controlroom.evals import configs as cf

    store = _store(db)
    with store.write() as conn:
        c = cf.create_config(
            store,
            conn,
            project_id=_project(conn, project).id,
            name=name,
            evaluator=evaluator,
            params=params,
            selector=cf.Selector(agents, environments, tags, sample_rate),
            trigger=trigger,
            schedule=schedule,
            timezone=timezone,
            window_seconds=window,
            grace_seconds=grace if grace is not None else cf.DEFAULT_GRACE_SECONDS,
        )
    e = c.resolve()
    click.echo(f"added {c.name}: {e.name} v{e.version} ({_when(c)})")


def _when(c: Any) -> str:
    from controlroom.events import format_ts

    if c.trigger == "post_run":
        return f"post-run, {c.grace_seconds:g}s after each run ends"
    if c.trigger == "schedule":
        return f"schedule '{c.schedule}' {c.timezone}, window {c.window_seconds:g}s, next {format_ts(c.next_run_at)}"
    return "manual: evals run"


@evals.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def evals_list(db: str | None, project: str) -> None:
    """List configurations: name, evaluator, when, selector, state."""
    from controlroom.evals import configs as cf

    with _store(db).read() as conn:
        found = cf.list_configs(conn, project_id=_project(conn, project).id)
    click.echo("name\tevaluator\twhen\tselector\tstate")
    for c in found:
        sel = c.selector
        selector = ",".join(
            [
                *(f"agent={a}" for a in sel.agents),
                *(f"env={e}" for e in sel.environments),
                *(f"tag={t}" for t in sel.tags),
            ]
            + ([f"sample={sel.sample_rate:g}"] if sel.sample_rate < 1 else [])
        )
        state = "paused" if c.paused else "active"
        click.echo(f"{c.name}\t{c.evaluator}\t{c.trigger}\t{selector or 'all runs'}\t{state}")


def _job_line(j: Any) -> str:
    from controlroom.events import format_ts

    total = f"/{j.total}" if j.total is not None else ""
    line = (
        f"job {j.id} {j.kind} {j.state}: {j.processed}{total} runs, {j.scored} scored, "
        f"{j.not_applicable} n/a, {j.errors} errors, {j.skipped} skipped (created {format_ts(j.created_at)})"
    )
    return line + (f" — {j.note}" if j.note else "")


@evals.command("show")
@db_option
@click.option("--project", required=True)
@click.argument("name")
@_fail_cleanly
def evals_show(db: str | None, project: str, name: str) -> None:
    """Show configuration NAME and its latest jobs with their progress."""
    from controlroom.evals import configs as cf
    from controlroom.evals import jobs

    with _store(db).read() as conn:
        c = cf.get_config(conn, project_id=_project(conn, project).id, name=name)
        recent = jobs.list_jobs(conn, project_id=c.project_id, config_id=c.id, limit=5)
        errors = jobs.item_errors(conn, job_id=recent[0].id, limit=5) if recent else []
    e = c.resolve()
    click.echo(f"{c.name}: {c.evaluator} ({e.name} v{e.version}){' — paused' if c.paused else ''}")
    click.echo(f"  when: {_when(c)}")
    click.echo(f"  params: {c.params}")
    click.echo(f"  selector: {c.selector.as_json()}")
    for j in recent:
        click.echo(f"  {_job_line(j)}")
    for run_id, etype, message in errors:
        click.echo(f"  eval error on run {run_id}: {etype}: {message}")


def _pause(db: str | None, project: str, name: str, paused: bool) -> None:
    from controlroom.evals import configs as cf

    store = _store(db)
    with store.write() as conn:
        cf.set_paused(conn, project_id=_project(conn, project).id, name=name, paused=paused)
    click.echo(f"{name} {'paused' if paused else 'resumed'}")


@evals.command("pause")
@db_option
@click.option("--project", required=True)
@click.argument("name")
@_fail_cleanly
def evals_pause(db: str | None, project: str, name: str) -> None:
    """Pause NAME: runs that end are not queued for it, its schedule skips."""
    _pause(db, project, name, True)


@evals.command("resume")
@db_option
@click.option("--project", required=True)
@click.argument("name")
@_fail_cleanly
def evals_resume(db: str | None, project: str, name: str) -> None:
    """Resume NAME (a schedule goes on from now)."""
    _pause(db, project, name, False)


@evals.command("run")
@db_option
@click.option("--project", required=True)
@click.argument("name")
@click.option(
    "--since", callback=_time, help="Runs that started at or after: RFC 3339, or a duration ago (7d)."
)
@click.option("--until", callback=_time, help="Runs that started before (default: now).")
@click.option("--dry-run", is_flag=True, help="Only say how many runs, and for a judge the estimated cost.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_fail_cleanly
def evals_run(
    db: str | None, project: str, name: str, since: int | None, until: int | None, dry_run: bool, yes: bool
) -> None:
    """Run NAME now over the runs that started in [--since, --until): a backfill. It says first how
    many runs it would judge (and what an LLM judge would cost), then judges them here, with
    progress. Runs this evaluator version judged before are not judged again."""
    from controlroom.evals import configs as cf
    from controlroom.evals import jobs

    store = _store(db)
    until = until if until is not None else time.time_ns()
    with store.read() as conn:
        c = cf.get_config(conn, project_id=_project(conn, project).id, name=name)
        preview = jobs.preview(conn, c, since=since, until=until)
    cost = f"; estimated judge cost ${preview.estimated_cost_usd}" if preview.estimated_cost_usd else ""
    click.echo(f"{preview.runs} runs to judge with {c.evaluator}{cost}")
    if dry_run or preview.runs == 0:
        return
    if not yes:
        click.confirm("judge them now?", abort=True)
    with store.write() as conn:
        job_id = jobs.start_job(conn, c, kind="backfill", since=since, until=until, total=preview.runs)
    job = jobs.take_job(store, job_id=job_id)
    if job is None:
        click.echo(
            f"job {job_id} queued; a worker took it (controlroom evals show {name} --project {project})"
        )
        return
    done = jobs.run_job(store, job)
    click.echo(_job_line(done))


@evals.command("try")
@db_option
@click.option("--project", required=True)
@click.argument("evaluator")
@click.option("--run", "run_id", required=True, help="The recorded run to judge.")
@click.option("--params", callback=_json, help="Parameters, when EVALUATOR is a built-in or a factory.")
@_fail_cleanly
def evals_try(db: str | None, project: str, evaluator: str, run_id: str, params: dict[str, Any]) -> None:
    """Judge one recorded run with EVALUATOR (a configuration's name, a built-in, or
    module:attribute) and print the outcome. Nothing is recorded."""
    from controlroom.errors import NotFound
    from controlroom.evals import configs as cf
    from controlroom.evals.context import EvalContext, evaluating
    from controlroom.evals.evaluator import evaluate
    from controlroom.evals.loading import load_runs

    store = _store(db)
    with store.read() as conn:
        p = _project(conn, project)
        try:
            e = cf.get_config(conn, project_id=p.id, name=evaluator).resolve()
        except NotFound:
            e = cf.resolve(evaluator, params)
        run = load_runs(conn, p.id, [run_id.lower()]).get(run_id.lower())
    if run is None:
        raise click.ClickException(f"no run {run_id!r} in project {project!r}")
    with evaluating(EvalContext(store, p.id, None)):
        o = evaluate(e, run)
    click.echo(f"{e.name} v{e.version} on run {run.id}: {o.status} ({o.seconds * 1000:.1f} ms)")
    for s in o.scores:
        value = "" if s.value is None else f" {s.value:g}"
        label = "" if s.label is None else f" {s.label!r}"
        click.echo(f"  {s.name or e.name} ({s.kind}){value}{label}" + (f": {s.comment}" if s.comment else ""))
    if o.error is not None:
        click.echo(f"  {o.error.type}: {o.error.message}")
        if o.error.traceback:
            click.echo(o.error.traceback.rstrip())


@evals.command("regressions")
@db_option
@click.option("--project", required=True)
@click.option("--all", "show_all", is_flag=True, help="Resolved ones too.")
@click.option("--check", is_flag=True, help="Look for regressions now first.")
@_fail_cleanly
def evals_regressions(db: str | None, project: str, show_all: bool, check: bool) -> None:
    """Regressions found in the scores, with their evidence and worst runs."""
    from controlroom.evals import monitor
    from controlroom.events import format_ts

    store = _store(db)
    with store.read() as conn:
        p = _project(conn, project)
    if check:
        r = monitor.check(store, project_id=p.id)
        click.echo(
            f"checked {r.tested} series: {r.opened} opened, {r.refreshed} still open, {r.resolved} resolved"
        )
    with store.read() as conn:
        found = monitor.list_regressions(conn, project_id=p.id, state=None if show_all else "open")
    if not found:
        click.echo("no open regressions" if not show_all else "no regressions")
    for reg in found:
        click.echo(
            f"{reg.state} since {format_ts(reg.opened_at)}: {reg.agent or '(no agent)'} / {reg.evaluator} "
            f"v{reg.evaluator_version} / {reg.name}"
        )
        click.echo(f"  {reg.evidence}")
        click.echo(f"  worst runs: {', '.join(reg.details.get('worst_run_ids', []))}")
