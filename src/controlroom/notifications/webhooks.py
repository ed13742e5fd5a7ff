"""Outgoing webhooks: configuration, what each event's delivery says, and delivering them.

A webhook receives the approval events it asks for (default: requested, decided, expired) as a
JSON document (``format="json"``) or as a Slack incoming-webhook message (``format="slack"``)
with a link to the request in the dashboard. Deliveries are enqueued once per (webhook, event)
from the run log, then sent by the worker: a 2xx answer delivers; anything else (an error status,
a refused connection, a timeout) is retried after 10 s, 30 s, 2 min, 10 min, 30 min and then
hourly, up to :data:`MAX_ATTEMPTS` attempts. Every attempt's outcome is kept on the delivery row.
Which webhooks hear of an action's events is the action's approval policy's (``notify``).

An admin can also send a webhook one test delivery (``webhook.test``) at once, to see that the
receiver gets it and verifies its signature; it is logged like the others and never retried.
"""

from __future__ import annotations

import http.client
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Connection, select, update

from controlroom import events as ev
from controlroom.approvals.requests import Approval
from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.events import format_ts
from controlroom.notifications import signing
from controlroom.store.engine import Store
from controlroom.store.tables import webhook_deliveries, webhooks

FORMATS = ("json", "slack")
DEFAULT_EVENTS = (ev.APPROVAL_REQUESTED, ev.APPROVAL_DECIDED, ev.APPROVAL_EXPIRED)
BACKOFF_SECONDS = (10, 30, 120, 600, 1800, 3600, 3600, 3600)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
TIMEOUT_SECONDS = 10.0
TEST_EVENT = "webhook.test"
TEST_TIMEOUT_SECONDS = 5.0  # a test delivery is sent while an admin waits for the answer
MAX_ERROR = 1000
logger = logging.getLogger(__name__)

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_PORT = r"[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_LABEL}(?:\.{_LABEL})*\.?(?::(?:{_PORT}))?(?:[/?#][!-~]*)?$"
"""A webhook's URL: http(s), a host name or IPv4 address, an optional port, then printable ASCII
(what an HTTP request line can carry as it is)."""
MAX_URL = 2048


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    project_id: int
    url: str
    format: str
    secret: str
    event_types: tuple[str, ...]
    created_at: int
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
    return Webhook(
        r.id, r.project_id, r.url, r.format, r.secret, tuple(r.event_types), r.created_at, r.disabled_at
    )


def check_url(url: str) -> str:
    if len(url) > MAX_URL or re.fullmatch(URL_PATTERN, url) is None:
        raise ValidationFailed(
            f"webhook url {url!r} must be an http:// or https:// URL with a host name or IPv4 address, "
            f"printable ASCII, at most {MAX_URL} characters",
            field="url",
        )
    return url


def redacted_url(url: str) -> str:
    """The URL without what follows the host: a Slack incoming-webhook URL's path is a credential,
    so only admins see it whole."""
    parts = urlsplit(url)
    rest = url[len(f"{parts.scheme}://{parts.netloc}") :]
    return url if rest in ("", "/") else f"{parts.scheme}://{parts.netloc}/…"


def create_webhook(
    conn: Connection,
    *,
    project_id: int,
    url: str,
    format: str = "json",
    event_types: tuple[str, ...] = DEFAULT_EVENTS,
) -> Webhook:
    check_url(url)
    if format not in FORMATS:
        raise ValidationFailed(f"webhook format {format!r} must be json or slack", field="format")
    unknown = [t for t in event_types if t not in ev.APPROVAL_EVENT_TYPES]
    if unknown or not event_types:
        raise ValidationFailed(
            f"event_types must be approval events ({', '.join(ev.APPROVAL_EVENT_TYPES)}); not {unknown}",
            field="event_types",
        )
    event_types = tuple(dict.fromkeys(event_types))
    secret = "whsec_" + secrets.token_urlsafe(32)
    now = time.time_ns()
    wid = conn.execute(
        webhooks.insert()
        .values(
            project_id=project_id,
            url=url,
            format=format,
            secret=secret,
            event_types=list(event_types),
            created_at=now,
        )
        .returning(webhooks.c.id)
    ).scalar_one()
    return Webhook(wid, project_id, url, format, secret, event_types, now, None)


