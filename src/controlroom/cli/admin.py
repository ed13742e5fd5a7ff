"""Administering a project's approvals: policies (who decides, four eyes, expiry, who is notified)
and webhooks (add, list, disable, their delivery log, a test delivery)."""

from __future__ import annotations

import click

from controlroom.cli import _fail_cleanly, _project, _store, db_option, main

APPROVAL_EVENTS = (
    "approval.requested",
    "approval.decided",
    "approval.expired",
    "approval.cancelled",
    "approval.claimed",
    "approval.executed",
    "approval.failed",
)  # events.APPROVAL_EVENT_TYPES, spelled out so that --help needs no server import
WebhookId = click.IntRange(1, 2**31 - 1)


def _parse_notify(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...] | None:
    """``all``: every webhook (None); ``none``: no webhook (()); else webhook ids separated by commas."""
    text = value.strip().lower()
    if text == "all":
        return None
    if text == "none":
        return ()
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not all, none or webhook ids separated by commas") from None
    bad = [i for i in ids if not 1 <= i < 2**31]
    if bad:
        raise click.BadParameter(f"{value!r}: {bad[0]} is not a webhook id")
    return ids


def _notify(ids: tuple[int, ...] | None) -> str:
    if ids is None:
        return "all"
    return ",".join(map(str, ids)) or "none"


@main.group()
def policies() -> None:
    """Approval policies: per action, who may decide, four eyes, expiry, which webhooks are told."""


@policies.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def policies_list(db: str | None, project: str) -> None:
    """List a project's policies."""
    from controlroom.approvals import policies as po

    with _store(db).read() as conn:
        found = po.list_policies(conn, project_id=_project(conn, project).id)
    click.echo("action\tmin_role\tfour_eyes\texpires_after_seconds\tnotify")
    for p in found:
        expiry = "never" if p.expires_after_seconds is None else f"{p.expires_after_seconds:g}"
        click.echo(
            f"{p.action}\t{p.min_role.name}\t{'yes' if p.four_eyes else 'no'}\t{expiry}\t{_notify(p.notify)}"
        )


@policies.command("set")
@db_option
@click.option("--project", required=True)
@click.argument("action")
@click.option(
    "--min-role",
    type=click.Choice(["viewer", "approver", "admin"]),
    default="approver",
    show_default=True,
    help="The least role that may decide.",
)
@click.option(
    "--four-eyes/--no-four-eyes", default=False, help="The person who started the run may not approve it."
)
@click.option(
    "--expires-after",
    type=float,
    default=None,
    help="Seconds until an undecided request expires (default: never).",
)
@click.option(
    "--notify",
    default="all",
    callback=_parse_notify,
    show_default=True,
    help="Webhooks told of this action's approvals: all, none, or ids (see `webhooks list`).",
)
@_fail_cleanly
def policies_set(
    db: str | None,
    project: str,
    action: str,
    min_role: str,
    four_eyes: bool,
    expires_after: float | None,
    notify: tuple[int, ...] | None,
) -> None:
    """Set the policy of ACTION (it replaces the one it had: omitted options take their defaults)."""
    from controlroom.accounts.users import Role
    from controlroom.approvals import policies as po

    store = _store(db)
    with store.write() as conn:
        p = po.set_policy(
            store,
            conn,
            project_id=_project(conn, project).id,
            policy=po.Policy(action, Role.parse(min_role), four_eyes, expires_after, notify),
        )
    expiry = (
        "never expires" if p.expires_after_seconds is None else f"expires after {p.expires_after_seconds:g} s"
    )
    click.echo(
        f"policy for {p.action!r}: {p.min_role.name} or more decides"
        f"{', four eyes' if p.four_eyes else ''}, {expiry}, notifies {_notify(p.notify)}"
    )


@policies.command("delete")
@db_option
@click.option("--project", required=True)
@click.argument("action")
@_fail_cleanly
def policies_delete(db: str | None, project: str, action: str) -> None:
    """Remove the policy of ACTION: back to the defaults (an approver decides, every webhook told)."""
    from controlroom.approvals import policies as po

    with _store(db).write() as conn:
        po.delete_policy(conn, project_id=_project(conn, project).id, action=action)
    click.echo(f"removed the policy for {action!r}")


