"""Managing a project: keys, projects, prices, budgets."""

from __future__ import annotations

from typing import Any

import click

from controlroom.cli import _fail_cleanly, _new_key, _project, _store, db_option, main
from controlroom.money import to_usd


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
