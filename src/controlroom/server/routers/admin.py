"""Administering a project over HTTP: its API keys, its people and their roles, its approval
policies and its webhooks. Reading needs any key or role; changing needs an admin key or a person
with the admin role. Everything acts on the caller's project only: another project's key, user or
webhook is not found."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from controlroom.accounts import members
from controlroom.accounts import projects as pr
from controlroom.accounts.users import Member, Role, roles_of
from controlroom.accounts.users import members as project_members
from controlroom.approvals import policies
from controlroom.events import format_ts
from controlroom.notifications import webhooks as wh
from controlroom.server.admin_schemas import (
    LOGIN_PATTERN,
    DeliveryList,
    DeliveryOut,
    KeyIn,
    KeyList,
    KeyOut,
    NewKeyOut,
    NewWebhookOut,
    PolicyIn,
    PolicyList,
    PolicyOut,
    UserIn,
    UserList,
    UserOut,
    UserPatch,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookTestOut,
)
from controlroom.server.auth import Permission, Principal, requires
from controlroom.server.deps import KeyCache, SettingsDep, StoreDep, in_read
from controlroom.server.schemas import problems

router = APIRouter(tags=["admin"])
Reader = Annotated[Principal, requires(Permission.READ)]
Admin = Annotated[Principal, requires(Permission.ADMIN)]
KeyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The key's id (see GET /v1/keys)")]
Login = Annotated[str, Path(pattern=LOGIN_PATTERN, description="The user's login (case-insensitive)")]
Action = Annotated[
    str, Path(min_length=1, max_length=256, pattern="^[^\\x00]+$", description="The action the policy is for")
]
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The webhook's id (see GET /v1/webhooks)")]


def _is_admin(principal: Principal) -> bool:
    return principal.key_scope == "admin" or principal.role is Role.admin


# -- keys ------------------------------------------------------------------------------------------


def _key_out(k: dict[str, Any]) -> KeyOut:
    return KeyOut(
        id=k["id"],
        name=k["name"],
        prefix=k["prefix"],
        scope=k["scope"],
        created_at=format_ts(k["created_at"]) or "",
        revoked_at=format_ts(k["revoked_at"]),
        last_used_at=format_ts(k["last_used_at"]),
    )


@router.get(
    "/v1/keys", response_model=KeyList, responses=problems(400, 401, 403), summary="The project's API keys"
)
async def list_keys(principal: Reader, store: StoreDep) -> KeyList:
    """Every key, revoked ones too, oldest first: its id, label, first 10 characters, scope and
    when it was last used (to within a minute or so) — never the key itself, which is shown once,
    when it is created."""
    keys = await in_read(store, pr.list_keys, project=principal.project)
    return KeyList(keys=[_key_out(k) for k in keys])


@router.post(
    "/v1/keys",
    response_model=NewKeyOut,
    status_code=201,
    responses=problems(400, 401, 403, 422),
    summary="Create an API key (shown once)",
)
async def create_key(body: KeyIn, principal: Admin, store: StoreDep) -> NewKeyOut:
    """An ``agent`` key sends events, reads, reserves budget and requests approvals; an ``admin``
    key may also manage the project. The answer is the only time the key is shown."""

    def write() -> tuple[pr.NewKey, dict[str, Any]]:
        with store.write() as conn:
            new = pr.create_key(conn, project=principal.project, name=body.name, scope=body.scope)
            row = next(k for k in pr.list_keys(conn, project=principal.project) if k["id"] == new.id)
            return new, row

    new, row = await run_in_threadpool(write)
    return NewKeyOut(**_key_out(row).model_dump(), key=new.key)


@router.delete(
    "/v1/keys/{key_id}",
    status_code=204,
    responses=problems(
        400,
        401,
        403,
        404,
        409,
        s404="not_found: no active key with this id in the project",
        s409="conflict: the key making the request cannot revoke itself",
    ),
    summary="Revoke an API key",
)
async def revoke_key(key_id: KeyId, request: Request, principal: Admin, store: StoreDep) -> None:
    """The key stops working at once on this server process (within 30 seconds on others, which
    cache keys). A key cannot revoke itself; revoking the last admin key is allowed (people with the
    admin role, and the CLI, still manage the project)."""
    caller = None
    if principal.key_scope is not None:
        caller = request.headers.get("authorization", "").partition(" ")[2].strip()

    def write() -> str:
        with store.write() as conn:
            return pr.revoke_key(conn, key_id=key_id, project=principal.project, caller=caller)

    revoked = await run_in_threadpool(write)
    cache: KeyCache = request.app.state.keys
    cache.forget(revoked)


# -- people ----------------------------------------------------------------------------------------


def _user_out(m: Member) -> UserOut:
    return UserOut(
        login=m.user.login,
        name=m.user.name,
        role=m.role.name,
        disabled=not m.user.active,
        created_at=format_ts(m.user.created_at) or "",
    )


@router.get(
    "/v1/users", response_model=UserList, responses=problems(400, 401, 403), summary="The project's people"
)
async def list_users(principal: Reader, store: StoreDep) -> UserList:
    """The project's members by login, with their role in it and whether they are disabled."""
    found = await in_read(store, project_members, project=principal.project)
    return UserList(users=[_user_out(m) for m in found])


