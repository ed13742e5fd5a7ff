"""Outgoing webhooks: configuration, what each event's delivery says, and delivering them.

A webhook receives the approval events it asks for (default: requested, decided, expired) as a
JSON document (``format="json"``) or as a Slack incoming-webhook message (``format="slack"``)
with a link to the request in the dashboard. Deliveries are enqueued once per (webhook, event)
from the run log, then sent by the worker: a 2xx answer delivers; anything else (an error status,
a refused connection, a timeout) is retried after 10 s, 30 s, 2 min, 10 min, 30 min and then
hourly, up to :data:`MAX_ATTEMPTS` attempts. Every attempt's outcome is kept on the delivery row.
"""

from __future__ import annotations

import http.client
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Connection, select, update

from controlroom import events as ev
from controlroom.approvals.requests import Approval
from controlroom.errors import NotFound, ValidationFailed
from controlroom.events import format_ts
from controlroom.notifications import signing
from controlroom.store.engine import Store
from controlroom.store.tables import webhook_deliveries, webhooks

FORMATS = ("json", "slack")
DEFAULT_EVENTS = (ev.APPROVAL_REQUESTED, ev.APPROVAL_DECIDED, ev.APPROVAL_EXPIRED)
BACKOFF_SECONDS = (10, 30, 120, 600, 1800, 3600, 3600, 3600)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
TIMEOUT_SECONDS = 10.0
MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    project_id: int
    url: str
    format: str
    secret: str
    event_types: tuple[str, ...]
    disabled_at: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: int
    last_status: int | None
    last_error: str | None
    created_at: int
    delivered_at: int | None


def _webhook(r: Any) -> Webhook:
    return Webhook(r.id, r.project_id, r.url, r.format, r.secret, tuple(r.event_types), r.disabled_at)


def create_webhook(
    conn: Connection,
    *,
    project_id: int,
    url: str,
    format: str = "json",
    event_types: tuple[str, ...] = DEFAULT_EVENTS,
) -> Webhook:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"webhook url {url!r} must be an http:// or https:// URL", field="url")
    if format not in FORMATS:
        raise ValidationFailed(f"webhook format {format!r} must be json or slack", field="format")
    unknown = [t for t in event_types if t not in ev.APPROVAL_EVENT_TYPES]
    if unknown or not event_types:
        raise ValidationFailed(
            f"event_types must be approval events ({', '.join(ev.APPROVAL_EVENT_TYPES)}); not {unknown}",
            field="event_types",
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    wid = conn.execute(
        webhooks.insert()
        .values(
            project_id=project_id,
            url=url,
            format=format,
            secret=secret,
            event_types=list(event_types),
            created_at=time.time_ns(),
        )
        .returning(webhooks.c.id)
    ).scalar_one()
    return Webhook(wid, project_id, url, format, secret, tuple(event_types), None)


def list_webhooks(conn: Connection, *, project_id: int) -> list[Webhook]:
    rows = conn.execute(select(webhooks).where(webhooks.c.project_id == project_id).order_by(webhooks.c.id))
    return [_webhook(r) for r in rows]


def disable_webhook(conn: Connection, *, project_id: int, webhook_id: int) -> None:
    n = conn.execute(
        update(webhooks)
        .where(
            webhooks.c.id == webhook_id, webhooks.c.project_id == project_id, webhooks.c.disabled_at.is_(None)
        )
        .values(disabled_at=time.time_ns())
    ).rowcount
    if n == 0:
        raise NotFound(f"no active webhook {webhook_id}")


def deliveries(conn: Connection, *, project_id: int, webhook_id: int, limit: int = 100) -> list[Delivery]:
    """A webhook's delivery log, newest first."""
    q = (
        select(webhook_deliveries)
        .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
        .where(webhooks.c.project_id == project_id, webhook_deliveries.c.webhook_id == webhook_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    return [
        Delivery(
            r.id,
            r.webhook_id,
            r.event_id,
            r.event_type,
            r.state,
            r.attempts,
            r.next_attempt_at,
            r.last_status,
            r.last_error,
            r.created_at,
            r.delivered_at,
        )
        for r in conn.execute(q)
    ]


# -- what a delivery says --------------------------------------------------------------------------


def request_link(public_url: str, approval_id: str) -> str:
    return f"{public_url.rstrip('/')}/approvals/view/?id={approval_id}"


def payload(
    event_type: str, event_id: str, ts: int, approval: Approval, *, project: str, public_url: str
) -> dict[str, Any]:
    return {
        "type": event_type,
        "event_id": event_id,
        "occurred_at": format_ts(ts),
        "project": project,
        "approval": {
            "id": approval.id,
            "run_id": approval.run_id,
            "agent": approval.agent,
            "action": approval.action,
            "status": approval.status,
            "min_role": approval.min_role.name,
            "requested_at": format_ts(approval.requested_at),
            "expires_at": format_ts(approval.expires_at),
            "decided_by": approval.decided_by,
            "reason": approval.reason,
        },
        "url": request_link(public_url, approval.id),
    }


_VERBS = {
    ev.APPROVAL_REQUESTED: "needs approval",
    ev.APPROVAL_DECIDED: "was {status} by {decided_by}",
    ev.APPROVAL_EXPIRED: "expired without a decision",
    ev.APPROVAL_CANCELLED: "was cancelled",
    ev.APPROVAL_CLAIMED: "is running (approved)",
    ev.APPROVAL_EXECUTED: "ran",
    ev.APPROVAL_FAILED: "failed",
}


def slack_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message for a delivery's document."""
    a = doc["approval"]
    verb = _VERBS[doc["type"]].format(status=a["status"], decided_by=a["decided_by"])
    text = f"[{doc['project']}] `{a['action']}` of agent {a['agent'] or '(unnamed)'} {verb}"
    if a["reason"]:
        text += f": {a['reason']}"
    return {
        "text": f"{text} — {doc['url']}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{text}\n<{doc['url']}|Open the request>"},
            }
        ],
    }


