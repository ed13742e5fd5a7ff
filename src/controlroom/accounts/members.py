"""A project's people, managed by its admins (the API): the rules that keep a project in hand.

Users are global and roles are per project, so an admin of one project may change roles in it,
but may disable a user or set their password only when every project of that user is one they
administer too (else: the CLI, which is the operator's). No change may leave a project that had an
active admin user without one: two admins demoting each other at the same moment cannot both win
(the projects at stake are locked for the transaction on PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import Connection, func, select

from controlroom.accounts.projects import Project
from controlroom.accounts.users import (
    Member,
    Role,
    User,
    create_user,
    get_user,
    normalise_login,
    role_in,
    roles_of,
    set_disabled,
    set_password,
    set_role,
)
from controlroom.errors import Conflict, Forbidden, NotFound
from controlroom.store.tables import memberships, projects, users


def add(
    conn: Connection, *, project: Project, login: str, password: str, role: Role, name: str | None = None
) -> Member:
    """A new user with ``role`` in ``project``. An existing login is a conflict: users are global,
    and an existing user joins a project by being given a role in it (:func:`change`)."""
    if get_user(conn, login=normalise_login(login)) is not None:
        raise Conflict(f"a user {normalise_login(login)!r} already exists: give them a role in this project")
    user = create_user(conn, login=login, password=password, name=name)
    set_role(conn, user=user, project=project, role=role)
    return Member(user, project.id, role)


def change(
    conn: Connection,
    *,
    project: Project,
    login: str,
    admin_of: Collection[int],
    role: Role | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> Member:
    """Change a user's role in ``project`` (adding a user who is not in it yet), enable or disable
    them, or set their password; each of these ends their sessions. ``admin_of``: the projects
    the caller administers (an admin key: its own)."""
    user = _user(conn, login)
    current = role_in(conn, user_id=user.id, project_id=project.id)
    if current is None and role is None:
        raise NotFound(f"no user {user.login!r} in this project: give them a role to add them")
    if disabled is not None or password is not None:
        elsewhere = set(roles_of(conn, user_id=user.id)) - {project.id} - set(admin_of)
        if elsewhere:
            raise Forbidden(
                f"{user.login!r} is also a member of projects you are not an admin of: disabling them or "
                "setting their password changes those too; use the CLI (controlroom users disable | "
                "reset-password)"
            )
    at_stake = _lock_admin_projects(conn, user)
    if role is not None and role != current:
        set_role(conn, user=user, project=project, role=role)
    if password is not None:
        set_password(conn, user=user, password=password)
    if disabled is not None and disabled == user.active:
        user = set_disabled(conn, user=user, disabled=disabled)
    _require_admins(conn, at_stake)
    return Member(user, project.id, role or current or Role.viewer)


def remove(conn: Connection, *, project: Project, login: str) -> None:
    """Take a user out of ``project`` (the user stays, with their history and other projects)."""
    user = _user(conn, login)
    if role_in(conn, user_id=user.id, project_id=project.id) is None:
        raise NotFound(f"no user {user.login!r} in this project")
    at_stake = _lock_admin_projects(conn, user)
    set_role(conn, user=user, project=project, role=None)
    _require_admins(conn, at_stake)


def _user(conn: Connection, login: str) -> User:
    found = get_user(conn, login=normalise_login(login))
    if found is None:
        raise NotFound(f"no user {login!r}")
    return found


def _lock_admin_projects(conn: Connection, user: User) -> list[int]:
    """The projects ``user`` is an active admin of, their rows locked until the transaction ends
    (PostgreSQL: FOR NO KEY UPDATE, which rows referring to the project do not wait for; SQLite
    has one writer)."""
    if not user.active:
        return []
    ids = [pid for pid, role in roles_of(conn, user_id=user.id).items() if role is Role.admin]
    if ids:
        conn.execute(
            select(projects.c.id)
            .where(projects.c.id.in_(ids))
            .order_by(projects.c.id)
            .with_for_update(key_share=True)
        )
    return sorted(ids)


def _require_admins(conn: Connection, project_ids: Iterable[int]) -> None:
    for pid in project_ids:
        admins = conn.execute(
            select(func.count())
            .select_from(memberships.join(users, users.c.id == memberships.c.user_id))
            .where(
                memberships.c.project_id == pid,
                memberships.c.role == Role.admin.name,
                users.c.disabled_at.is_(None),
            )
        ).scalar_one()
        if admins == 0:
            name = conn.execute(select(projects.c.name).where(projects.c.id == pid)).scalar_one()
            raise Conflict(
                f"that would leave project {name!r} without an active admin: make someone else admin first"
            )