@router.post(
    "/v1/users",
    response_model=UserOut,
    status_code=201,
    responses=problems(400, 401, 403, 409, 422, s409="conflict: a user with this login exists"),
    summary="Create a user with a role in the project",
)
async def create_user(body: UserIn, principal: Admin, store: StoreDep) -> UserOut:
    """A new person, who can log in at once with ``password`` (at least 12 characters; never
    echoed). Logins are global: an existing login is a conflict — give that user a role with
    ``PATCH /v1/users/{login}`` instead."""

    def write() -> Member:
        with store.write() as conn:
            return members.add(
                conn,
                project=principal.project,
                login=body.login,
                password=body.password,
                role=Role[body.role],
                name=body.name,
            )

    return _user_out(await run_in_threadpool(write))


@router.patch(
    "/v1/users/{login}",
    response_model=UserOut,
    responses=problems(
        400,
        401,
        403,
        404,
        409,
        422,
        s403="forbidden: not an admin, or the user is also in projects you do not administer (disabling "
        "them or setting their password would change those: use the CLI)",
        s404="not_found: no such user, or not in this project and no role given",
        s409="conflict: the project would be left without an active admin",
    ),
    summary="Change a user's role, disable or enable them, or set their password",
)
async def change_user(login: Login, body: UserPatch, principal: Admin, store: StoreDep) -> UserOut:
    """Each field is optional. A ``role`` adds a user who is not in the project yet. A role
    change, disabling and a new password end the user's sessions at once. Refused (409) when it
    would leave a project without an active admin."""

    def write() -> Member:
        with store.write() as conn:
            if principal.user is not None:
                admin_of = {
                    p for p, r in roles_of(conn, user_id=principal.user.id).items() if r is Role.admin
                }
            else:
                admin_of = {principal.project.id}
            return members.change(
                conn,
                project=principal.project,
                login=login,
                admin_of=admin_of,
                role=None if body.role is None else Role[body.role],
                disabled=body.disabled,
                password=body.password,
            )

    return _user_out(await run_in_threadpool(write))


@router.delete(
    "/v1/users/{login}",
    status_code=204,
    responses=problems(
        400,
        401,
        403,
        404,
        409,
        s404="not_found: no such user in this project",
        s409="conflict: the project would be left without an active admin",
    ),
    summary="Take a user out of the project",
)
async def remove_user(login: Login, principal: Admin, store: StoreDep) -> None:
    """Their role in the project goes and their sessions end; the user, their history and their
    other projects stay."""

    def write() -> None:
        with store.write() as conn:
            members.remove(conn, project=principal.project, login=login)

    await run_in_threadpool(write)


# -- approval policies -----------------------------------------------------------------------------


def _policy_out(p: policies.Policy) -> PolicyOut:
    return PolicyOut(
        action=p.action,
        min_role=p.min_role.name,
        four_eyes=p.four_eyes,
        expires_after_seconds=p.expires_after_seconds,
        notify=None if p.notify is None else list(p.notify),
    )


@router.get(
    "/v1/approval-policies",
    response_model=PolicyList,
    responses=problems(400, 401, 403),
    summary="The project's approval policies",
)
async def list_policies(principal: Reader, store: StoreDep) -> PolicyList:
    """One per action that has one, by action. An action without a policy needs an approver, has
    no four eyes, never expires and notifies every webhook."""
    found = await in_read(store, policies.list_policies, project_id=principal.project.id)
    return PolicyList(policies=[_policy_out(p) for p in found])


@router.put(
    "/v1/approval-policies/{action:path}",
    response_model=PolicyOut,
    responses=problems(
        400, 401, 403, 422, s422="validation_failed: a field, or notify names no webhook of the project"
    ),
    summary="Set the approval policy of an action",
)
async def put_policy(action: Action, body: PolicyIn, principal: Admin, store: StoreDep) -> PolicyOut:
    """Replaces the action's policy (omitted fields take their defaults). It applies to requests
    made from now on; ``notify`` also to the events of earlier requests not yet told."""
    policy = policies.Policy(
        action,
        Role[body.min_role],
        body.four_eyes,
        body.expires_after_seconds,
        None if body.notify is None else tuple(body.notify),
    )

    def write() -> policies.Policy:
        with store.write() as conn:
            return policies.set_policy(store, conn, project_id=principal.project.id, policy=policy)

    return _policy_out(await run_in_threadpool(write))


