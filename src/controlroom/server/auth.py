"""Who is asking, and may they: every route declares the one permission it needs.

Two kinds of principal:

- an **API key** (``Authorization: Bearer <key>``), of a project, with a scope: ``agent`` keys send
  events, read, reserve budget and request, wait for and claim approvals — they never decide one;
  ``admin`` keys may also manage the project (keys, users, budgets, prices, policies, webhooks);
- a **person**, by the session cookie the login set, with their role in the project the request
  names (``Controlroom-Project: <name>`` header; optional when they belong to one project):
  ``viewer`` reads, ``approver`` also decides approvals, ``admin`` also manages the project. A
  person never sends events or reserves budget: agents do.

A cookie-authenticated request that changes anything must carry ``X-Controlroom-CSRF: 1`` (a custom
header a cross-site form cannot send), and its ``Origin`` / ``Sec-Fetch-Site`` must say it comes from
this server's own origin (``CONTROLROOM_PUBLIC_URL``); otherwise 403 ``csrf_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie
from starlette.concurrency import run_in_threadpool

from controlroom.accounts import sessions
from controlroom.accounts.projects import Project, get_project, project_by_id
from controlroom.accounts.users import Role, User
from controlroom.config import Settings
from controlroom.errors import BadRequest, Forbidden, Unauthorized
from controlroom.server.deps import KeyCache, authorized_key, bearer

SESSION_COOKIE = "controlroom_session"
CSRF_HEADER = "X-Controlroom-CSRF"
PROJECT_HEADER = "Controlroom-Project"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session")


class Permission(StrEnum):
    OPEN = "open"  # no credentials
    SESSION = "session"  # any person logged in (their own session)
    READ = "read"  # any key; a person with any role
    SEND = "send"  # keys: events and traces
    RESERVE = "reserve"  # keys: budget reservations
    AGENT = "agent"  # keys: request, wait for, claim approvals and report their outcome
    DECIDE = "decide"  # people with the approver role or more (a request may ask for more)
    SCORE = "score"  # keys; people with the approver role or more: add a score to a run
    ADMIN = "admin"  # admin keys, and people with the admin role


_KEY_SCOPES = {
    Permission.READ: {"agent", "admin"},
    Permission.SEND: {"agent", "admin"},
    Permission.RESERVE: {"agent", "admin"},
    Permission.AGENT: {"agent", "admin"},
    Permission.SCORE: {"agent", "admin"},
    Permission.ADMIN: {"admin"},
}
_PERSON_ROLES = {
    Permission.READ: Role.viewer,
    Permission.DECIDE: Role.approver,
    Permission.SCORE: Role.approver,
    Permission.ADMIN: Role.admin,
}


class CSRFFailed(Forbidden):
    code, title = "csrf_failed", "Cross-site request refused"


@dataclass(frozen=True, slots=True)
class Principal:
    project: Project
    key_scope: str | None = None  # an API key's
    user: User | None = None  # a person's
    role: Role | None = None  # the person's role in ``project``


def requires(permission: Permission) -> Any:
    """The dependency a route declares: resolves the principal and checks ``permission``."""

    async def principal(
        request: Request,
        _key: Annotated[Any, Security(bearer)],
        _cookie: Annotated[Any, Security(cookie)],
    ) -> Principal:
        return await authorize(request, permission)

    principal.permission = permission  # type: ignore[attr-defined]  # read by the route-permission test
    return Depends(principal)


def permission_of(dependency: Any) -> Permission | None:
    return getattr(dependency, "permission", None)


async def authorize(request: Request, permission: Permission) -> Principal:
    header = request.headers.get("authorization")
    if header:
        return await authorize_key(header, request.app.state.keys, permission)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("send the project API key as 'Authorization: Bearer <key>', or log in")
    settings: Settings = request.app.state.settings
    session = await run_in_threadpool(
        sessions.session_for, request.app.state.store, token, idle_seconds=settings.session_idle_seconds
    )
    if session is None:
        raise Unauthorized("the session has ended: log in again")
    if request.method not in SAFE_METHODS:
        check_csrf(request, settings)
    if permission is Permission.SESSION:
        return Principal(Project(0, "", "UTC"), user=session.user)
    project = await run_in_threadpool(_project_of, request, session)
    role = session.roles[project.id]
    needed = _PERSON_ROLES.get(permission)
    if needed is None or role < needed:
        who = f"the {role.name} role"
        raise Forbidden(_refusal(permission, who), needs=permission.value)
    return Principal(project, user=session.user, role=role)


async def authorize_key(header: str, keys: KeyCache, permission: Permission) -> Principal:
    """:func:`authorize` for a request with an ``Authorization`` header (fast routes, which read
    their headers themselves, call it directly)."""
    key = await authorized_key(header, keys)
    if key.scope not in _KEY_SCOPES.get(permission, set()):
        raise Forbidden(_refusal(permission, f"an {key.scope} key"), needs=permission.value)
    return Principal(key.project, key_scope=key.scope)


def _refusal(permission: Permission, who: str) -> str:
    return {
        Permission.SEND: f"sending events needs an API key, not {who}",
        Permission.RESERVE: f"budget reservations need an API key, not {who}",
        Permission.AGENT: f"requesting and claiming approvals needs an API key, not {who}",
        Permission.DECIDE: f"deciding approvals needs a person with the approver role; not {who}",
        Permission.SCORE: f"adding a score needs an API key or the approver role; not {who}",
        Permission.ADMIN: f"this needs an admin (an admin key or a person with the admin role); not {who}",
    }.get(permission, f"not allowed with {who}")


def _project_of(request: Request, session: sessions.Session) -> Project:
    from controlroom.store.engine import Store

    store: Store = request.app.state.store
    name = request.headers.get(PROJECT_HEADER)
    with store.read() as conn:
        if name is None:
            if len(session.roles) != 1:
                raise BadRequest(
                    f"you belong to {len(session.roles)} projects: name one with the {PROJECT_HEADER} header"
                )
            return project_by_id(conn, next(iter(session.roles)))
        project = get_project(conn, name=name)
    if project is None or project.id not in session.roles:
        raise Forbidden(f"you have no role in a project named {name!r}")
    return project


def check_csrf(request: Request, settings: Settings) -> None:
    """A cookie-authenticated change must come from this server's own pages."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise CSRFFailed(f"send the {CSRF_HEADER}: 1 header with changes made with a session")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CSRFFailed(f"a change from another site ({site}) is refused")
    origin = request.headers.get("origin")
    if origin is not None and _origin(origin) != _origin(settings.base_url):
        raise CSRFFailed(f"a change from {origin!r} is refused: this server is {settings.base_url}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def secure_cookie(settings: Settings) -> bool:
    """``Secure`` unless the server is reached over plain HTTP on loopback."""
    parts = urlsplit(settings.base_url)
    return not (parts.scheme == "http" and (parts.hostname in ("127.0.0.1", "localhost", "::1")))


def project_for(permission: Permission) -> Any:
    """The dependency of a route that needs ``permission`` and only the project it acts on."""

    async def project(principal: Principal = requires(permission)) -> Project:  # noqa: B008
        return principal.project

    project.permission = permission  # type: ignore[attr-defined]
    return Depends(project)


def open_route() -> Any:
    """The dependency of a route anyone may call (no credentials)."""

    async def nobody() -> None:
        return None

    nobody.permission = Permission.OPEN  # type: ignore[attr-defined]
    return Depends(nobody)


ReadProject = Annotated[Project, project_for(Permission.READ)]
SendProject = Annotated[Project, project_for(Permission.SEND)]
AdminProject = Annotated[Project, project_for(Permission.ADMIN)]
