"""The `controlroom` command."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from controlroom.config import Settings
from controlroom.errors import ConfigError, ControlroomError
from controlroom.money import to_usd

SERVER_EXTRA = "pip install 'controlroom[server]'"
"""How to install the server: ``pip install controlroom`` is the SDK and the client-side commands."""

_SERVER_PACKAGES = frozenset(
    [
        "alembic",
        "argon2",
        "fastapi",
        "genai_prices",
        "google",
        "opentelemetry",
        "psycopg",
        "pydantic",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    ]
)


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A known error becomes a one-line message; a server command run without the server's
    dependencies says which extra to install."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ControlroomError) as e:
            raise click.ClickException(str(e)) from None
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] not in _SERVER_PACKAGES:
                raise
            command = click.get_current_context().command_path
            raise click.ClickException(
                f"`{command}` needs the controlroom server, which is not installed here"
                f" (no module {e.name!r}): {SERVER_EXTRA}"
            ) from None

    return wrapper


def _store(db: str | None) -> Any:
    from controlroom.store.engine import Store

    settings = Settings.load(database_url=db)
    store = Store(settings.database_url)
    click.get_current_context().call_on_close(store.dispose)
    store.migrate()
    return store


db_option = click.option(
    "--db", envvar="CONTROLROOM_DATABASE_URL", help="Database URL (default: ~/.controlroom/controlroom.db)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="controlroom")
def main() -> None:
    """controlroom: runs, spans, cost, caps, approvals and evals for AI agents."""


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
    from controlroom.demo import DEMO_PASSWORD, LiveFleet, backfill, ensure_demo_people, set_demo_caps
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
    if not has_history:
        click.echo(f"writing {days} days of history for project {project!r}...")
        n = backfill(store, proj.id, days=days)
        click.echo(f"  {n} events in the run log; the projector folds them as the server starts")
        caps = set_demo_caps(store, proj)
        if caps:
            click.echo(f"  daily cost caps: {', '.join(caps)} (see GET /v1/budgets)")
    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"controlroom {url}  (database: {settings.database_url})")
    people = ensure_demo_people(store, proj)
    click.echo(f"API key for project {project!r}: {key}")
    click.echo(f"  export CONTROLROOM_URL={url} CONTROLROOM_API_KEY={key}")
    click.echo(f"  admin key (budgets, prices, keys): {admin_key}")
    click.echo(f"  logins (password {DEMO_PASSWORD!r}): {', '.join(people)}")
    click.echo(f"  curl -H 'Authorization: Bearer {key}' {url}/v1/runs?limit=5")
    if not no_live:
        LiveFleet(url, key).start()
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


def _new_key(store: Any, project_name: str, name: str = "default", scope: str = "agent") -> str:
    from controlroom.accounts import projects

    with store.write() as conn:
        project = projects.ensure_project(conn, name=project_name)
        return projects.create_key(conn, project=project, name=name, scope=scope).key


@main.group()
def keys() -> None:
    """Project API keys."""


@keys.command("create")
@db_option
@click.option("--project", required=True, help="Project name (created if it does not exist).")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@click.option(
    "--scope",
    type=click.Choice(["agent", "admin"]),
    default="agent",
    show_default=True,
    help="agent: what agents need (send, read, reserve, request approvals); admin: also manage the project.",
)
@_fail_cleanly
def keys_create(db: str | None, project: str, name: str, scope: str) -> None:
    """Create an API key; it is shown once."""
    key = _new_key(_store(db), project, name, scope)
    click.echo(key)
    click.echo(f"(API key for project {project!r}: store it now, it is not shown again)", err=True)


@keys.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def keys_list(db: str | None, project: str) -> None:
    """List a project's keys (prefixes only)."""
    from controlroom.accounts import projects

    with _store(db).read() as conn:
        p = _project(conn, project)
        for k in projects.list_keys(conn, project=p):
            state = "revoked" if k["revoked_at"] else "active"
            click.echo(f"{k['id']}\t{k['prefix']}…\t{k['name']}\t{k['scope']}\t{state}")


@keys.command("revoke")
@db_option
@click.argument("key_id", type=int)
@_fail_cleanly
def keys_revoke(db: str | None, key_id: int) -> None:
    """Revoke a key by id (see `keys list`)."""
    from controlroom.accounts import projects

    with _store(db).write() as conn:
        projects.revoke_key(conn, key_id=key_id)
    click.echo(f"revoked key {key_id}")


def _project(conn: Any, name: str) -> Any:
    from controlroom.accounts import projects

    p = projects.get_project(conn, name=name)
    if p is None:
        raise click.ClickException(f"no project named {name!r}")
    return p


