"""People and approvals over HTTP: logging in and out, the approval queue, deciding (people), and
requesting, waiting for, claiming and reporting approvals (agents, with an API key). Requesting,
claiming and reporting are on the agent's path: fast routes (see server/fastpath.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import WithJsonSchema
from starlette.concurrency import run_in_threadpool

from controlroom.accounts import sessions
from controlroom.accounts.projects import Project
from controlroom.accounts.users import Role
from controlroom.approvals import requests as ap
from controlroom.approvals.waiting import Waiters
from controlroom.events import format_ts
from controlroom.server.auth import (
    SESSION_COOKIE,
    Permission,
    Principal,
    check_csrf,
    open_route,
    requires,
    secure_cookie,
)
from controlroom.server.deps import SettingsDep, StoreDep, in_read
from controlroom.server.fastpath import Answer, FastRoutes
from controlroom.server.people_schemas import (
    ApprovalIdPattern,
    ApprovalList,
    ApprovalOut,
    ApprovalRequestIn,
    CancelIn,
    ClaimIn,
    DecisionIn,
    LoginIn,
    Membership,
    OutcomeIn,
    PendingOut,
    ResolutionIn,
    SessionOut,
)
from controlroom.server.schemas import comma_separated, problems

router = APIRouter(tags=["people"])
approvals = APIRouter(tags=["approvals"])
fast = FastRoutes(max_body_bytes=None)  # bodies up to the server's setting, as for ingest
ID_PARAM = Path(pattern=ApprovalIdPattern, description="The request's id (32 hex digits)")
ApprovalId = Annotated[str, ID_PARAM]
MAX_WAIT_SECONDS = 60.0
STATUS_LIST = comma_separated(ap.STATUSES)


# -- sessions --------------------------------------------------------------------------------------


def _session_out(
    store: StoreDep, user_login: str, name: str, roles: dict[int, Role], expires: int | None
) -> SessionOut:
    from controlroom.accounts.projects import project_by_id

    with store.read() as conn:
        projects = [
            Membership(project=project_by_id(conn, pid).name, role=role.name)
            for pid, role in sorted(roles.items())
        ]
    return SessionOut(login=user_login, name=name, projects=projects, expires_at=format_ts(expires))


@router.post(
    "/v1/session",
    response_model=SessionOut,
    responses=problems(400, 401, 403, 422, 429),
    summary="Log in: a session cookie for the dashboard",
    openapi_extra={"security": []},
    dependencies=[open_route()],
)
async def login(
    body: LoginIn, request: Request, response: Response, store: StoreDep, settings: SettingsDep
) -> SessionOut:
    """Checks the password (Argon2id) and sets the ``controlroom_session`` cookie (HttpOnly,
    SameSite=Strict, Secure unless served over plain HTTP on loopback). Like every change made
    from a browser, it needs the ``X-Controlroom-CSRF: 1`` header. A wrong login and a wrong
    password answer the same 401; too many failures for the account or from the address, 429."""
    check_csrf(request, settings)
    address = request.client.host if request.client else None
    new = await run_in_threadpool(
        sessions.login,
        store,
        login=body.login,
        password=body.password,
        address=address,
        max_seconds=settings.session_max_seconds,
    )
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=int(settings.session_max_seconds),
        httponly=True,
        samesite="strict",
        secure=secure_cookie(settings),
        path="/",
    )
    s = new.session
    return await run_in_threadpool(_session_out, store, s.user.login, s.user.name, s.roles, s.expires_at)


@router.get(
    "/v1/session",
    response_model=SessionOut,
    responses=problems(401, 403),
    summary="Who is logged in, and their role in each project",
)
async def whoami(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.SESSION)],
) -> SessionOut:
    token = request.cookies.get(SESSION_COOKIE, "")
    s = await run_in_threadpool(
        sessions.session_for, store, token, idle_seconds=settings.session_idle_seconds
    )
    if s is None:  # ended between the two reads
        from controlroom.errors import Unauthorized

        raise Unauthorized("the session has ended: log in again")
    return await run_in_threadpool(_session_out, store, s.user.login, s.user.name, s.roles, s.expires_at)


@router.delete(
    "/v1/session",
    status_code=204,
    responses=problems(401, 403),
    summary="Log out: the session ends now",
)
async def logout(
    request: Request,
    response: Response,
    store: StoreDep,
    principal: Annotated[Principal, requires(Permission.SESSION)],
) -> None:
    await run_in_threadpool(sessions.logout, store, request.cookies.get(SESSION_COOKIE, ""))
    response.delete_cookie(SESSION_COOKIE, path="/")


# -- approvals -------------------------------------------------------------------------------------


def approval_json(a: ap.Approval) -> dict[str, Any]:
    """An ApprovalOut's members, as a plain dict (what the fast routes answer)."""
    return {
        "id": a.id,
        "run_id": a.run_id,
        "span_id": a.span_id,
        "agent": a.agent,
        "action": a.action,
        "arguments": a.arguments,
        "arguments_hash": a.arguments_hash,
        "idempotency_key": a.idempotency_key,
        "status": a.status,
        "min_role": a.min_role.name,
        "four_eyes": a.four_eyes,
        "started_by": a.started_by,
        "requested_at": format_ts(a.requested_at) or "",
        "expires_at": format_ts(a.expires_at),
        "decided_at": format_ts(a.decided_at),
        "decided_by": a.decided_by,
        "decided_role": a.decided_role.name if a.decided_role else None,
        "reason": a.reason,
        "claimed_at": format_ts(a.claimed_at),
        "completed_at": format_ts(a.completed_at),
        "error": a.error,
    }


