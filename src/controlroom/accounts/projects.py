"""Projects and their API keys. A key is shown once and stored as a SHA-256 hash: keys carry
256 bits of randomness, so a fast hash is safe and keeps per-request authentication cheap."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.store.tables import api_keys, projects

KEY_PREFIX = "cr_"
KEY_USE_RESOLUTION_NS = 60 * 10**9
"""A key's ``last_used_at`` is written at most this often (a write per request would be a cost)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PROJECT = (projects.c.id, projects.c.name, projects.c.timezone)  # the fields of Project


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class NewKey:
    id: int
    project: Project
    key: str  # the secret; shown once


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_timezone(tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"unknown timezone {tz!r}: use an IANA name such as Europe/Paris", field="timezone"
        ) from None
    return tz


def get_project(conn: Connection, *, name: str) -> Project | None:
    row = conn.execute(select(*_PROJECT).where(projects.c.name == name)).first()
    return Project(*row) if row else None


def project_by_id(conn: Connection, project_id: int) -> Project:
    row = conn.execute(select(*_PROJECT).where(projects.c.id == project_id)).first()
    if row is None:
        raise NotFound(f"project {project_id} does not exist")
    return Project(*row)


def create_project(conn: Connection, *, name: str, timezone: str = "UTC") -> Project:
    if _NAME.fullmatch(name) is None:
        raise ValidationFailed(f"bad project name {name!r}: letters, digits, '.', '_', '-' (1-128 chars)")
    if get_project(conn, name=name) is not None:
        raise Conflict(f"project {name!r} already exists")
    check_timezone(timezone)
    pid = conn.execute(
        insert(projects)
        .values(name=name, timezone=timezone, created_at=time.time_ns())
        .returning(projects.c.id)
    ).scalar_one()
    return Project(pid, name, timezone)


def ensure_project(conn: Connection, *, name: str) -> Project:
    return get_project(conn, name=name) or create_project(conn, name=name)


KEY_SCOPES = ("agent", "admin")
"""``agent`` (the default): send events, read, reserve, request and claim approvals — never decide
one; ``admin``: also manage the project (keys, users, budgets, prices, policies), for automation."""


def create_key(conn: Connection, *, project: Project, name: str = "default", scope: str = "agent") -> NewKey:
    if scope not in KEY_SCOPES:
        raise ValidationFailed(f"unknown key scope {scope!r}: agent or admin", field="scope")
    if not 1 <= len(name) <= 128 or "\x00" in name:
        raise ValidationFailed(f"key name {name!r} must be 1 to 128 characters (no NUL)", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = conn.execute(
        insert(api_keys)
        .values(
            project_id=project.id,
            name=name,
            prefix=key[:10],
            key_hash=hash_key(key),
            created_at=time.time_ns(),
            scope=scope,
        )
        .returning(api_keys.c.id)
    ).scalar_one()
    return NewKey(key_id, project, key)


def list_keys(conn: Connection, *, project: Project) -> list[dict[str, object]]:
    rows = conn.execute(
        select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.scope,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            api_keys.c.last_used_at,
        )
        .where(api_keys.c.project_id == project.id)
        .order_by(api_keys.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def revoke_key(
    conn: Connection, *, key_id: int, project: Project | None = None, caller: str | None = None
) -> str:
    """Revoke an active key (of ``project`` when given: another project's key is not found), and
    return its hash so that caches can forget it. ``caller``, the key asking, may not revoke itself:
    whatever runs with it would be locked out mid-task (revoke it with another admin key, as an
    admin person or from the CLI)."""
    query = select(api_keys.c.key_hash).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if project is not None:
        query = query.where(api_keys.c.project_id == project.id)
    found = conn.execute(query).scalar()
    if found is None:
        raise NotFound(f"no active API key with id {key_id}")
    if caller is not None and hash_key(caller) == found:
        raise Conflict(f"key {key_id} is the key making this request: a key cannot revoke itself")
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=time.time_ns()))
    return str(found)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What an active API key is: its project and its scope (and when it was last used)."""

    project: Project
    scope: str
    last_used_at: int | None = None


def key_info(conn: Connection, key: str) -> KeyInfo | None:
    row = conn.execute(
        select(*_PROJECT, api_keys.c.scope, api_keys.c.last_used_at)
        .join(api_keys, api_keys.c.project_id == projects.c.id)
        .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    ).first()
    return KeyInfo(Project(*row[:3]), row[3], row[4]) if row else None


def key_used(conn: Connection, *, key_hash: str, at_ns: int) -> None:
    """Record that the key with this hash authenticated a request at ``at_ns``, unless a use
    within KEY_USE_RESOLUTION_NS before it is recorded already (so concurrent processes write it
    once, and never move it backwards)."""
    conn.execute(
        update(api_keys)
        .where(
            api_keys.c.key_hash == key_hash,
            (api_keys.c.last_used_at.is_(None)) | (api_keys.c.last_used_at <= at_ns - KEY_USE_RESOLUTION_NS),
        )
        .values(last_used_at=at_ns)
    )


def project_for_key(conn: Connection, key: str) -> Project | None:
    """The project an active key belongs to, or None."""
    row = conn.execute(
        select(*_PROJECT)
        .join(api_keys, api_keys.c.project_id == projects.c.id)
        .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    ).first()
    return Project(*row) if row else None


def set_timezone(conn: Connection, *, project: Project, timezone: str) -> Project:
    check_timezone(timezone)
    conn.execute(update(projects).where(projects.c.id == project.id).values(timezone=timezone))
    return Project(project.id, project.name, timezone)
