"""Logging in and out: server-side sessions and login throttling.

A session is a row: the browser holds a random 256-bit token, the database its SHA-256, so a
leaked database does not hand out sessions and revoking one is a write the next request sees. A
session ends at logout, after ``idle_seconds`` without a request, ``max_seconds`` after login, and
when its user's password or role changes or the user is disabled.

Failed logins are counted per account and per client address in the database (so the limit holds
across every server process), in fixed windows of :data:`WINDOW_SECONDS`. Past the limit, logins
for that account or from that address are refused before the password is checked, whether or not
the account exists. A login that fails says only that the login or the password is wrong.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, case, delete, select, update

from controlroom.accounts import passwords
from controlroom.accounts import users as u
from controlroom.errors import TooManyRequests, Unauthorized
from controlroom.store.engine import Store
from controlroom.store.tables import login_failures, sessions, users

WINDOW_SECONDS = 900
ACCOUNT_LIMIT = 10  # failed logins per account per window
ADDRESS_LIMIT = 50  # failed logins per client address per window
TOUCH_EVERY_NS = 60 * 10**9  # last_seen_at is written at most once a minute per session
WRONG = "wrong login or password"


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    user: u.User
    expires_at: int
    roles: dict[int, u.Role]  # project id -> role


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # the cookie's value; shown once
    session: Session


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- throttling ----------------------------------------------------------------------------------


def _keys(login: str, address: str | None) -> dict[str, int]:
    keys = {f"account:{login.strip().lower()[:180]}": ACCOUNT_LIMIT}
    if address:
        keys[f"address:{address[:180]}"] = ADDRESS_LIMIT
    return keys


def _check_throttle(conn: Connection, keys: dict[str, int], now: int) -> None:
    window_start = now - WINDOW_SECONDS * 10**9
    rows = conn.execute(
        select(login_failures.c.key, login_failures.c.window_start, login_failures.c.failures).where(
            login_failures.c.key.in_(keys), login_failures.c.window_start > window_start
        )
    ).all()
    for key, started, failures in rows:
        if failures >= keys[key]:
            retry = max(1, -(-(started + WINDOW_SECONDS * 10**9 - now) // 10**9))
            raise TooManyRequests(
                f"too many failed logins {'for this account' if key.startswith('account:') else 'from this address'};"
                f" try again in {retry} s",
                retry_after=retry,
            )


def _count_failure(store: Store, keys: dict[str, int], now: int) -> None:
    stale = now - WINDOW_SECONDS * 10**9
    with store.write() as conn:
        for key in keys:
            stmt = store.insert(login_failures).values(key=key, window_start=now, failures=1)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[login_failures.c.key],
                    set_={
                        "failures": case(
                            (login_failures.c.window_start <= stale, 1), else_=login_failures.c.failures + 1
                        ),
                        "window_start": case(
                            (login_failures.c.window_start <= stale, now), else_=login_failures.c.window_start
                        ),
                    },
                )
            )


# -- sessions ------------------------------------------------------------------------------------


def authenticate(store: Store, *, login: str, password: str, address: str | None) -> u.User:
    """The active user with this login and password, throttled like a login (the CLI uses it to
    know who decides). Raises Unauthorized (the same for an unknown user, a wrong password and a
    disabled user) or TooManyRequests."""
    return _check_password(store, login, password, address, time.time_ns())[0]


def login(store: Store, *, login: str, password: str, address: str | None, max_seconds: float) -> NewSession:
    """Check the password and start a session (see :func:`authenticate` for the errors)."""
    now = time.time_ns()
    user, stored = _check_password(store, login, password, address, now)
    token = secrets.token_urlsafe(32)
    expires = now + int(max_seconds * 1e9)
    with store.write() as conn:
        if passwords.needs_rehash(stored):
            u.replace_password_hash(conn, user_id=user.id, new_hash=passwords.hash_password(password))
        sid = conn.execute(
            sessions.insert()
            .values(
                token_hash=hash_token(token),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=expires,
            )
            .returning(sessions.c.id)
        ).scalar_one()
        return NewSession(token, Session(sid, user, expires, u.roles_of(conn, user_id=user.id)))


def _check_password(
    store: Store, login: str, password: str, address: str | None, now: int
) -> tuple[u.User, str]:
    keys = _keys(login, address)
    with store.read() as conn:
        _check_throttle(conn, keys, now)
        found = conn.execute(
            select(users.c.id, users.c.password_hash, users.c.disabled_at).where(
                users.c.login == login.strip().lower()
            )
        ).first()
    if found is None:
        passwords.waste_time_like_a_verify(password)
    if found is None or not passwords.verify(found.password_hash, password) or found.disabled_at is not None:
        _count_failure(store, keys, now)
        raise Unauthorized(WRONG)
    with store.write() as conn:  # a success clears the account's count (not the address's)
        conn.execute(delete(login_failures).where(login_failures.c.key == next(iter(keys))))
        user = u.get_user(conn, user_id=found.id)
    assert user is not None
    return user, found.password_hash


def session_for(store: Store, token: str, *, idle_seconds: float, now: int | None = None) -> Session | None:
    """The live session a cookie's token names, or None (unknown, logged out, idle or past its
    absolute expiry, or its user disabled). Notes the request (at most once a minute)."""
    now = time.time_ns() if now is None else now
    idle_cutoff = now - int(idle_seconds * 1e9)
    with store.read() as conn:
        row = conn.execute(
            select(sessions.c.id, sessions.c.user_id, sessions.c.last_seen_at, sessions.c.expires_at)
            .join(users, users.c.id == sessions.c.user_id)
            .where(
                sessions.c.token_hash == hash_token(token),
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now,
                sessions.c.last_seen_at > idle_cutoff,
                users.c.disabled_at.is_(None),
            )
        ).first()
        if row is None:
            return None
        user = u.get_user(conn, user_id=row.user_id)
        roles = u.roles_of(conn, user_id=row.user_id)
    assert user is not None
    if now - row.last_seen_at >= TOUCH_EVERY_NS:
        with store.write() as conn:
            conn.execute(update(sessions).where(sessions.c.id == row.id).values(last_seen_at=now))
    return Session(row.id, user, row.expires_at, roles)


def logout(store: Store, token: str) -> bool:
    with store.write() as conn:
        n = conn.execute(
            update(sessions)
            .where(sessions.c.token_hash == hash_token(token), sessions.c.revoked_at.is_(None))
            .values(revoked_at=time.time_ns())
        ).rowcount
    return bool(n)