def approval_out(a: ap.Approval) -> ApprovalOut:
    return ApprovalOut(**approval_json(a))


def _waiters(request: Request) -> Waiters:
    waiters: Waiters = request.app.state.approval_waiters
    return waiters


# The agent's transitions are fast routes. Their transactions wait for the disk (a durable commit,
# like every write of a request's state): they run in a worker thread, never on the event loop.
_AGENT_PROBLEMS = problems(
    400,
    401,
    403,
    404,
    409,
    413,
    415,
    422,
    503,
    s413="payload_too_large: the body is larger than the server's limit (CONTROLROOM_MAX_BODY_BYTES)",
)


@fast.post(
    "/v1/approvals",
    body=ApprovalRequestIn,
    response_model=ApprovalOut,
    status_code=201,
    permission=Permission.AGENT,
    responses={
        200: {"description": "The same binding was asked before: that request", "model": ApprovalOut},
        **{s: doc for s, doc in _AGENT_PROBLEMS.items() if s not in (404, 409)},
    },
    summary="Ask a person to approve an action (agents)",
    tags=["approvals"],
    on_loop=False,
)
def request_approval(
    state: Any, project: Project, body: ApprovalRequestIn, _: dict[str, str], wait: bool
) -> Answer:
    """Records a pending request bound to the hash of (run, action, arguments). Asking again with
    the same run, idempotency key and arguments answers the same request (200); changed arguments
    make a new one. It never runs unless a person approves it and the agent claims it."""
    a, new = ap.request(
        state.store,
        project_id=project.id,
        run_id=body.run_id,
        action=body.action,
        arguments=body.arguments,
        idempotency_key=body.idempotency_key,
        agent=body.agent,
        span_id=body.span_id,
        started_by=body.started_by,
        min_role=Role[body.min_role] if body.min_role else None,
    )
    return (201 if new else 200), approval_json(a)


@approvals.get(
    "/v1/approvals",
    response_model=ApprovalList,
    responses=problems(400, 401, 403),
    summary="The approval queue: pending requests oldest first",
)
async def list_approvals(
    store: StoreDep,
    principal: Annotated[Principal, requires(Permission.READ)],
    status: Annotated[
        str | None,
        Query(description="One status or several, comma-separated (pending alone: oldest first)"),
        WithJsonSchema({"type": "string", "pattern": STATUS_LIST}),
    ] = None,
    run_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ApprovalList:
    """Without ``status``, every request. The dashboard's tabs ask for several statuses at once
    (decided: approved, rejected, claimed, executed, failed)."""
    statuses = tuple(s.strip() for s in status.split(",") if s.strip()) if status else None
    found = await in_read(
        store, ap.queue, project_id=principal.project.id, status=statuses, run_id=run_id, limit=limit
    )
    return ApprovalList(approvals=[approval_out(a) for a in found])


@approvals.get(
    "/v1/approvals/pending",
    response_model=PendingOut,
    responses=problems(401, 403),
    summary="How many requests wait for a decision (the dashboard's count on every page)",
)
async def pending_count(
    store: StoreDep, principal: Annotated[Principal, requires(Permission.READ)]
) -> PendingOut:
    count, oldest = await in_read(store, ap.pending, project_id=principal.project.id)
    return PendingOut(pending=count, oldest_requested_at=None if oldest is None else format_ts(oldest))


@approvals.get(
    "/v1/approvals/{approval_id}",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404),
    summary="One request: the action, its full arguments, its run and its decision",
)
async def get_approval(
    approval_id: ApprovalId, store: StoreDep, principal: Annotated[Principal, requires(Permission.READ)]
) -> ApprovalOut:
    return approval_out(
        await in_read(store, ap.get, project_id=principal.project.id, approval_id=approval_id)
    )


