"""Outgoing webhooks against a real receiver on a loopback port, on SQLite and PostgreSQL:
deliveries are signed and verifiable, enqueued once per event, a failing receiver is retried with
backoff and every attempt logged, Slack messages link to the request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from controlroom import events as ev
from controlroom.accounts.projects import Project
from controlroom.approvals import requests as ap
from controlroom.errors import ValidationFailed
from controlroom.notifications import consumer, signing, webhooks
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.tables import events

RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLIC = "http://controlroom.test:8750"


@dataclass
class Receiver:
    url: str
    failures_left: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
            if state.failures_left > 0:
                state.failures_left -= 1
                self.send_response(503)
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/controlroom?team=ops"
    yield state
    server.shutdown()
    server.server_close()


def ask(store: Store, project: Project) -> ap.Approval:
    return ap.request(
        store,
        project_id=project.id,
        run_id=RUN,
        action="refund",
        arguments={"amount": 5},
        idempotency_key="k",
        agent="bot",
    )[0]


def consume(store: Store) -> int:
    """What the notifications consumer does with the whole log."""
    with store.write() as conn:
        return consumer.handle(store, conn, log.read_after(conn, 0, 1000), public_url=PUBLIC)


def test_a_delivery_is_signed_and_verifiable(store: Store, project: Project, receiver: Receiver) -> None:
    with store.write() as conn:
        hook = webhooks.create_webhook(conn, project_id=project.id, url=receiver.url)
    a = ask(store, project)
    assert consume(store) == 1
    assert consume(store) == 0  # a replay of the log enqueues nothing again
    assert webhooks.deliver_due(store) == 1
    (got,) = receiver.received
    headers = got["headers"]
    assert got["path"] == "/hooks/controlroom?team=ops"
    assert signing.verify(
        hook.secret, got["body"], headers["Controlroom-Timestamp"], headers["Controlroom-Signature"]
    )
    assert not signing.verify(
        "whsec_other", got["body"], headers["Controlroom-Timestamp"], headers["Controlroom-Signature"]
    )
    assert not signing.verify(
        hook.secret, got["body"] + b" ", headers["Controlroom-Timestamp"], headers["Controlroom-Signature"]
    )
    stale = float(headers["Controlroom-Timestamp"]) + signing.TOLERANCE_SECONDS + 1
    assert not signing.verify(
        hook.secret,
        got["body"],
        headers["Controlroom-Timestamp"],
        headers["Controlroom-Signature"],
        now=stale,
    )
    doc = orjson.loads(got["body"])
    assert headers["Controlroom-Event"] == doc["type"] == ev.APPROVAL_REQUESTED
    assert (
        doc["approval"]["id"] == a.id and doc["approval"]["action"] == "refund" and doc["project"] == "acme"
    )
    assert doc["url"] == f"{PUBLIC}/approvals/view/?id={a.id}"
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    assert (d.state, d.attempts, d.last_status) == ("delivered", 1, 204)
    assert webhooks.deliver_due(store) == 0


def test_a_failing_receiver_is_retried_with_backoff_and_logged(
    store: Store, project: Project, receiver: Receiver
) -> None:
    with store.write() as conn:
        hook = webhooks.create_webhook(conn, project_id=project.id, url=receiver.url)
    ask(store, project)
    consume(store)
    receiver.failures_left = 2
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    t = d.next_attempt_at
    assert webhooks.deliver_due(store, now=t) == 1
    assert webhooks.deliver_due(store, now=t + 9 * 10**9) == 0  # not before its backoff
    assert webhooks.deliver_due(store, now=t + 10 * 10**9) == 1
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    assert (d.state, d.attempts, d.last_status, d.last_error) == ("pending", 2, 503, "HTTP 503")
    assert d.next_attempt_at == t + 10 * 10**9 + 30 * 10**9
    assert webhooks.deliver_due(store, now=d.next_attempt_at) == 1
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    assert (d.state, d.attempts, d.last_status) == ("delivered", 3, 204)
    assert len(receiver.received) == 3


def test_an_unreachable_receiver_is_given_up_after_the_last_attempt(
    store: Store, project: Project, receiver: Receiver
) -> None:
    from conftest import free_port  # nothing listens there

    with store.write() as conn:
        hook = webhooks.create_webhook(conn, project_id=project.id, url=f"http://127.0.0.1:{free_port()}/x")
    ask(store, project)
    consume(store)
    now = 0
    for _ in range(webhooks.MAX_ATTEMPTS):
        with store.read() as conn:
            (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
        now = d.next_attempt_at
        assert webhooks.deliver_due(store, now=now, timeout=2) == 1
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    assert (d.state, d.attempts, d.last_status) == ("failed", webhooks.MAX_ATTEMPTS, None)
    assert d.last_error is not None and "Connection" in d.last_error
    assert webhooks.deliver_due(store, now=now + 10**15) == 0


def test_slack_messages_link_to_the_request_and_hooks_get_only_their_events(
    store: Store, project: Project, receiver: Receiver
) -> None:
    with store.write() as conn:
        webhooks.create_webhook(
            conn, project_id=project.id, url=receiver.url, format="slack", event_types=(ev.APPROVAL_DECIDED,)
        )
    a = ask(store, project)
    from controlroom.accounts.users import Role
    from controlroom.store.tables import users

    with store.write() as conn:
        conn.execute(
            users.insert().values(
                id=7, login="alice", name="Alice", password_hash="x", created_at=0, password_changed_at=0
            )
        )
    ap.decide(
        store,
        project_id=project.id,
        approval_id=a.id,
        decision="rejected",
        reason="too large",
        arguments_hash=a.arguments_hash,
        decider=ap.Decider(7, "alice", Role.admin),
    )
    assert consume(store) == 1  # the decision, not the request
    webhooks.deliver_due(store)
    (got,) = receiver.received
    message = orjson.loads(got["body"])
    assert "`refund` of agent bot was rejected by alice: too large" in message["text"]
    assert f"<{PUBLIC}/approvals/view/?id={a.id}|Open the request>" in message["blocks"][0]["text"]["text"]
    with store.read() as conn:
        assert conn.execute(select(events.c.type).order_by(events.c.seq)).scalars().all() == [
            ev.APPROVAL_REQUESTED,
            ev.APPROVAL_DECIDED,
        ]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "ftp://x/y"}, "must be an http:// or https:// URL"),
        ({"url": "http://x", "format": "xml"}, "format 'xml' must be json or slack"),
        ({"url": "http://x", "event_types": ("run.ended",)}, "event_types must be approval events"),
    ],
)
def test_bad_webhooks_are_named(store: Store, project: Project, kw: dict[str, Any], message: str) -> None:
    with store.write() as conn, pytest.raises(ValidationFailed, match=message):
        webhooks.create_webhook(conn, project_id=project.id, **kw)


def test_the_worker_runtime_tells_the_webhook_and_expires_requests(
    store: Store, project: Project, receiver: Receiver
) -> None:
    """Through the standard runtime: the notifications consumer enqueues, the sender job delivers
    (on its own threads), the expiry job expires — and the expiry is delivered too."""
    from controlroom.approvals.policies import Policy, set_policy
    from controlroom.workers.runtime import standard_runtime
    from tests_support import wait_for

    with store.write() as conn:
        webhooks.create_webhook(conn, project_id=project.id, url=receiver.url)
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", expires_after_seconds=0.2))
    a = ask(store, project)
    runtime = standard_runtime(store, public_url=PUBLIC)
    runtime.start()
    try:
        wait_for(
            lambda: (
                [orjson.loads(r["body"])["type"] for r in receiver.received]
                == [ev.APPROVAL_REQUESTED, ev.APPROVAL_EXPIRED]
            )
        )
    finally:
        runtime.stop()
    with store.read() as conn:
        assert ap.get(conn, project_id=project.id, approval_id=a.id).status == "expired"


def test_a_policy_s_notify_decides_which_webhooks_are_told(
    store: Store, project: Project, receiver: Receiver
) -> None:
    from controlroom.approvals.policies import Policy, get_policy, set_policy

    with store.write() as conn:
        first = webhooks.create_webhook(conn, project_id=project.id, url=receiver.url)
        second = webhooks.create_webhook(conn, project_id=project.id, url=receiver.url + "&second")
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", notify=(second.id,)))
        assert get_policy(conn, project_id=project.id, action="refund").notify == (second.id,)
    ask(store, project)
    assert consume(store) == 1
    with store.read() as conn:
        assert webhooks.deliveries(conn, project_id=project.id, webhook_id=first.id) == []
        assert len(webhooks.deliveries(conn, project_id=project.id, webhook_id=second.id)) == 1
    with store.write() as conn:  # none: a new request is told to nobody
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", notify=()))
        assert get_policy(conn, project_id=project.id, action="refund").notify == ()
    ap.request(store, project_id=project.id, run_id=RUN, action="refund", arguments={}, idempotency_key="k2")
    assert consume(store) == 0
    with store.write() as conn, pytest.raises(ValidationFailed, match="no webhook of this project: 99"):
        set_policy(store, conn, project_id=project.id, policy=Policy("refund", notify=(99,)))


def test_disabling_a_webhook_gives_up_its_pending_deliveries(
    store: Store, project: Project, receiver: Receiver
) -> None:
    with store.write() as conn:
        hook = webhooks.create_webhook(conn, project_id=project.id, url=receiver.url)
    ask(store, project)
    consume(store)
    with store.write() as conn:
        webhooks.disable_webhook(conn, project_id=project.id, webhook_id=hook.id)
    assert webhooks.deliver_due(store, now=2**62) == 0
    with store.read() as conn:
        (d,) = webhooks.deliveries(conn, project_id=project.id, webhook_id=hook.id)
    assert (d.state, d.attempts, d.last_error) == ("failed", 0, "the webhook was disabled")
    assert receiver.received == []
