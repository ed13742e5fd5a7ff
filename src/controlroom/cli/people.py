"""People and their decisions: users, approvals."""

from __future__ import annotations

import sys
from typing import Any

import click

from controlroom.cli import _fail_cleanly, _project, _store, db_option, main


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


def _as_person(
    db: str | None, project: str, approval_id: str, user: str, password_stdin: bool
) -> tuple[Any, Any, Any]:
    """The store, the request and the person (USER, after their password) with their role in the
    project: the CLI decides as a person, never as the machine it runs on."""
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
    return store, a, ap.Decider(person.id, person.login, role)


def _decide(
    db: str | None,
    project: str,
    approval_id: str,
    user: str,
    decision: str,
    reason: str | None,
    password_stdin: bool,
) -> None:
    from controlroom.approvals import requests as ap

    store, a, decider = _as_person(db, project, approval_id, user, password_stdin)
    done = ap.decide(
        store,
        project_id=a.project_id,
        approval_id=a.id,
        decision=decision,
        reason=reason,
        arguments_hash=a.arguments_hash,
        decider=decider,
    )
    click.echo(f"{done.status}: {done.action} ({done.id}) by {decider.login} as {decider.role.name}")


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


@approvals.command("resolve")
@db_option
@click.option("--project", required=True)
@click.option("--user", required=True, help="Who resolves it (their password is asked for).")
@click.option("--outcome", type=click.Choice(["executed", "failed"]), required=True)
@click.option("--reason", required=True, help="What you found (required).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else: prompt).")
@click.argument("approval_id")
@_fail_cleanly
def approvals_resolve(
    db: str | None, project: str, user: str, outcome: str, reason: str, password_stdin: bool, approval_id: str
) -> None:
    """Record what became of a claimed action whose agent never reported (it died after claiming):
    it ran (executed) or it did not (failed). Nothing retries it by itself."""
    from controlroom.approvals import requests as ap

    store, a, person = _as_person(db, project, approval_id, user, password_stdin)
    done = ap.complete(
        store,
        project_id=a.project_id,
        approval_id=a.id,
        outcome=outcome,
        error={"type": "resolved", "message": reason} if outcome == "failed" else None,
        by=person,
        reason=reason,
    )
    click.echo(f"{done.status}: {done.action} ({done.id}) resolved by {person.login} as {person.role.name}")