@main.group()
def projects() -> None:
    """Projects."""


@projects.command("create")
@db_option
@click.argument("name")
@click.option("--timezone", default="UTC", show_default=True, help="IANA timezone of the project's days.")
@_fail_cleanly
def projects_create(db: str | None, name: str, timezone: str) -> None:
    """Create a project."""
    from controlroom.accounts import projects as p

    with _store(db).write() as conn:
        project = p.create_project(conn, name=name, timezone=timezone)
    click.echo(f"created project {project.name!r} (timezone {project.timezone})")


@projects.command("list")
@db_option
@_fail_cleanly
def projects_list(db: str | None) -> None:
    """List projects."""
    from sqlalchemy import select

    from controlroom.store.tables import projects as t

    with _store(db).read() as conn:
        for pid, name, tz in conn.execute(select(t.c.id, t.c.name, t.c.timezone).order_by(t.c.id)):
            click.echo(f"{pid}\t{name}\t{tz}")


@projects.command("set-timezone")
@db_option
@click.argument("name")
@click.argument("timezone")
@_fail_cleanly
def projects_set_timezone(db: str | None, name: str, timezone: str) -> None:
    """Change the timezone that defines a project's days; the read model is rebuilt so that past
    days are counted in it too."""
    from controlroom.accounts import projects as p
    from controlroom.projections.projector import Projector

    store = _store(db)
    with store.write() as conn:
        p.set_timezone(conn, project=_project(conn, name), timezone=timezone)
    click.echo(f"project {name!r} now counts days in {timezone}; rebuilding the read model...")
    n = Projector(store).rebuild()
    click.echo(f"rebuilt from {n} events")


@main.group()
def prices() -> None:
    """Per-project price overrides (USD per million tokens)."""


@prices.command("set")
@db_option
@click.option("--project", required=True)
@click.option("--model", required=True)
@click.option("--provider", default=None, help="Only for this provider (default: any).")
@click.option("--input", "input_per_mtok", required=True, help="USD per million input tokens.")
@click.option("--output", "output_per_mtok", required=True, help="USD per million output tokens.")
@click.option("--cache-read", "cache_read_per_mtok", default=None, help="USD per million cache-read tokens.")
@click.option(
    "--cache-write", "cache_write_per_mtok", default=None, help="USD per million cache-write tokens."
)
@click.option("--effective-from", default=None, help="RFC 3339 time from which it applies (default: always).")
@_fail_cleanly
def prices_set(db: str | None, project: str, **kw: Any) -> None:
    """Set the price of a model for a project."""
    from controlroom.cost import overrides as pr

    with _store(db).write() as conn:
        out = pr.set_price(conn, project=_project(conn, project), **kw)
    click.echo(
        f"price {out['id']}: {out['model']} input ${out['input_per_mtok']}/Mtok, output ${out['output_per_mtok']}/Mtok"
    )


@prices.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def prices_list(db: str | None, project: str) -> None:
    """List a project's price overrides."""
    from controlroom.cost import overrides as pr

    with _store(db).read() as conn:
        for p in pr.list_prices(conn, project=_project(conn, project)):
            click.echo(
                f"{p['id']}\t{p['provider'] or '*'}\t{p['model']}\tin={p['input_per_mtok']}\tout={p['output_per_mtok']}"
                f"\tcache_read={p['cache_read_per_mtok'] or '-'}\tcache_write={p['cache_write_per_mtok'] or '-'}"
                f"\tfrom={p['effective_from'] or 'always'}"
            )


@main.group()
def budgets() -> None:
    """Daily cost caps (refused before the call once crossed)."""


@budgets.command("set")
@db_option
@click.option("--project", required=True)
@click.option("--agent", default=None, help="Cap only this agent (default: the whole project).")
@click.option("--cap-usd", required=True, help="The daily cap in USD, e.g. 25 or 0.50.")
@click.option("--timezone", default=None, help="IANA timezone of the day boundary (default: the project's).")
@_fail_cleanly
def budgets_set(db: str | None, project: str, agent: str | None, cap_usd: str, timezone: str | None) -> None:
    """Set (or change) a daily cost cap."""
    from controlroom.budget import ledger
    from controlroom.budget.days import utc_seconds

    store = _store(db)
    with store.write() as conn:
        b = ledger.set_budget(
            store, conn, project=_project(conn, project), agent=agent, cap_usd=cap_usd, timezone=timezone
        )
        st = ledger.status(conn, b)
    scope = f"agent {agent!r}" if agent else f"project {project!r}"
    click.echo(
        f"cap for {scope}: ${to_usd(st.cap_nanos)}/day ({st.timezone}); today ${to_usd(st.settled_nanos)} "
        f"spent, ${to_usd(st.remaining_nanos)} left, resets {utc_seconds(st.resets_at_ns)}"
    )


