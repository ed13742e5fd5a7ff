"""Approval policies, per project and action: the minimum role that may decide, four eyes (the
person who started the run may not approve it), an optional expiry, and who is notified (which of
the project's webhooks are told of the action's approval events). An action without a policy needs
an ``approver`` and notifies every webhook; an agent may ask for a stricter role than the policy,
never a weaker one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, null, select

from controlroom.accounts.users import Role
from controlroom.errors import NotFound, ValidationFailed
from controlroom.store import approvals as approval_rows
from controlroom.store.engine import Store
from controlroom.store.ledger import LedgerTx
from controlroom.store.tables import approval_policies, webhooks

MAX_EXPIRY_SECONDS = 365 * 86_400.0


@dataclass(frozen=True, slots=True)
class Policy:
    action: str
    min_role: Role = Role.approver
    four_eyes: bool = False
    expires_after_seconds: float | None = None
    notify: tuple[int, ...] | None = None
    """The webhooks (ids) told of this action's approval events; None: every webhook of the project."""


_POLICY = (
    approval_policies.c.action,
    approval_policies.c.min_role,
    approval_policies.c.four_eyes,
    approval_policies.c.expires_after_seconds,
    approval_policies.c.notify_webhooks,
)


def _policy(r: Any) -> Policy:
    notify = None if r.notify_webhooks is None else tuple(r.notify_webhooks)
    return Policy(r.action, Role[r.min_role], bool(r.four_eyes), r.expires_after_seconds, notify)


def get_policy(db: Connection | LedgerTx, *, project_id: int, action: str) -> Policy:
    """The action's policy (the default one if it has none); in a plain transaction or not."""
    row = approval_rows.policy(db, project_id=project_id, action=action)
    if row is None:
        return Policy(action)
    notify = None if row["notify_webhooks"] is None else tuple(row["notify_webhooks"])
    return Policy(action, Role[row["min_role"]], bool(row["four_eyes"]), row["expires_after_seconds"], notify)


def list_policies(conn: Connection, *, project_id: int) -> list[Policy]:
    rows = conn.execute(
        select(*_POLICY)
        .where(approval_policies.c.project_id == project_id)
        .order_by(approval_policies.c.action)
    ).all()
    return [_policy(r) for r in rows]


def set_policy(store: Store, conn: Connection, *, project_id: int, policy: Policy) -> Policy:
    if not policy.action or len(policy.action) > 256:
        raise ValidationFailed("action must be 1 to 256 characters", field="action")
    expiry = policy.expires_after_seconds
    if expiry is not None and not 0 < expiry <= MAX_EXPIRY_SECONDS:
        raise ValidationFailed(
            f"expires_after_seconds {expiry!r} must be more than 0 and at most a year",
            field="expires_after_seconds",
        )
    notify = None if policy.notify is None else sorted(set(policy.notify))
    if notify:
        known = set(
            conn.execute(
                select(webhooks.c.id).where(webhooks.c.project_id == project_id, webhooks.c.id.in_(notify))
            ).scalars()
        )
        unknown = [i for i in notify if i not in known]
        if unknown:
            raise ValidationFailed(
                f"notify names no webhook of this project: {', '.join(map(str, unknown))}", field="notify"
            )
    values = {
        "min_role": policy.min_role.name,
        "four_eyes": policy.four_eyes,
        "expires_after_seconds": expiry,
        "notify_webhooks": null() if notify is None else notify,
        "updated_at": time.time_ns(),
    }
    stmt = store.insert(approval_policies).values(project_id=project_id, action=policy.action, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["project_id", "action"], set_=values))
    return Policy(
        policy.action, policy.min_role, policy.four_eyes, expiry, None if notify is None else tuple(notify)
    )


def delete_policy(conn: Connection, *, project_id: int, action: str) -> None:
    n = conn.execute(
        delete(approval_policies).where(
            approval_policies.c.project_id == project_id, approval_policies.c.action == action
        )
    ).rowcount
    if n == 0:
        raise NotFound(f"no approval policy for action {action!r}")
