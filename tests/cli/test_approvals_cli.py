"""`controlroom approvals`: the queue, a request's full arguments, and decisions made as a user
who proves who they are (password) and needs the request's role."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from controlroom.approvals import requests as ap
from controlroom.cli import main
from controlroom.store.engine import Store

PASSWORD = "a long enough password"
RUN = "4bf92f3577b34da6a3ce929d0e0e4736"

pytestmark = pytest.mark.usefixtures("cheap_hashes")


def run(*args: str, stdin: str | None = None, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_list_show_approve_reject(db_url: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    for login, role in (("val", "viewer"), ("amy", "approver")):
        run(
            "users",
            "create",
            "--db",
            db_url,
            login,
            "--project",
            "shop",
            "--role",
            role,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    store = Store(db_url)
    store.migrate()
    with store.read() as conn:
        from controlroom.accounts.projects import get_project

        project = get_project(conn, name="shop")
    assert project is not None
    refund, _ = ap.request(
        store,
        project_id=project.id,
        run_id=RUN,
        action="refund",
        arguments={"order": "A-1", "usd": 40},
        idempotency_key="c1",
        agent="bot",
    )
    wipe, _ = ap.request(
        store,
        project_id=project.id,
        run_id=RUN,
        action="wipe-db",
        arguments={},
        idempotency_key="c2",
        agent="bot",
    )

    listing = run("approvals", "list", "--db", db_url, "--project", "shop")
    assert listing.index(refund.id) < listing.index(wipe.id)  # oldest first
    assert f"{refund.id}\tpending\t" in listing and "\tbot\trefund\tapprover\t" in listing
    shown = run("approvals", "show", "--db", db_url, "--project", "shop", refund.id)
    assert '"order": "A-1"' in shown and refund.arguments_hash in shown

    decide = ("--db", db_url, "--project", "shop", "--password-stdin")
    assert "needs the approver role; you are viewer" in run(
        "approvals", "approve", *decide, "--user", "val", refund.id, stdin=PASSWORD + "\n", ok=False
    )
    assert "wrong login or password" in run(
        "approvals", "approve", *decide, "--user", "amy", refund.id, stdin="guess\n", ok=False
    )
    assert f"approved: refund ({refund.id}) by amy as approver" in run(
        "approvals", "approve", *decide, "--user", "amy", refund.id, stdin=PASSWORD + "\n"
    )
    assert "is approved, not pending" in run(
        "approvals",
        "reject",
        *decide,
        "--user",
        "amy",
        "--reason",
        "late",
        refund.id,
        stdin=PASSWORD + "\n",
        ok=False,
    )
    assert "Missing option '--reason'" in run(
        "approvals", "reject", *decide, "--user", "amy", wipe.id, stdin=PASSWORD + "\n", ok=False
    )
    run(
        "approvals",
        "reject",
        *decide,
        "--user",
        "amy",
        "--reason",
        "never in prod",
        wipe.id,
        stdin=PASSWORD + "\n",
    )
    assert "approved by amy (approver)" in run(
        "approvals", "show", "--db", db_url, "--project", "shop", refund.id
    )
    rejected = run("approvals", "list", "--db", db_url, "--project", "shop", "--status", "rejected")
    assert wipe.id in rejected and refund.id not in rejected
    resolve = ("approvals", "resolve", *decide, "--user", "amy", "--reason", "the refund is in the bank")
    assert "is approved, not claimed" in run(
        *resolve, "--outcome", "executed", refund.id, stdin=PASSWORD + "\n", ok=False
    )
    ap.claim(store, project_id=project.id, approval_id=refund.id, arguments_hash=refund.arguments_hash)
    # the agent died after claiming: a person who checked records what happened
    assert f"executed: refund ({refund.id}) resolved by amy as approver" in run(
        *resolve, "--outcome", "executed", refund.id, stdin=PASSWORD + "\n"
    )
    assert "is executed, not claimed" in run(
        *resolve, "--outcome", "failed", refund.id, stdin=PASSWORD + "\n", ok=False
    )
    assert "no approval request 'nope'" in run(
        "approvals", "show", "--db", db_url, "--project", "shop", "nope", ok=False
    )
    store.dispose()