@router.delete(
    "/v1/approval-policies/{action:path}",
    status_code=204,
    responses=problems(400, 401, 403, 404, s404="not_found: the action has no policy"),
    summary="Remove the approval policy of an action (back to the defaults)",
)
async def delete_policy(action: Action, principal: Admin, store: StoreDep) -> None:
    def write() -> None:
        with store.write() as conn:
            policies.delete_policy(conn, project_id=principal.project.id, action=action)

    await run_in_threadpool(write)


# -- webhooks --------------------------------------------------------------------------------------


def _webhook_out(h: wh.Webhook, *, whole_url: bool) -> dict[str, Any]:
    return {
        "id": h.id,
        "url": h.url if whole_url else wh.redacted_url(h.url),
        "format": h.format,
        "event_types": list(h.event_types),
        "active": h.disabled_at is None,
        "created_at": format_ts(h.created_at) or "",
        "disabled_at": format_ts(h.disabled_at),
    }


@router.get(
    "/v1/webhooks",
    response_model=WebhookList,
    responses=problems(400, 401, 403),
    summary="The project's webhooks (without their secrets)",
)
async def list_webhooks(principal: Reader, store: StoreDep) -> WebhookList:
    """Disabled ones too, oldest first. The signing secret is never shown again; the URL is shown
    whole to admins only (a Slack URL's path is a credential)."""
    found = await in_read(store, wh.list_webhooks, project_id=principal.project.id)
    whole = _is_admin(principal)
    return WebhookList(webhooks=[WebhookOut(**_webhook_out(h, whole_url=whole)) for h in found])


@router.post(
    "/v1/webhooks",
    response_model=NewWebhookOut,
    status_code=201,
    responses=problems(400, 401, 403, 422),
    summary="Add a webhook (its signing secret is shown once)",
)
async def create_webhook(body: WebhookIn, principal: Admin, store: StoreDep) -> NewWebhookOut:
    """The webhook receives the approval events it asks for (default: requested, decided,
    expired) of the actions whose policy notifies it (by default every action's), signed with
    the secret in this answer — the only time it is shown."""

    def write() -> wh.Webhook:
        with store.write() as conn:
            return wh.create_webhook(
                conn,
                project_id=principal.project.id,
                url=body.url,
                format=body.format,
                event_types=tuple(body.event_types),
            )

    hook = await run_in_threadpool(write)
    return NewWebhookOut(**_webhook_out(hook, whole_url=True), secret=hook.secret)


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    responses=problems(400, 401, 403, 404, s404="not_found: no active webhook with this id in the project"),
    summary="Disable a webhook",
)
async def disable_webhook(webhook_id: WebhookId, principal: Admin, store: StoreDep) -> None:
    """It receives nothing more: its pending deliveries are given up (they stay in its log)."""

    def write() -> None:
        with store.write() as conn:
            wh.disable_webhook(conn, project_id=principal.project.id, webhook_id=webhook_id)

    await run_in_threadpool(write)


def _delivery_out(d: wh.Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        state=d.state,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=format_ts(d.created_at) or "",
        next_attempt_at=format_ts(d.next_attempt_at) if d.state == "pending" else None,
        delivered_at=format_ts(d.delivered_at),
    )


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses=problems(400, 401, 403, 404, s404="not_found: no webhook with this id in the project"),
    summary="A webhook's delivery log, newest first",
)
async def list_deliveries(
    webhook_id: WebhookId,
    principal: Reader,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryList:
    """Each delivery's event, state, attempts, and the last attempt's status or error."""

    def read(conn: Any) -> list[wh.Delivery]:
        wh.get_webhook(conn, project_id=principal.project.id, webhook_id=webhook_id)
        return wh.deliveries(conn, project_id=principal.project.id, webhook_id=webhook_id, limit=limit)

    return DeliveryList(deliveries=[_delivery_out(d) for d in await in_read(store, read)])


@router.post(
    "/v1/webhooks/{webhook_id}/test",
    response_model=WebhookTestOut,
    responses=problems(
        400,
        401,
        403,
        404,
        409,
        s404="not_found: no webhook with this id in the project",
        s409="conflict: the webhook is disabled",
    ),
    summary="Send a webhook a signed test delivery now",
)
async def send_test_delivery(
    webhook_id: WebhookId, principal: Admin, store: StoreDep, settings: SettingsDep
) -> WebhookTestOut:
    """One ``webhook.test`` delivery in the webhook's format, signed like the others, sent at once
    (waiting at most 5 seconds for the receiver) and kept in its delivery log. The answer says
    whether it was delivered: a receiver that is down or answers an error is a 200 that says so."""
    result = await run_in_threadpool(
        lambda: wh.send_test(
            store,
            project_id=principal.project.id,
            project=principal.project.name,
            webhook_id=webhook_id,
            public_url=settings.base_url,
        )
    )
    return WebhookTestOut(
        delivery_id=result.delivery_id, delivered=result.delivered, status=result.status, error=result.error
    )
