"""`controlroom policies` and `controlroom webhooks`: the same rules as the admin API, bad values
named (never a traceback), a webhook's secret printed once, a test delivery to a real receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conftest import free_port
from controlroom import events
from controlroom.cli import admin, main
from controlroom.notifications import signing


def invoke(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def run(*args: str, ok: bool = True) -> str:
    return invoke(*args, ok=ok).output


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_the_cli_knows_every_approval_event() -> None:
    assert admin.APPROVAL_EVENTS == events.APPROVAL_EVENT_TYPES


def test_policies_set_list_delete(db_url: str, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    run("projects", "create", "--db", db_url, "shop")
    at = ("--db", db_url, "--project", "shop")
    hook_id = invoke("webhooks", "add", *at, receiver[0]).stdout.split("\t")[0]
    out = run(
        "policies",
        "set",
        *at,
        "refund",
        "--min-role",
        "admin",
        "--four-eyes",
        "--expires-after",
        "90",
        "--notify",
        hook_id,
    )
    assert (
        out
        == f"policy for 'refund': admin or more decides, four eyes, expires after 90 s, notifies {hook_id}\n"
    )
    assert "notifies none" in run("policies", "set", *at, "deploy", "--notify", "none")
    assert "approver or more decides, never expires, notifies all" in run("policies", "set", *at, "db.write")
    listing = run("policies", "list", *at)
    assert listing.splitlines() == [
        "action\tmin_role\tfour_eyes\texpires_after_seconds\tnotify",
        "db.write\tapprover\tno\tnever\tall",
        "deploy\tapprover\tno\tnever\tnone",
        f"refund\tadmin\tyes\t90\t{hook_id}",
    ]
    assert "removed the policy for 'deploy'" in run("policies", "delete", *at, "deploy")
    assert "no approval policy for action 'deploy'" in run("policies", "delete", *at, "deploy", ok=False)
    assert "deploy" not in run("policies", "list", *at)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--notify", "1,x"), "'1,x' is not all, none or webhook ids"),
        (("--notify", "0"), "0 is not a webhook id"),
        (("--notify", "77"), "notify names no webhook of this project: 77"),
        (("--expires-after", "0"), "expires_after_seconds 0.0 must be more than 0"),
        (("--expires-after", "soon"), "'soon' is not a valid float"),
        (("--min-role", "owner"), "'owner' is not one of"),
    ],
)
def test_bad_policy_values_are_named(db_url: str, args: tuple[str, ...], message: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    assert message in run("policies", "set", "--db", db_url, "--project", "shop", "refund", *args, ok=False)
    assert "refund" not in run("policies", "list", "--db", db_url, "--project", "shop")


def test_webhooks_add_list_test_deliveries_disable(
    db_url: str, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    run("projects", "create", "--db", db_url, "shop")
    at = ("--db", db_url, "--project", "shop")
    added = invoke("webhooks", "add", *at, url, "--format", "json", "--event-type", "approval.decided")
    hook_id, secret = added.stdout.strip().split("\t")
    assert secret.startswith("whsec_") and "it is not shown again" in added.stderr
    listing = run("webhooks", "list", *at)
    assert f"{hook_id}\tactive\tjson\tapproval.decided\t{url}" in listing and secret not in listing

    assert "delivered: HTTP 200 (delivery " in run("webhooks", "test", *at, hook_id)
    (got,) = received
    assert signing.verify(
        secret, got["body"], got["headers"]["Controlroom-Timestamp"], got["headers"]["Controlroom-Signature"]
    )
    log = run("webhooks", "deliveries", *at, hook_id).splitlines()
    assert log[0].startswith("id\tcreated_at") and "\twebhook.test\tdelivered\t1\t200\t-" in log[1]

    assert f"disabled webhook {hook_id}" in run("webhooks", "disable", *at, hook_id)
    assert f"{hook_id}\tdisabled\t" in run("webhooks", "list", *at)
    assert f"webhook {hook_id} is disabled" in run("webhooks", "test", *at, hook_id, ok=False)
    assert f"no active webhook {hook_id}" in run("webhooks", "disable", *at, hook_id, ok=False)


def test_a_receiver_that_is_down_fails_the_test_and_is_logged(db_url: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    at = ("--db", db_url, "--project", "shop")
    hook_id = invoke("webhooks", "add", *at, f"http://127.0.0.1:{free_port()}/x").stdout.split("\t")[0]
    out = run("webhooks", "test", *at, hook_id, ok=False)
    assert "not delivered (delivery " in out and "Connection" in out
    assert "\twebhook.test\tfailed\t1\t-\t" in run("webhooks", "deliveries", *at, hook_id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("webhooks", "add", "ftp://example.com/x"), "must be an http:// or https:// URL"),
        (("webhooks", "add", "http://example.com", "--format", "xml"), "'xml' is not one of"),
        (("webhooks", "add", "http://example.com", "--event-type", "run.ended"), "'run.ended' is not one of"),
        (("webhooks", "test", "0"), "0 is not in the range"),
        (("webhooks", "test", "99999999999"), "is not in the range"),
        (("webhooks", "deliveries", "5"), "no webhook 5 in this project"),
        (("webhooks", "disable", "x"), "'x' is not a valid integer"),
    ],
)
def test_bad_webhook_values_are_named(db_url: str, args: tuple[str, ...], message: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    group, command, *rest = args
    assert message in run(group, command, "--db", db_url, "--project", "shop", *rest, ok=False)


def test_another_project_s_webhooks_are_not_found(db_url: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    run("projects", "create", "--db", db_url, "other")
    hook_id = invoke(
        "webhooks", "add", "--db", db_url, "--project", "shop", "http://127.0.0.1:9/x"
    ).stdout.split("\t")[0]
    at = ("--db", db_url, "--project", "other")
    assert "no webhook" in run("webhooks", "test", *at, hook_id, ok=False)
    assert "no active webhook" in run("webhooks", "disable", *at, hook_id, ok=False)
    assert "no project named 'nope'" in run("webhooks", "list", "--db", db_url, "--project", "nope", ok=False)