@approvals.get(
    "/v1/approvals/{approval_id}/wait",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404),
    summary="Wait for a decision (a bounded long poll; agents)",
)
async def wait_for_decision(
    approval_id: ApprovalId,
    request: Request,
    principal: Annotated[Principal, requires(Permission.AGENT)],
    timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_SECONDS)] = 30.0,
) -> ApprovalOut:
    """Answers as soon as the request is no longer pending, or as it is when ``timeout`` seconds
    have passed (still pending: it stays pending, and never runs by default). Holds no thread."""
    a = await _waiters(request).wait(
        project_id=principal.project.id, approval_id=approval_id, timeout=timeout
    )
    return approval_out(a)


@approvals.post(
    "/v1/approvals/{approval_id}/decision",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404, 409, 422, 503),
    summary="Approve or reject (people with the approver role or more)",
)
async def decide(
    approval_id: ApprovalId,
    body: DecisionIn,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, requires(Permission.DECIDE)],
) -> ApprovalOut:
    """The first decision wins: a request already decided (or expired) answers 409, as does an
    ``arguments_hash`` that is not the request's (its arguments changed since you saw them). A
    request may need more than the approver role (its policy), and with four eyes the person who
    started the run cannot approve it (403). A rejection needs a reason."""
    assert principal.user is not None and principal.role is not None
    decider = ap.Decider(principal.user.id, principal.user.login, principal.role)
    a = await run_in_threadpool(
        lambda: ap.decide(
            store,
            project_id=principal.project.id,
            approval_id=approval_id,
            decision=body.decision,
            reason=body.reason,
            arguments_hash=body.arguments_hash,
            decider=decider,
        )
    )
    _waiters(request).notify(a.id)
    return approval_out(a)


@fast.post(
    "/v1/approvals/{approval_id}/claim",
    body=ClaimIn,
    response_model=ApprovalOut,
    status_code=200,
    permission=Permission.AGENT,
    responses=_AGENT_PROBLEMS,
    summary="Take the one-time grant to run an approved action (agents)",
    tags=["approvals"],
    path_params={"approval_id": ID_PARAM},
    on_loop=False,
)
def claim(state: Any, project: Project, body: ClaimIn, params: dict[str, str], wait: bool) -> Answer:
    """Approved and not claimed before, with the hash of exactly the approved arguments: the
    request becomes ``claimed`` and the action may run, once. Anything else is 409."""
    a = ap.claim(
        state.store,
        project_id=project.id,
        approval_id=params["approval_id"],
        arguments_hash=body.arguments_hash,
    )
    return approval_json(a)


@fast.post(
    "/v1/approvals/{approval_id}/outcome",
    body=OutcomeIn,
    response_model=ApprovalOut,
    status_code=200,
    permission=Permission.AGENT,
    responses=_AGENT_PROBLEMS,
    summary="Report that a claimed action ran or failed (agents)",
    tags=["approvals"],
    path_params={"approval_id": ID_PARAM},
    on_loop=False,
)
def outcome(state: Any, project: Project, body: OutcomeIn, params: dict[str, str], wait: bool) -> Answer:
    a = ap.complete(
        state.store,
        project_id=project.id,
        approval_id=params["approval_id"],
        outcome=body.outcome,
        error=body.error.model_dump() if body.error else None,
    )
    return approval_json(a)


@approvals.post(
    "/v1/approvals/{approval_id}/resolution",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404, 409, 422, 503),
    summary="Resolve a claimed action whose agent never reported (people)",
)
async def resolve(
    approval_id: ApprovalId,
    body: ResolutionIn,
    store: StoreDep,
    principal: Annotated[Principal, requires(Permission.DECIDE)],
) -> ApprovalOut:
    """An agent that claimed its grant and died before reporting leaves the request ``claimed``:
    whether the action ran is unknown, and nothing retries it. A person who checked (with the
    request's role) records it as ``executed`` or ``failed``, with what they found. 409 unless
    the request is ``claimed``."""
    assert principal.user is not None and principal.role is not None
    person = ap.Decider(principal.user.id, principal.user.login, principal.role)
    a = await run_in_threadpool(
        lambda: ap.complete(
            store,
            project_id=principal.project.id,
            approval_id=approval_id,
            outcome=body.outcome,
            error={"type": "resolved", "message": body.reason} if body.outcome == "failed" else None,
            by=person,
            reason=body.reason,
        )
    )
    return approval_out(a)


@approvals.post(
    "/v1/approvals/{approval_id}/cancel",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404, 409, 422, 503),
    summary="Withdraw a request not yet decided, or approved and not claimed (agents)",
)
async def cancel(
    approval_id: ApprovalId,
    body: CancelIn,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, requires(Permission.AGENT)],
) -> ApprovalOut:
    a = await run_in_threadpool(
        lambda: ap.cancel(store, project_id=principal.project.id, approval_id=approval_id, reason=body.reason)
    )
    _waiters(request).notify(a.id)
    return approval_out(a)
