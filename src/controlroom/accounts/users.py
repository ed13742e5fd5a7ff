"""People and their roles. A user has one role per project: ``viewer`` (read) < ``approver`` (also
decide approvals) < ``admin`` (also keys, users, budgets, prices, policies). There is no sign-up:
users are created by an admin (CLI or API); the first admin comes from the CLI.

Logins are case-insensitive (stored lower-case). A disabled user keeps their history (who decided
what stays attributable) but can no longer log in, and their sessions end at once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy import Connection, delete, insert, select, update

from controlroom.accounts import passwords
from controlroom.accounts.projects import Project
from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.store.tables import memberships, sessions, users

_LOGIN = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")


class Role(IntEnum):
    """Roles in the order of what they may do: each may do everything the ones below it may."""

    viewer = 1
    approver = 2
    admin = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value]
        except KeyError:
            raise ValidationFailed(
                f"unknown role {value!r}: one of {', '.join(r.name for r in cls)}", field="role"
            ) from None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str
    name: str
    created_at: int
    disabled_at: int | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class Member:
    """A user's place in one project."""

    user: User
    project_id: int
    role: Role


_USER = (users.c.id, users.c.login, users.c.name, users.c.created_at, users.c.disabled_at)


def normalise_login(login: str) -> str:
    value = login.strip().lower()
    if _LOGIN.fullmatch(value) is None:
        raise ValidationFailed(
            f"bad login {login!r}: 1-128 letters, digits, '.', '_', '@', '+', '-' (an email works)",
            field="login",
        )
    return value


def _password(password: str) -> str:
    try:
        passwords.check_strength(password)
    except ValueError as e:
        raise ValidationFailed(str(e), field="password") from None
    return passwords.hash_password(password)


def create_user(conn: Connection, *, login: str, password: str, name: str | None = None) -> User:
    login = normalise_login(login)
    if get_user(conn, login=login) is not None:
        raise Conflict(f"a user {login!r} already exists")
    now = time.time_ns()
    display = (name or login).strip()[:256] or login
    uid = conn.execute(
        insert(users)
        .values(
            login=login,
            name=display,
            password_hash=_password(password),
            created_at=now,
            password_changed_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    return User(uid, login, display, now, None)


def get_user(conn: Connection, *, login: str | None = None, user_id: int | None = None) -> User | None:
    query = select(*_USER)
    query = query.where(users.c.id == user_id) if user_id is not None else query
    query = query.where(users.c.login == login.strip().lower()) if login is not None else query
    row = conn.execute(query).first()
    return User(*row) if row else None


def user(conn: Connection, login: str) -> User:
    found = get_user(conn, login=login)
    if found is None:
        raise NotFound(f"no user {login!r}")
    return found


def set_role(conn: Connection, *, user: User, project: Project, role: Role | None) -> None:
    """Give ``user`` ``role`` in ``project`` (None: take them out of it). Ends their sessions: a
    session never carries a role it was not started with."""
    conn.execute(
        delete(memberships).where(memberships.c.user_id == user.id, memberships.c.project_id == project.id)
    )
    if role is not None:
        conn.execute(
            insert(memberships).values(
                user_id=user.id, project_id=project.id, role=role.name, created_at=time.time_ns()
            )
        )
    end_sessions(conn, user_id=user.id)


def role_in(conn: Connection, *, user_id: int, project_id: int) -> Role | None:
    role = conn.execute(
        select(memberships.c.role).where(
            memberships.c.user_id == user_id, memberships.c.project_id == project_id
        )
    ).scalar()
    return None if role is None else Role[role]


def roles_of(conn: Connection, *, user_id: int) -> dict[int, Role]:
    """The user's role in each of their projects."""
    rows = conn.execute(
        select(memberships.c.project_id, memberships.c.role).where(memberships.c.user_id == user_id)
    ).all()
    return {pid: Role[role] for pid, role in rows}


def members(conn: Connection, *, project: Project) -> list[Member]:
    rows = conn.execute(
        select(*_USER, memberships.c.role)
        .join(memberships, memberships.c.user_id == users.c.id)
        .where(memberships.c.project_id == project.id)
        .order_by(users.c.login)
    ).all()
    return [Member(User(*r[:5]), project.id, Role[r[5]]) for r in rows]


def set_password(conn: Connection, *, user: User, password: str) -> None:
    """A new password; every session of the user ends."""
    conn.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(password_hash=_password(password), password_changed_at=time.time_ns())
    )
    end_sessions(conn, user_id=user.id)


def set_disabled(conn: Connection, *, user: User, disabled: bool) -> User:
    """Disable (sessions end at once, login refused) or enable a user."""
    at = time.time_ns() if disabled else None
    conn.execute(update(users).where(users.c.id == user.id).values(disabled_at=at))
    if disabled:
        end_sessions(conn, user_id=user.id)
    return User(user.id, user.login, user.name, user.created_at, at)


def end_sessions(conn: Connection, *, user_id: int) -> int:
    return int(
        conn.execute(
            update(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=time.time_ns())
        ).rowcount
    )


def password_hash(conn: Connection, *, user_id: int) -> str:
    return str(conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar_one())


def replace_password_hash(conn: Connection, *, user_id: int, new_hash: str) -> None:
    """A rehash with current parameters at login: same password, so sessions stay."""
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