@main.group()
def webhooks() -> None:
    """Outgoing webhooks: approval events as signed JSON or Slack messages."""


@webhooks.command("add")
@db_option
@click.option("--project", required=True)
@click.argument("url")
@click.option("--format", "format_", type=click.Choice(["json", "slack"]), default="json", show_default=True)
@click.option(
    "--event-type",
    "event_types",
    type=click.Choice(APPROVAL_EVENTS),
    multiple=True,
    help="An event it receives (repeat the option; default: requested, decided, expired).",
)
@_fail_cleanly
def webhooks_add(db: str | None, project: str, url: str, format_: str, event_types: tuple[str, ...]) -> None:
    """Add a webhook for URL; prints its id and its signing secret, which is shown once."""
    from controlroom.notifications import webhooks as wh

    with _store(db).write() as conn:
        hook = wh.create_webhook(
            conn,
            project_id=_project(conn, project).id,
            url=url,
            format=format_,
            event_types=event_types or wh.DEFAULT_EVENTS,
        )
    click.echo(f"{hook.id}\t{hook.secret}")
    click.echo(
        f"(webhook {hook.id} of project {project!r}: store its signing secret now, it is not shown again)",
        err=True,
    )


@webhooks.command("list")
@db_option
@click.option("--project", required=True)
@_fail_cleanly
def webhooks_list(db: str | None, project: str) -> None:
    """List a project's webhooks (never their secrets)."""
    from controlroom.notifications import webhooks as wh

    with _store(db).read() as conn:
        found = wh.list_webhooks(conn, project_id=_project(conn, project).id)
    click.echo("id\tstate\tformat\tevent_types\turl")
    for h in found:
        state = "active" if h.disabled_at is None else "disabled"
        click.echo(f"{h.id}\t{state}\t{h.format}\t{','.join(h.event_types)}\t{h.url}")


@webhooks.command("disable")
@db_option
@click.option("--project", required=True)
@click.argument("webhook_id", type=WebhookId)
@_fail_cleanly
def webhooks_disable(db: str | None, project: str, webhook_id: int) -> None:
    """Disable a webhook: it receives nothing more (its pending deliveries are given up)."""
    from controlroom.notifications import webhooks as wh

    with _store(db).write() as conn:
        wh.disable_webhook(conn, project_id=_project(conn, project).id, webhook_id=webhook_id)
    click.echo(f"disabled webhook {webhook_id}")


@webhooks.command("deliveries")
@db_option
@click.option("--project", required=True)
@click.argument("webhook_id", type=WebhookId)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_fail_cleanly
def webhooks_deliveries(db: str | None, project: str, webhook_id: int, limit: int) -> None:
    """A webhook's delivery log, newest first."""
    from controlroom.events import format_ts
    from controlroom.notifications import webhooks as wh

    with _store(db).read() as conn:
        pid = _project(conn, project).id
        wh.get_webhook(conn, project_id=pid, webhook_id=webhook_id)
        found = wh.deliveries(conn, project_id=pid, webhook_id=webhook_id, limit=limit)
    click.echo("id\tcreated_at\tevent_type\tstate\tattempts\tlast_status\tlast_error")
    for d in found:
        click.echo(
            f"{d.id}\t{format_ts(d.created_at)}\t{d.event_type}\t{d.state}\t{d.attempts}"
            f"\t{d.last_status or '-'}\t{d.last_error or '-'}"
        )


@webhooks.command("test")
@db_option
@click.option("--project", required=True)
@click.argument("webhook_id", type=WebhookId)
@_fail_cleanly
def webhooks_test(db: str | None, project: str, webhook_id: int) -> None:
    """Send a webhook one signed test delivery now (logged; exits with 1 if it was not delivered)."""
    from controlroom.config import Settings
    from controlroom.notifications import webhooks as wh

    store = _store(db)
    with store.read() as conn:
        p = _project(conn, project)
    result = wh.send_test(
        store,
        project_id=p.id,
        project=p.name,
        webhook_id=webhook_id,
        public_url=Settings.load(database_url=db).base_url,
    )
    if not result.delivered:
        raise click.ClickException(f"not delivered (delivery {result.delivery_id}): {result.error}")
    click.echo(f"delivered: HTTP {result.status} (delivery {result.delivery_id})")
