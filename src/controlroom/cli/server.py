"""Running controlroom: serve, demo, worker, resend, migrate, rebuild."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from controlroom.cli import _fail_cleanly, _new_key, _store, db_option, main
from controlroom.config import Settings


@main.command()
@db_option
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8750).")
@click.option(
    "--print-key",
    "print_key",
    metavar="PROJECT",
    help="Create PROJECT if needed and print a new API key for it.",
)
@click.option(
    "--no-worker", is_flag=True, help="Serve the API only; run the projector with `controlroom worker`."
)
@_fail_cleanly
def serve(db: str | None, host: str | None, port: int | None, print_key: str | None, no_worker: bool) -> None:
    """Run controlroom: the API, and the projector, sweeper and hold expiry in a child process."""
    from controlroom.store.engine import Store

    settings = Settings.load(database_url=db, host=host, port=port)
    store = Store(settings.database_url)
    store.migrate()
    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"controlroom {url}  (database: {settings.database_url})")
    if print_key:
        key = _new_key(store, print_key)
        click.echo(f"API key for project {print_key!r}: {key}")
        click.echo(f"  export CONTROLROOM_URL={url} CONTROLROOM_API_KEY={key}")
    _run_server(settings, store, worker=not no_worker)


@main.command()
@db_option
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8750).")
@click.option("--project", default="demo", show_default=True, help="Project that holds the demo fleet.")
@click.option(
    "--days", type=click.IntRange(1, 365), default=30, show_default=True, help="Days of history to create."
)
@click.option("--no-live", is_flag=True, help="Only the history; no live runs while serving.")
@_fail_cleanly
def demo(db: str | None, host: str | None, port: int | None, project: str, days: int, no_live: bool) -> None:
    """Serve controlroom with a simulated agent fleet: 30 days of history plus live runs."""
    from sqlalchemy import select

    from controlroom.accounts import projects as p
    from controlroom.demo import (
        DEMO_PASSWORD,
        DemoApprover,
        LiveFleet,
        backfill,
        ensure_demo_people,
        judge_history,
        set_demo_caps,
        set_demo_evals,
    )
    from controlroom.store.engine import Store
    from controlroom.store.tables import events

    settings = Settings.load(database_url=db, host=host, port=port)
    store = Store(settings.database_url)
    store.migrate()
    with store.write() as conn:
        proj = p.ensure_project(conn, name=project)
        key = p.create_key(conn, project=proj, name="demo").key
        admin_key = p.create_key(conn, project=proj, name="demo-admin", scope="admin").key
        has_history = conn.execute(
            select(events.c.seq).where(events.c.project_id == proj.id).limit(1)
        ).first()
    people = ensure_demo_people(store, proj)  # the history's decisions are theirs
    if not has_history:
        click.echo(f"writing {days} days of history for project {project!r}...")
        n = backfill(store, proj, days=days)
        click.echo(f"  {n} events in the run log")
        caps = set_demo_caps(store, proj)
        if caps:
            click.echo(f"  daily cost caps: {', '.join(caps)} (see GET /v1/budgets)")
        if set_demo_evals(store, proj):
            scored, opened = judge_history(store, proj)
            click.echo(
                f"  evals: {scored} runs scored; {opened} regression(s) found"
                f" (controlroom evals regressions --project {project})"
            )
    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"controlroom {url}  (database: {settings.database_url})")
    click.echo(f"API key for project {project!r}: {key}")
    click.echo(f"  export CONTROLROOM_URL={url} CONTROLROOM_API_KEY={key}")
    click.echo(f"  admin key (budgets, prices, keys): {admin_key}")
    click.echo(f"  logins (password {DEMO_PASSWORD!r}): {', '.join(people)}")
    click.echo(
        f"  approvals waiting for a person: controlroom approvals list --project {project}"
        f"{'' if db is None else ' --db ' + db}"
    )
    click.echo(f"  curl -H 'Authorization: Bearer {key}' {url}/v1/runs?limit=5")
    if not no_live:
        LiveFleet(url, key, approver=DemoApprover(store, proj)).start()
    _run_server(settings, store, worker=True)


def _run_server(settings: Settings, store: Any, *, worker: bool) -> None:
    """The API in this process; the projector, sweeper and hold expiry in a child `controlroom worker`
    process, so that folding the log and answering requests each get a core of their own (Python
    runs one thread at a time per process). The child exits with this process."""
    import signal
    import subprocess

    import uvicorn

    from controlroom.server.app import create_app

    # uvicorn stops gracefully on SIGTERM, then raises the signal again: this handler turns that
    # into an exit that runs the `finally` below (the default action would skip it, leaving the
    # child to notice by itself). Installed before the child starts, so no SIGTERM escapes it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    child = None
    try:
        if worker:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controlroom.cli",
                    "worker",
                    "--db",
                    settings.database_url,
                    "--parent-pid",
                    str(os.getpid()),
                ]
            )
        uvicorn.run(
            create_app(settings, store=store, run_worker=False),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        if child is not None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


@main.command()
@db_option
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Exit when this process exits.")
@_fail_cleanly
def worker(db: str | None, parent_pid: int | None) -> None:
    """Run the worker runtime only: the read model's projector, the abandoned-run sweeper and hold
    expiry. On PostgreSQL any number may run side by side (each consumer and job runs in one of them
    at a time); on SQLite run one (`serve` starts it), beside `serve --no-worker`."""
    import signal
    import threading

    from controlroom.workers.runtime import standard_runtime

    settings = Settings.load(database_url=db)
    store = _store(settings.database_url)
    w = standard_runtime(
        store,
        batch=settings.projector_batch,
        abandon_after_seconds=settings.abandon_after_seconds,
        hold_seconds=settings.hold_seconds,
        public_url=settings.base_url,
        poll_seconds=min(settings.worker_poll_seconds, 0.1) if parent_pid else settings.worker_poll_seconds,
    )
    signal.signal(signal.SIGTERM, lambda *_: w.stop(timeout=0))
    if parent_pid:

        def watch_parent() -> None:  # the serve process died (even by SIGKILL): stop too
            while os.getppid() == parent_pid and not w.stopped:
                threading.Event().wait(0.5)
            w.stop(timeout=0)

        threading.Thread(target=watch_parent, daemon=True).start()
    else:
        names = ", ".join([*w.consumers, *(j.name for j in w.jobs)])
        click.echo(f"controlroom worker: running {names} (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        w.run_forever()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--url", envvar="CONTROLROOM_URL", required=True, help="Server URL (default: $CONTROLROOM_URL)."
)
@click.option(
    "--api-key",
    envvar="CONTROLROOM_API_KEY",
    required=True,
    help="Project API key (default: $CONTROLROOM_API_KEY).",
)
def resend(paths: tuple[Path, ...], url: str, api_key: str) -> None:
    """Send spooled batches of events again (the SDK's `rejected/` directory, or batch files)."""
    from controlroom.sdk._resend import resend as send

    kept = sent = 0
    try:
        for out in send(paths, url=url, api_key=api_key):
            sent += 1
            if out.sent:
                line = f"sent {out.path.name}: {out.accepted} accepted, {out.duplicates} already stored"
                if out.rejected:
                    line += f", {out.rejected} rejected ({out.detail})"
                click.echo(line)
            else:
                kept += 1
                click.echo(f"kept {out.path}: {out.detail}", err=True)
    except ValueError as e:
        raise click.ClickException(f"--url={url!r}: {e}") from None
    except OSError as e:
        raise click.ClickException(f"--url={url!r}: cannot reach the server ({e})") from None
    if not sent:
        click.echo(f"no batches (*.batch.gz) in {', '.join(str(p) for p in paths)}")
    if kept:
        raise click.ClickException(f"{kept} batch(es) not sent; they stay where they are")


@main.command()
@db_option
@_fail_cleanly
def migrate(db: str | None) -> None:
    """Apply pending schema migrations."""
    store = _store(db)
    click.echo(f"schema at revision {store.current_revision()}")


@main.command()
@db_option
@_fail_cleanly
def rebuild(db: str | None) -> None:
    """Drop the read model and replay the whole run log from zero (other log consumers keep their
    positions)."""
    from controlroom.projections.projector import Projector

    store = _store(db)
    n = Projector(store).rebuild()
    click.echo(f"rebuilt the read model from {n} events")