@budgets.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def budgets_list(db: str | None, project: str) -> None:
    """Caps with today's settled spend, held amount, remaining and reset time."""
    from controlroom.budget import ledger
    from controlroom.budget.days import utc_seconds

    with _store(db).read() as conn:
        p = _project(conn, project)
        click.echo("scope\tcap_usd\tsettled_usd\theld_usd\tremaining_usd\tday\tresets_at")
        for b in ledger.list_budgets(conn, project_id=p.id):
            st = ledger.status(conn, b)
            usd = (to_usd(n) for n in (st.cap_nanos, st.settled_nanos, st.held_nanos, st.remaining_nanos))
            click.echo(
                "\t".join((st.agent or "(project)", *usd, st.day.isoformat(), utc_seconds(st.resets_at_ns)))
            )


@budgets.command("delete")
@db_option
@click.option("--project", required=True)
@click.option("--agent", default=None, help="The agent's cap (default: the project's).")
@_fail_cleanly
def budgets_delete(db: str | None, project: str, agent: str | None) -> None:
    """Remove a cap."""
    from controlroom.budget import ledger

    with _store(db).write() as conn:
        ledger.delete_budget(conn, project_id=_project(conn, project).id, agent=agent or "")
    click.echo("removed")


@main.group()
def users() -> None:
    """People who use the dashboard and decide approvals, with a role per project."""


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


@users.command("create")
@db_option
@click.argument("login")
@click.option("--project", required=True, help="Project the user joins.")
@click.option(
    "--role", type=click.Choice(["viewer", "approver", "admin"]), default="viewer", show_default=True
)
@click.option("--name", default=None, help="Display name (default: the login).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else: prompt).")
@_fail_cleanly
def users_create(
    db: str | None, login: str, project: str, role: str, name: str | None, password_stdin: bool
) -> None:
    """Create a user (LOGIN: a user name or an email) with a role in a project. The first admin is
    created this way; there is no sign-up."""
    from controlroom.accounts import users as u

    password = _new_password(password_stdin)
    with _store(db).write() as conn:
        p = _project(conn, project)
        user = u.create_user(conn, login=login, password=password, name=name)
        u.set_role(conn, user=user, project=p, role=u.Role.parse(role))
    click.echo(f"created user {user.login!r}, {role} of project {project!r}")


@users.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def users_list(db: str | None, project: str) -> None:
    """List a project's users and their roles."""
    from controlroom.accounts import users as u

    with _store(db).read() as conn:
        click.echo("login\trole\tstate\tname")
        for m in u.members(conn, project=_project(conn, project)):
            state = "active" if m.user.active else "disabled"
            click.echo(f"{m.user.login}\t{m.role.name}\t{state}\t{m.user.name}")


@users.command("set-role")
@db_option
@click.argument("login")
@click.option("--project", required=True)
@click.option("--role", required=True, type=click.Choice(["viewer", "approver", "admin", "none"]))
@_fail_cleanly
def users_set_role(db: str | None, login: str, project: str, role: str) -> None:
    """Change a user's role in a project (none: remove them from it). Their sessions end."""
    from controlroom.accounts import users as u

    with _store(db).write() as conn:
        user = u.user(conn, login)
        u.set_role(
            conn,
            user=user,
            project=_project(conn, project),
            role=None if role == "none" else u.Role.parse(role),
        )
    click.echo(f"{user.login!r} is now {role} in project {project!r}; their sessions ended")


@users.command("disable")
@db_option
@click.argument("login")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@_fail_cleanly
def users_disable(db: str | None, login: str, enable: bool) -> None:
    """Disable a user: their sessions end at once and they cannot log in (their history stays)."""
    from controlroom.accounts import users as u

    with _store(db).write() as conn:
        user = u.set_disabled(conn, user=u.user(conn, login), disabled=not enable)
    click.echo(f"{user.login!r} is {'enabled' if enable else 'disabled'}")


@users.command("reset-password")
@db_option
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else: prompt).")
@_fail_cleanly
def users_reset_password(db: str | None, login: str, password_stdin: bool) -> None:
    """Set a new password for a user; their sessions end."""
    from controlroom.accounts import users as u

    password = _new_password(password_stdin)
    with _store(db).write() as conn:
        user = u.user(conn, login)
        u.set_password(conn, user=user, password=password)
    click.echo(f"new password set for {user.login!r}; their sessions ended")


