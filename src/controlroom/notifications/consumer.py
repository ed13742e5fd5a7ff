"""The notifications log consumer: for each approval event in the run log, a delivery to every
webhook of the project that asked for it and that the action's policy notifies (once per webhook
and event, so a replay adds nothing). The policy is read when the event is handled, moments after
it happened."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import Connection, select

from controlroom import events as ev
from controlroom.approvals import requests as ap
from controlroom.approvals.policies import get_policy
from controlroom.errors import NotFound
from controlroom.notifications import webhooks
from controlroom.store.engine import Store
from controlroom.store.log import LoggedEvent
from controlroom.store.tables import projects

NAME = "notifications"


def handle(store: Store, conn: Connection, batch: Sequence[LoggedEvent], *, public_url: str) -> int:
    """Enqueue the deliveries ``batch`` calls for, in the caller's transaction (which also stores
    this consumer's position). Returns how many deliveries were added."""
    added = 0
    names: dict[int, str] = {}
    for e in batch:
        if e.type not in ev.APPROVAL_EVENT_TYPES:
            continue
        body = orjson.loads(e.body)
        try:
            approval = ap.get(conn, project_id=e.project_id, approval_id=body["approval_id"])
        except NotFound:  # the request's row is gone (a restored backup): nothing to tell
            continue
        if e.project_id not in names:
            names[e.project_id] = conn.execute(
                select(projects.c.name).where(projects.c.id == e.project_id)
            ).scalar_one()
        document = webhooks.payload(
            e.type, e.event_id, e.ts, approval, project=names[e.project_id], public_url=public_url
        )
        added += webhooks.enqueue(
            store,
            conn,
            project_id=e.project_id,
            event_type=e.type,
            event_id=e.event_id,
            document=document,
            now=e.received_at,
            only=get_policy(conn, project_id=e.project_id, action=approval.action).notify,
        )
    return added
