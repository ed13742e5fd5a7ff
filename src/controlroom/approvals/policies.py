"""Approval policies, per project and action: the minimum role that may decide, four eyes (the
person who started the run may not approve it), and an optional expiry. An action without a policy
needs an ``approver``; an agent may ask for a stricter role than the policy, never a weaker one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from controlroom.accounts.users import Role
from controlroom.errors import NotFound, ValidationFailed
from controlroom.store import approvals as approval_rows
from controlroom.store.engine import Store
from controlroom.store.ledger import LedgerTx
from controlroom.store.tables import approval_policies

MAX_EXPIRY_SECONDS = 365 * 86_400.0


@dataclass(frozen=True, slots=True)
class Policy:
    action: str
    min_role: Role = Role.approver
    four_eyes: bool = False
    expires_after_seconds: float | None = None


def get_policy(db: Connection | LedgerTx, *, project_id: int, action: str) -> Policy:
    """The action's policy (the default one if it has none); in a plain transaction or not."""
    row = approval_rows.policy(db, project_id=project_id, action=action)
    if row is None:
        return Policy(action)
    return Policy(action, Role[row["min_role"]], bool(row["four_eyes"]), row["expires_after_seconds"])


def list_policies(conn: Connection, *, project_id: int) -> list[Policy]:
    rows = conn.execute(
        select(
            approval_policies.c.action,
            approval_policies.c.min_role,
            approval_policies.c.four_eyes,
            approval_policies.c.expires_after_seconds,
        )
        .where(approval_policies.c.project_id == project_id)
        .order_by(approval_policies.c.action)
    ).all()
    return [Policy(r.action, Role[r.min_role], bool(r.four_eyes), r.expires_after_seconds) for r in rows]


def set_policy(store: Store, conn: Connection, *, project_id: int, policy: Policy) -> Policy:
    if not policy.action or len(policy.action) > 256:
        raise ValidationFailed("action must be 1 to 256 characters", field="action")
    expiry = policy.expires_after_seconds
    if expiry is not None and not 0 < expiry <= MAX_EXPIRY_SECONDS:
        raise ValidationFailed(
            f"expires_after_seconds {expiry!r} must be more than 0 and at most a year",
            field="expires_after_seconds",
        )
    values = {
        "min_role": policy.min_role.name,
        "four_eyes": policy.four_eyes,
        "expires_after_seconds": expiry,
        "updated_at": time.time_ns(),
    }
    stmt = store.insert(approval_policies).values(project_id=project_id, action=policy.action, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["project_id", "action"], set_=values))
    return policy


def delete_policy(conn: Connection, *, project_id: int, action: str) -> None:
    n = conn.execute(
        delete(approval_policies).where(
            approval_policies.c.project_id == project_id, approval_policies.c.action == action
        )
    ).rowcount
    if n == 0:
        raise NotFound(f"no approval policy for action {action!r}")