def list_webhooks(conn: Connection, *, project_id: int) -> list[Webhook]:
    rows = conn.execute(select(webhooks).where(webhooks.c.project_id == project_id).order_by(webhooks.c.id))
    return [_webhook(r) for r in rows]


def get_webhook(conn: Connection, *, project_id: int, webhook_id: int) -> Webhook:
    row = conn.execute(
        select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.project_id == project_id)
    ).first()
    if row is None:
        raise NotFound(f"no webhook {webhook_id} in this project")
    return _webhook(row)


def disable_webhook(conn: Connection, *, project_id: int, webhook_id: int) -> None:
    """Disable a webhook: it gets no new deliveries, and those still pending are given up (a
    receiver taken away should stop hearing at once)."""
    n = conn.execute(
        update(webhooks)
        .where(
            webhooks.c.id == webhook_id, webhooks.c.project_id == project_id, webhooks.c.disabled_at.is_(None)
        )
        .values(disabled_at=time.time_ns())
    ).rowcount
    if n == 0:
        raise NotFound(f"no active webhook {webhook_id}")
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.state == "pending")
        .values(state="failed", last_error="the webhook was disabled")
    )


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
    only: Collection[int] | None = None,
) -> int:
    """One pending delivery per active webhook of the project that wants ``event_type`` (and is
    one of ``only``, when given: the action's policy's ``notify``); an event enqueued again (a
    replay) adds nothing. Returns how many were added."""
    added = 0
    for hook in list_webhooks(conn, project_id=project_id):
        if hook.disabled_at is not None or event_type not in hook.event_types:
            continue
        if only is not None and hook.id not in only:
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
    except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a host IDNA refuses
        return None, f"{type(e).__name__}: {e}"[:MAX_ERROR]
    return status, None if 200 <= status < 300 else f"HTTP {status}"


LEASE_SECONDS = 60  # a claimed delivery is not claimed again for this long (its sender died: retried)


@dataclass(frozen=True, slots=True)
class _Claimed:
    hook: Webhook
    delivery: Any


def claim_due(store: Store, *, now: int, limit: int = 100) -> list[_Claimed]:
    """Take the deliveries that are due for sending: each is leased (not due again for
    :data:`LEASE_SECONDS`) in the transaction that reads it, so it is sent once even if another
    worker looks meanwhile; a sender that dies leaves it to be tried again when the lease ends."""
    with store.read() as conn:  # nothing due: no write transaction (SQLite's one write lock)
        if (
            conn.execute(
                select(webhook_deliveries.c.id)
                .where(webhook_deliveries.c.state == "pending", webhook_deliveries.c.next_attempt_at <= now)
                .limit(1)
            ).first()
            is None
        ):
            return []
    with store.write() as conn:
        due = conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.state == "pending", webhook_deliveries.c.next_attempt_at <= now)
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        ).all()
        if not due:
            return []
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_([d.id for d in due]))
            .values(next_attempt_at=now + LEASE_SECONDS * 10**9)
        )
        hooks = {
            h.id: h
            for h in (
                _webhook(r)
                for r in conn.execute(select(webhooks).where(webhooks.c.id.in_({d.webhook_id for d in due})))
            )
        }
    return [_Claimed(hooks[d.webhook_id], d) for d in due]


def send(
    store: Store, claimed: _Claimed, *, timeout: float = TIMEOUT_SECONDS, now: int | None = None
) -> bool:
    """One attempt at one claimed delivery, recorded; True if delivered."""
    d = claimed.delivery
    status, error = _attempt(claimed.hook, d, timeout)
    now = time.time_ns() if now is None else now
    attempts = d.attempts + 1
    if error is None:
        values: dict[str, Any] = {"state": "delivered", "delivered_at": now}
    elif attempts >= MAX_ATTEMPTS:
        values = {"state": "failed"}
    else:
        values = {"next_attempt_at": now + BACKOFF_SECONDS[attempts - 1] * 10**9}
    with store.write() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == d.id)
            .values(attempts=attempts, last_status=status, last_error=error, **values)
        )
    return error is None


