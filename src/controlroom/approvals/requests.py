"""Approval requests and their transitions.

    pending ──▶ approved ──▶ claimed ──▶ executed
       │            │           │    └─▶ failed
       ├──▶ rejected│           └─ (the agent died: a person resolves it as executed or failed)
       ├──▶ expired └──▶ cancelled
       └──▶ cancelled

Every transition is one compare-and-set UPDATE (``WHERE status = <the state it leaves>``) and its
``approval.*`` event in the run log, in one durable transaction: the first decision wins and a late
one gets 409; a grant is claimed once. Nothing moves a request to ``approved`` but a person's
decision: not an agent, not a timeout (expiry ends in ``expired``), not a default. The transitions
are on agents' paths (asking, claiming, reporting) and on a waiting agent's (a decision): their
transactions are plain SQL (``store.approvals``, ``Store.plain_write``); reads use SQLAlchemy.

A request is bound to the hash of (run, action, arguments) and found again by (run, idempotency
key, that hash): an agent that asks again after a restart gets the same request, and an agent that
asks with changed arguments gets a new request — a changed argument never runs under an old
approval.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from controlroom import events as ev
from controlroom.accounts.users import Role
from controlroom.approvals.binding import arguments_hash
from controlroom.approvals.policies import get_policy
from controlroom.errors import Conflict, Forbidden, InvalidQuery, NotFound, ValidationFailed
from controlroom.store import approvals as rows
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.ingest import event_row
from controlroom.store.ledger import LedgerTx
from controlroom.store.tables import approvals, users

STATUSES = ("pending", "approved", "rejected", "expired", "cancelled", "claimed", "executed", "failed")
OPEN = ("pending",)
MAX_REASON = 4096


@dataclass(frozen=True, slots=True)
class Decider:
    """A person deciding, as their session says at that moment."""

    user_id: int
    login: str
    role: Role


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    project_id: int
    run_id: str
    span_id: str | None
    agent: str
    action: str
    arguments: Any
    arguments_hash: str
    idempotency_key: str
    started_by: str | None
    status: str
    min_role: Role
    four_eyes: bool
    requested_at: int
    expires_at: int | None
    decided_at: int | None
    decided_by: str | None  # the decider's login
    decided_role: Role | None
    reason: str | None
    claimed_at: int | None
    completed_at: int | None
    error: dict[str, Any] | None


_COLUMNS = [approvals.c[name] for name in rows.COLUMNS]


def _approval(m: Mapping[Any, Any]) -> Approval:
    """A request from its row (``store.approvals``' shape: ``decider`` is the login)."""
    return Approval(
        id=m["id"],
        project_id=m["project_id"],
        run_id=m["run_id"],
        span_id=m["span_id"],
        agent=m["agent"],
        action=m["action"],
        arguments=m["arguments"],
        arguments_hash=m["arguments_hash"],
        idempotency_key=m["idempotency_key"],
        started_by=m["started_by"],
        status=m["status"],
        min_role=Role[m["min_role"]],
        four_eyes=bool(m["four_eyes"]),
        requested_at=m["requested_at"],
        expires_at=m["expires_at"],
        decided_at=m["decided_at"],
        decided_by=m["decider"],
        decided_role=Role[m["decided_role"]] if m["decided_role"] else None,
        reason=m["reason"],
        claimed_at=m["claimed_at"],
        completed_at=m["completed_at"],
        error=m["error"],
    )


def _select() -> Any:
    return select(*_COLUMNS, users.c.login.label("decider")).outerjoin(
        users, users.c.id == approvals.c.decided_by
    )


def get(conn: Connection, *, project_id: int, approval_id: str) -> Approval:
    """One request of the project; NotFound for an unknown id or another project's."""
    row = conn.execute(
        _select().where(approvals.c.id == approval_id, approvals.c.project_id == project_id)
    ).first()
    if row is None:
        raise NotFound(f"no approval request {approval_id!r}")
    return _approval(row._mapping)


def queue(
    conn: Connection,
    *,
    project_id: int,
    status: str | tuple[str, ...] | None = None,
    run_id: str | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Requests with ``status`` (one, or any of several), pending ones alone oldest first (the
    queue: the longest waiting on top), others newest first."""
    statuses = (status,) if isinstance(status, str) else tuple(status or ())
    for s in statuses:
        if s not in STATUSES:
            raise InvalidQuery(f"status {s!r} is not one of {', '.join(STATUSES)}", parameter="status")
    q = _select().where(approvals.c.project_id == project_id)
    if statuses:
        q = q.where(approvals.c.status.in_(statuses))
    if run_id is not None:
        q = q.where(approvals.c.run_id == run_id)
    oldest_first = statuses == ("pending",)
    order = approvals.c.requested_at.asc() if oldest_first else approvals.c.requested_at.desc()
    return [_approval(r._mapping) for r in conn.execute(q.order_by(order, approvals.c.id).limit(limit))]


def pending(conn: Connection, *, project_id: int) -> tuple[int, int | None]:
    """How many requests wait for a decision, and when the longest-waiting one was asked (one
    index range: the queue's)."""
    found = conn.execute(
        select(func.count(), func.min(approvals.c.requested_at)).where(
            approvals.c.project_id == project_id, approvals.c.status == "pending"
        )
    ).one()
    return int(found[0]), found[1]


def _locked(tx: LedgerTx, *, project_id: int, approval_id: str) -> Approval:
    """:func:`get` in a transition's transaction, the row locked until it commits."""
    row = rows.locked(tx, project_id=project_id, approval_id=approval_id)
    if row is None:
        raise NotFound(f"no approval request {approval_id!r}")
    return _approval(row)


def _log(tx: LedgerTx, a: Approval, etype: str, now: int, **body: Any) -> None:
    event = ev.server_event(
        etype,
        id=f"{a.id}-{etype.removeprefix('approval.')}",
        run_id=a.run_id,
        ts=now,
        body={"approval_id": a.id, **body},
    )
    log.append_in(tx, [event_row(a.project_id, event, received_at=now)])


def request(
    store: Store,
    *,
    project_id: int,
    run_id: str,
    action: str,
    arguments: Any,
    idempotency_key: str,
    agent: str = "",
    span_id: str | None = None,
    started_by: str | None = None,
    min_role: Role | None = None,
    now: int | None = None,
) -> tuple[Approval, bool]:
    """Record a pending request, or find the one with the same binding. Returns it and whether it
    is new. The effective minimum role is the stricter of the action's policy and ``min_role``."""
    now = time.time_ns() if now is None else now
    _check_arguments(arguments)
    try:
        digest = arguments_hash(run_id=run_id, action=action, arguments=arguments)
    except ValueError:  # NaN or an infinity, which orjson wrote as null above
        raise ValidationFailed(
            "arguments: NaN and infinite numbers are not JSON", field="arguments"
        ) from None
    with store.plain_write() as tx:
        policy = get_policy(tx, project_id=project_id, action=action)
        role = max(policy.min_role, min_role or Role.viewer)
        expires = (
            None if policy.expires_after_seconds is None else now + int(policy.expires_after_seconds * 1e9)
        )
        row = {
            "id": secrets.token_hex(16),
            "project_id": project_id,
            "run_id": run_id,
            "span_id": span_id,
            "agent": agent,
            "action": action,
            "arguments": arguments,
            "arguments_hash": digest,
            "idempotency_key": idempotency_key,
            "started_by": started_by,
            "status": "pending",
            "min_role": role.name,
            "four_eyes": policy.four_eyes,
            "requested_at": now,
            "expires_at": expires,
        }
        if not rows.insert(tx, row):  # asked before (or by a concurrent twin): that request
            found = rows.bound(
                tx,
                project_id=project_id,
                run_id=run_id,
                idempotency_key=idempotency_key,
                arguments_hash=digest,
            )
            assert found is not None, "an insert refused for a binding that is not there"
            return _approval(found), False
        a = _approval({**dict.fromkeys(rows.COLUMNS), **row, "decider": None})
        _log(
            tx,
            a,
            ev.APPROVAL_REQUESTED,
            now,
            action=action,
            arguments_hash=digest,
            idempotency_key=idempotency_key,
            span_id=span_id,
            min_role=role.name,
            four_eyes=policy.four_eyes,
            expires_at=expires,
        )
        return a, True


MAX_ARGUMENTS_BYTES = 1_000_000


def _check_arguments(arguments: Any) -> None:
    """Arguments the store can keep exactly (JSON, integers within 64 bits, no NUL), or 422."""
    try:
        encoded = orjson.dumps(arguments)
    except TypeError as e:
        raise ValidationFailed(f"arguments cannot be stored as JSON: {e}", field="arguments") from None
    if b"\\u0000" in encoded:
        raise ValidationFailed("arguments: NUL characters (U+0000) are not allowed", field="arguments")
    if len(encoded) > MAX_ARGUMENTS_BYTES:
        raise ValidationFailed(
            f"arguments are larger than {MAX_ARGUMENTS_BYTES} bytes of JSON", field="arguments"
        )


def _move(
    tx: LedgerTx,
    a: Approval,
    *,
    from_: tuple[str, ...],
    to: str,
    decider: Decider | None = None,
    **values: Any,
) -> Approval:
    """The compare-and-set: ``a`` (read by :func:`_locked` in ``tx``) moves to ``to``, with
    ``values`` (columns that are also fields of Approval) and the ``decider``, only if it is still
    in one of ``from_``. Returns it as it now is."""
    columns = dict(values)
    if decider is not None:
        columns.update(decided_by=decider.user_id, decided_role=decider.role.name)
        values.update(decided_by=decider.login, decided_role=decider.role)
    if not rows.move(tx, a.id, from_=from_, to=to, values=columns):
        raise Conflict(
            f"approval request {a.id} is {a.status}, not {' or '.join(from_)}", status_now=a.status
        )
    return replace(a, status=to, **values)


def decide(
    store: Store,
    *,
    project_id: int,
    approval_id: str,
    decision: str,
    arguments_hash: str,
    decider: Decider,
    reason: str | None = None,
    now: int | None = None,
) -> Approval:
    """A person approves or rejects. 403 if their role is below the request's, or four eyes and
    they started the run; 409 if it was decided (or expired) first, or the arguments hash they echo
    is not the request's; 422 for a rejection without a reason."""
    now = time.time_ns() if now is None else now
    if decision not in ("approved", "rejected"):
        raise ValidationFailed(f"decision {decision!r} must be approved or rejected", field="decision")
    reason = (reason or "").strip() or None
    if decision == "rejected" and reason is None:
        raise ValidationFailed("a rejection needs a reason", field="reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise ValidationFailed(f"reason has at most {MAX_REASON} characters", field="reason")
    expired = False
    with store.plain_write() as tx:
        a = _locked(tx, project_id=project_id, approval_id=approval_id)
        if decider.role < a.min_role:
            raise Forbidden(
                f"deciding on {a.action!r} needs the {a.min_role.name} role; you are {decider.role.name}",
                needs_role=a.min_role.name,
            )
        if a.four_eyes and a.started_by is not None and a.started_by.lower() == decider.login.lower():
            raise Forbidden("four eyes: the person who started the run cannot approve it", reason="four_eyes")
        if a.status == "pending" and a.expires_at is not None and a.expires_at <= now:
            _expire(tx, a, now)  # committed below, then the decider hears of it
            expired = True
        else:
            if arguments_hash != a.arguments_hash:
                raise Conflict(
                    "the arguments changed since you saw them: look at the request again", status_now=a.status
                )
            return _decide(tx, a, decision, decider, reason, now)
    assert expired
    raise Conflict(f"approval request {approval_id} expired before the decision", status_now="expired")


def _decide(
    tx: LedgerTx, a: Approval, decision: str, decider: Decider, reason: str | None, now: int
) -> Approval:
    decided = _move(tx, a, from_=OPEN, to=decision, decider=decider, decided_at=now, reason=reason)
    person = {"user_id": decider.user_id, "user": decider.login, "role": decider.role.name}
    _log(tx, decided, ev.APPROVAL_DECIDED, now, decision=decision, reason=reason, **person)
    return decided


def claim(
    store: Store, *, project_id: int, approval_id: str, arguments_hash: str, now: int | None = None
) -> Approval:
    """The agent takes its one-time grant to run the approved action with exactly the approved
    arguments. 409 unless approved and not claimed before, or if the hash differs."""
    now = time.time_ns() if now is None else now
    with store.plain_write() as tx:
        a = _locked(tx, project_id=project_id, approval_id=approval_id)
        if arguments_hash != a.arguments_hash:
            raise Conflict("these arguments were not the ones approved", status_now=a.status)
        claimed = _move(tx, a, from_=("approved",), to="claimed", claimed_at=now)
        _log(tx, claimed, ev.APPROVAL_CLAIMED, now)
        return claimed


def complete(
    store: Store,
    *,
    project_id: int,
    approval_id: str,
    outcome: str,
    error: dict[str, str] | None = None,
    by: Decider | None = None,
    reason: str | None = None,
    now: int | None = None,
) -> Approval:
    """The claimed action ran (``executed``) or failed (``failed``): reported by the agent, or by a
    person resolving a claim whose agent never reported (``by``, with the ``reason``: what they
    found). A person needs the request's role, as for deciding it."""
    now = time.time_ns() if now is None else now
    if outcome not in ("executed", "failed"):
        raise ValidationFailed(f"outcome {outcome!r} must be executed or failed", field="outcome")
    reason = (reason or "").strip() or None
    if by is not None and reason is None:
        raise ValidationFailed("resolving a claimed action needs a reason: what you found", field="reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise ValidationFailed(f"reason has at most {MAX_REASON} characters", field="reason")
    with store.plain_write() as tx:
        a = _locked(tx, project_id=project_id, approval_id=approval_id)
        if by is not None and by.role < a.min_role:
            raise Forbidden(
                f"resolving {a.action!r} needs the {a.min_role.name} role; you are {by.role.name}",
                needs_role=a.min_role.name,
            )
        done = _move(tx, a, from_=("claimed",), to=outcome, completed_at=now, error=error)
        person = (
            {}
            if by is None
            else {"user_id": by.user_id, "user": by.login, "role": by.role.name, "reason": reason}
        )
        extra = {"error": error} if outcome == "failed" and error else {}
        _log(
            tx,
            done,
            ev.APPROVAL_EXECUTED if outcome == "executed" else ev.APPROVAL_FAILED,
            now,
            **person,
            **extra,
        )
        return done


def cancel(
    store: Store, *, project_id: int, approval_id: str, by: Decider | None = None, reason: str | None = None
) -> Approval:
    """Withdraw a request nobody decided yet (or an approval not yet claimed)."""
    now = time.time_ns()
    with store.plain_write() as tx:
        a = _locked(tx, project_id=project_id, approval_id=approval_id)
        done = _move(tx, a, from_=("pending", "approved"), to="cancelled", completed_at=now)
        person = {} if by is None else {"user_id": by.user_id, "user": by.login, "role": by.role.name}
        _log(tx, done, ev.APPROVAL_CANCELLED, now, reason=reason, **person)
        return done


def _expire(tx: LedgerTx, a: Approval, now: int) -> None:
    done = _move(tx, a, from_=OPEN, to="expired", completed_at=now)
    _log(tx, done, ev.APPROVAL_EXPIRED, now)


def expire_due(store: Store, *, now: int | None = None, limit: int = 500) -> int:
    """Move pending requests past their expiry to ``expired`` (never to approved); returns how many."""
    now = time.time_ns() if now is None else now
    with store.read() as conn:
        due = conn.execute(
            select(approvals.c.id, approvals.c.project_id)
            .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
            .order_by(approvals.c.expires_at)
            .limit(limit)
        ).all()
    n = 0
    for approval_id, project_id in due:
        with store.plain_write() as tx:
            try:
                _expire(tx, _locked(tx, project_id=project_id, approval_id=approval_id), now)
                n += 1
            except Conflict:  # decided meanwhile: the decision stands
                pass
    return n