def enqueue(
    store: Store,
    conn: Connection,
    *,
    project_id: int,
    event_type: str,
    event_id: str,
    document: dict[str, Any],
    now: int,
) -> int:
    """One pending delivery per active webhook of the project that wants ``event_type``; an event
    enqueued again (a replay) adds nothing. Returns how many were added."""
    added = 0
    for hook in list_webhooks(conn, project_id=project_id):
        if hook.disabled_at is not None or event_type not in hook.event_types:
            continue
        body = slack_message(document) if hook.format == "slack" else document
        stmt = store.insert(webhook_deliveries).values(
            webhook_id=hook.id,
            event_id=event_id,
            event_type=event_type,
            payload=body,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        inserted = conn.execute(stmt.on_conflict_do_nothing().returning(webhook_deliveries.c.id)).first()
        added += inserted is not None
    return added


# -- delivering ------------------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request("POST", path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        response = conn.getresponse()
        response.read(65_536)
        return response.status
    finally:
        conn.close()


def _attempt(hook: Webhook, d: Any, timeout: float) -> tuple[int | None, str | None]:
    body = orjson.dumps(d.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "controlroom-webhooks",
        "Controlroom-Event": d.event_type,
        "Controlroom-Delivery": str(d.id),
        **signing.headers(hook.secret, body),
    }
    try:
        status = _post(hook.url, body, headers, timeout)
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}"[:MAX_ERROR]
    return status, None if 200 <= status < 300 else f"HTTP {status}"


def deliver_due(
    store: Store, *, now: int | None = None, limit: int = 100, timeout: float = TIMEOUT_SECONDS
) -> int:
    """Send the deliveries that are due (in parallel, outside any transaction) and record each
    attempt. Returns how many attempts were made. Run by one worker at a time."""
    now = time.time_ns() if now is None else now
    with store.read() as conn:
        due = conn.execute(
            select(webhook_deliveries, webhooks.c.id.label("hook_id"))
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(webhook_deliveries.c.state == "pending", webhook_deliveries.c.next_attempt_at <= now)
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        ).all()
        hooks = {
            h.id: h
            for h in (
                _webhook(r)
                for r in conn.execute(select(webhooks).where(webhooks.c.id.in_({d.hook_id for d in due})))
            )
        }
    if not due:
        return 0
    with ThreadPoolExecutor(max_workers=min(8, len(due))) as pool:
        results = list(pool.map(lambda d: _attempt(hooks[d.webhook_id], d, timeout), due))
    with store.write() as conn:
        for d, (status, error) in zip(due, results, strict=True):
            attempts = d.attempts + 1
            if error is None:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": now}
            elif attempts >= MAX_ATTEMPTS:
                values = {"state": "failed"}
            else:
                values = {"next_attempt_at": now + BACKOFF_SECONDS[attempts - 1] * 10**9}
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == d.id)
                .values(attempts=attempts, last_status=status, last_error=error, **values)
            )
    return len(due)