def deliver_due(
    store: Store, *, now: int | None = None, limit: int = 100, timeout: float = TIMEOUT_SECONDS
) -> int:
    """Claim what is due and send it now, in parallel; returns how many attempts were made."""
    now = time.time_ns() if now is None else now
    claimed = claim_due(store, now=now, limit=limit)
    if claimed:
        with ThreadPoolExecutor(max_workers=min(8, len(claimed))) as pool:
            list(pool.map(lambda c: send(store, c, timeout=timeout, now=now), claimed))
    return len(claimed)


class Sender:
    """The worker's periodic job: claims what is due and sends it on threads of its own, so a slow
    receiver never holds up the worker's other consumers and jobs."""

    def __init__(self, store: Store, *, max_in_flight: int = 32, timeout: float = TIMEOUT_SECONDS) -> None:
        self.store = store
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="controlroom-webhooks")
        self._in_flight = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            room = self.max_in_flight - self._in_flight
        if room <= 0:
            return 0
        claimed = claim_due(self.store, now=time.time_ns(), limit=room)
        for c in claimed:
            with self._lock:
                self._in_flight += 1
            self._pool.submit(self._send, c)
        return len(claimed)

    def _send(self, claimed: _Claimed) -> None:
        try:
            send(self.store, claimed, timeout=self.timeout)
        except Exception:
            logger.exception("webhook delivery %s: recording the attempt failed", claimed.delivery.id)
        finally:
            with self._lock:
                self._in_flight -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- a test delivery -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialDelivery:
    """What a test delivery's one attempt came to."""

    delivery_id: int
    delivered: bool
    status: int | None
    error: str | None


def _test_body(hook: Webhook, *, event_id: str, now: int, project: str, public_url: str) -> dict[str, Any]:
    text = f"[{project}] a test delivery from controlroom: this webhook works"
    if hook.format == "slack":
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    return {
        "type": TEST_EVENT,
        "event_id": event_id,
        "occurred_at": format_ts(now),
        "project": project,
        "webhook_id": hook.id,
        "url": public_url,
    }


def send_test(
    store: Store,
    *,
    project_id: int,
    project: str,
    webhook_id: int,
    public_url: str,
    timeout: float = TEST_TIMEOUT_SECONDS,
) -> TrialDelivery:
    """Send an active webhook one signed ``webhook.test`` delivery now, in its format, and log it:
    delivered, or failed (never retried). The row is leased while the attempt runs, so the worker
    leaves it alone (and tries it once more only if this process dies meanwhile)."""
    now = time.time_ns()
    event_id = f"test-{uuid.uuid4().hex}"
    with store.write() as conn:
        hook = get_webhook(conn, project_id=project_id, webhook_id=webhook_id)
        if hook.disabled_at is not None:
            raise Conflict(f"webhook {webhook_id} is disabled")
        row = conn.execute(
            webhook_deliveries.insert()
            .values(
                webhook_id=hook.id,
                event_id=event_id,
                event_type=TEST_EVENT,
                payload=_test_body(hook, event_id=event_id, now=now, project=project, public_url=public_url),
                state="pending",
                attempts=0,
                next_attempt_at=now + LEASE_SECONDS * 10**9,
                created_at=now,
            )
            .returning(webhook_deliveries)
        ).one()
    status, error = _attempt(hook, row, timeout)
    done = time.time_ns()
    with store.write() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == row.id)
            .values(
                attempts=1,
                last_status=status,
                last_error=error,
                state="delivered" if error is None else "failed",
                delivered_at=done if error is None else None,
            )
        )
    return TrialDelivery(row.id, error is None, status, error)