@main.group()
def approvals() -> None:
    """The approval queue: list, show, approve and reject requests (as a user, with their role)."""


@approvals.command("list")
@db_option
@click.option("--project", required=True)
@click.option(
    "--status",
    type=click.Choice(
        ["pending", "approved", "rejected", "expired", "cancelled", "claimed", "executed", "failed"]
    ),
    default="pending",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_fail_cleanly
def approvals_list(db: str | None, project: str, status: str, limit: int) -> None:
    """List requests; pending ones oldest first."""
    import time

    from controlroom.approvals import requests as ap

    now = time.time_ns()
    with _store(db).read() as conn:
        click.echo("id\tstatus\tage\tagent\taction\tmin_role\trun_id")
        for a in ap.queue(conn, project_id=_project(conn, project).id, status=status, limit=limit):
            age = _age((now - a.requested_at) / 1e9)
            click.echo(f"{a.id}\t{a.status}\t{age}\t{a.agent}\t{a.action}\t{a.min_role.name}\t{a.run_id}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@approvals.command("show")
@db_option
@click.option("--project", required=True)
@click.argument("approval_id")
@_fail_cleanly
def approvals_show(db: str | None, project: str, approval_id: str) -> None:
    """Show a request: the action, its full arguments, its run and its history."""
    import orjson

    from controlroom.approvals import requests as ap
    from controlroom.events import format_ts

    with _store(db).read() as conn:
        a = ap.get(conn, project_id=_project(conn, project).id, approval_id=approval_id)
    click.echo(f"approval {a.id}: {a.action} ({a.status})")
    click.echo(f"  agent {a.agent or '-'}, run {a.run_id}, requested {format_ts(a.requested_at)}")
    click.echo(
        f"  needs {a.min_role.name}{' (four eyes)' if a.four_eyes else ''}; expires {format_ts(a.expires_at) or 'never'}"
    )
    click.echo(f"  arguments_hash {a.arguments_hash}")
    if a.decided_at is not None:
        click.echo(
            f"  {a.status if a.status in ('approved', 'rejected') else 'decided'} by {a.decided_by} "
            f"({a.decided_role.name if a.decided_role else '?'}) at {format_ts(a.decided_at)}"
            + (f": {a.reason}" if a.reason else "")
        )
    click.echo("arguments:")
    click.echo(orjson.dumps(a.arguments, option=orjson.OPT_INDENT_2).decode())


def _decide(
    db: str | None,
    project: str,
    approval_id: str,
    user: str,
    decision: str,
    reason: str | None,
    password_stdin: bool,
) -> None:
    from controlroom.accounts import sessions
    from controlroom.accounts import users as u
    from controlroom.approvals import requests as ap

    store = _store(db)
    password = (
        sys.stdin.readline().rstrip("\r\n")
        if password_stdin
        else click.prompt(f"password for {user}", hide_input=True)
    )
    person = sessions.authenticate(store, login=user, password=password, address="cli")
    with store.read() as conn:
        p = _project(conn, project)
        role = u.role_in(conn, user_id=person.id, project_id=p.id)
        a = ap.get(conn, project_id=p.id, approval_id=approval_id)
    if role is None:
        raise click.ClickException(f"{person.login!r} has no role in project {project!r}")
    done = ap.decide(
        store,
        project_id=p.id,
        approval_id=a.id,
        decision=decision,
        reason=reason,
        arguments_hash=a.arguments_hash,
        decider=ap.Decider(person.id, person.login, role),
    )
    click.echo(f"{done.status}: {done.action} ({done.id}) by {person.login} as {role.name}")


@approvals.command("approve")
@db_option
@click.option("--project", required=True)
@click.option("--user", required=True, help="Who decides (their password is asked for).")
@click.option("--reason", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else: prompt).")
@click.argument("approval_id")
@_fail_cleanly
def approvals_approve(
    db: str | None, project: str, user: str, reason: str | None, password_stdin: bool, approval_id: str
) -> None:
    """Approve a request as USER (who needs the role the request asks for)."""
    _decide(db, project, approval_id, user, "approved", reason, password_stdin)


@approvals.command("reject")
@db_option
@click.option("--project", required=True)
@click.option("--user", required=True, help="Who decides (their password is asked for).")
@click.option("--reason", required=True, help="Why (required).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else: prompt).")
@click.argument("approval_id")
@_fail_cleanly
def approvals_reject(
    db: str | None, project: str, user: str, reason: str, password_stdin: bool, approval_id: str
) -> None:
    """Reject a request as USER, with a reason."""
    _decide(db, project, approval_id, user, "rejected", reason, password_stdin)


if __name__ == "__main__":
    sys.exit(main())
