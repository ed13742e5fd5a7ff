"""The dashboard in a real browser (Debian's Chromium under Playwright) against a real server with
the demo's history: logging in and out, the pending count on every page, approving a request an
SDK agent is waiting on (and the agent's action then running), rejecting with a reason, a decision
someone else made first, and a viewer who can read but not decide, even by forging the request.
Each view's screenshot is written to docs/screenshots/."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from web_support import (
    Demo,
    demo_server,
    require_built,
    screenshot,
)

import controlroom
from controlroom.demo import DEMO_PASSWORD
from tests_support import wait_for

TIMEZONE = "Europe/Paris"  # the viewer's, not the server's (UTC)
expect.set_options(timeout=15_000)  # conditions are waited on, never slept on: at most this long
VIEWPORT = {"width": 1366, "height": 860}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_server(require_built(), tmp_path_factory.mktemp("demo")) as server:
        yield server


def log_in(page: Any, login: str) -> None:
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()


def logged_in(browse: Any, demo: Demo, login: str, path: str) -> Any:
    page = browse.new_page()
    page.goto(demo.url + path)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    log_in(page, login)
    expect(page.get_by_test_id("who")).to_contain_text(login)
    expect(page).to_have_url(demo.url + path)
    return page


def ask(demo: Demo, order: int, usd: float = 80.0, **extra: Any) -> dict[str, Any]:
    """A refund request, as an agent asks over HTTP (its own run)."""
    body = {
        "run_id": uuid.uuid4().hex,
        "action": "refund",
        "arguments": {"order_id": order, "usd": usd},
        "idempotency_key": f"refund-{order}",
        "agent": "support-bot",
        **extra,
    }
    with demo.agent() as http:
        r = http.post("/v1/approvals", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())


def card_of(page: Any, approval: dict[str, Any]) -> Any:
    return page.locator(f"article[data-id='{approval['id']}']")


def shows_pending_count(page: Any, demo: Demo) -> bool:
    """The navigation's count is the server's (the demo's refunds may expire meanwhile: both are
    read again until they agree)."""
    badge = page.get_by_test_id("pending-count")
    return bool(badge.count() and badge.inner_text() == str(len(demo.pending())))


def test_an_approver_logs_in_and_approves_what_an_agent_waits_for(
    browse: Any, demo: Demo, tmp_path: Path
) -> None:
    arguments = {"order_id": 4242, "usd": 120.5}
    ran = threading.Event()
    controlroom.init(
        url=demo.url, api_key=demo.key, spool_dir=tmp_path / "spool", strict=True, flush_interval=0.05
    )

    def support_bot() -> None:  # asks, waits for a person, and refunds only once approved
        with (
            controlroom.run("support-bot", inputs={"question": "refund order #4242"}),
            controlroom.approval("refund", arguments, wait=60),
        ):
            ran.set()

    agent = threading.Thread(target=support_bot)
    agent.start()
    try:
        asked = wait_for(lambda: next((a for a in demo.pending() if a["arguments"] == arguments), None))
        page = browse.new_page()
        page.goto(demo.url + "/approvals/")  # no session: to the login page, and back after
        expect(page).to_have_url(re.compile(r"/login/\?next=%2Fapprovals%2F$"))
        screenshot(page, "login")
        log_in(page, "approver")
        expect(page).to_have_url(demo.url + "/approvals/")
        wait_for(lambda: shows_pending_count(page, demo))

        card = card_of(page, asked)
        expect(card).to_contain_text('"order_id": 4242')
        expect(card).to_contain_text("support-bot")
        expect(card).to_contain_text(asked["run_id"])
        expect(card).to_contain_text("the approver role")
        # in the viewer's timezone
        requested = datetime.fromisoformat(asked["requested_at"][:26] + "+00:00").astimezone(
            ZoneInfo(TIMEZONE)
        )
        expect(card).to_contain_text(f"{requested:%-I}:{requested:%M}:{requested:%S}")
        expect(page.locator("footer")).to_contain_text(TIMEZONE)
        assert not ran.is_set()
        screenshot(page, "approvals-pending")

        card.get_by_role("button", name="Approve").click()
        expect(page.locator(".notice.done")).to_contain_text("You approved refund for support-bot")
        expect(card).to_have_count(0)  # it left the pending tab
        agent.join(30)
        assert not agent.is_alive() and ran.is_set()  # the agent's action ran, once approved
        with demo.agent() as http:
            wait_for(lambda: http.get(f"/v1/approvals/{asked['id']}").json()["status"] == "executed")
        wait_for(lambda: shows_pending_count(page, demo))

        page.get_by_role("link", name="Decided").click()
        expect(page).to_have_url(demo.url + "/approvals/?tab=decided")
        decided = card_of(page, asked)
        expect(decided).to_contain_text("by approver (approver)")
        expect(decided.locator(".badge")).to_have_text("executed")
        screenshot(page, "approvals-decided")
    finally:
        agent.join(60)
        controlroom.shutdown(timeout=10)


def test_reject_with_a_reason_and_someone_else_deciding_first(browse: Any, demo: Demo) -> None:
    first, second = ask(demo, 5001), ask(demo, 5002)
    page = logged_in(browse, demo, "approver", f"/approvals/view/?id={first['id']}")
    card = card_of(page, first)
    card.get_by_role("button", name="Reject…").click()
    card.get_by_label("Why reject it?").fill("order 5001 was refunded last week")
    card.get_by_role("button", name="Reject", exact=True).click()
    expect(page.locator(".notice.done")).to_contain_text("You rejected refund for support-bot")
    expect(card.locator(".badge")).to_have_text("rejected")
    expect(card).to_contain_text("order 5001 was refunded last week")
    screenshot(page, "approval-view")

    # the page still shows the second request pending when the admin decides it elsewhere
    page.goto(f"{demo.url}/approvals/view/?id={second['id']}")
    stale = card_of(page, second)
    expect(stale.get_by_role("button", name="Approve")).to_be_enabled()
    pending_then = json.dumps(second)
    page.route(f"**/v1/approvals/{second['id']}", lambda route: route.fulfill(json=json.loads(pending_then)))
    with closing(demo.person("admin")) as admin:
        r = admin.post(
            f"/v1/approvals/{second['id']}/decision",
            json={"decision": "approved", "arguments_hash": second["arguments_hash"]},
        )
        assert r.status_code == 200, r.text
    stale.get_by_role("button", name="Approve").click()
    expect(page.locator(".notice.error")).to_contain_text(
        "Someone else got there first: refund for support-bot"
    )
    expect(page.locator(".notice.error")).to_contain_text("is approved already")
    page.unroute(f"**/v1/approvals/{second['id']}")
    expect(stale).to_contain_text("by admin (admin)")  # the page's next look shows what happened
    expect(stale.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot(page, "approval-conflict")


def test_a_request_that_needs_more_than_your_role_says_so(browse: Any, demo: Demo) -> None:
    stricter = ask(demo, 7001, usd=9000.0, min_role="admin")
    page = logged_in(browse, demo, "approver", f"/approvals/view/?id={stricter['id']}")
    card = card_of(page, stricter)
    expect(card.get_by_role("note")).to_have_text("This request needs the admin role; you are an approver.")
    expect(card.get_by_role("button", name="Approve")).to_be_disabled()


def test_a_viewer_reads_sees_why_not_and_a_forged_decision_is_refused(browse: Any, demo: Demo) -> None:
    asked = ask(demo, 6001)
    page = logged_in(browse, demo, "viewer", "/approvals/")
    card = card_of(page, asked)
    expect(card).to_contain_text('"order_id": 6001')
    for name in ("Approve", "Reject…"):
        expect(card.get_by_role("button", name=name)).to_be_disabled()
    expect(card.get_by_role("note")).to_have_text(
        "Deciding needs the approver role; you are a viewer in demo."
    )
    screenshot(page, "approvals-viewer")

    forge = """async ([id, hash]) => {
        const r = await fetch(`/v1/approvals/${id}/decision`, {
            method: "POST",
            headers: {"Content-Type": "application/json", "X-Controlroom-CSRF": "1"},
            body: JSON.stringify({decision: "approved", arguments_hash: hash}),
        });
        return [r.status, await r.json()];
    }"""
    status, problem = page.evaluate(forge, [asked["id"], asked["arguments_hash"]])
    assert (status, problem["code"]) == (403, "forbidden"), problem
    assert asked["id"] in {a["id"] for a in demo.pending()}  # nothing changed

    page.get_by_role("link", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    screenshot(page, "logout")
    status, problem = page.evaluate(forge, [asked["id"], asked["arguments_hash"]])
    assert (status, problem["code"]) == (401, "unauthorized")  # the session ended on the server
    page.goto(demo.url + "/approvals/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_the_queue_is_worked_from_the_keyboard(browse: Any, demo: Demo) -> None:
    """j / k move from request to request, a approves, r asks for the reason (Ctrl+Enter sends)."""
    first, second = ask(demo, 7101, usd=15.0), ask(demo, 7102, usd=16.0)
    page = logged_in(browse, demo, "approver", "/approvals/?tab=pending")
    expect(card_of(page, second)).to_be_visible()

    def focus_on(approval: dict[str, Any]) -> None:
        for _ in range(len(demo.pending()) + 1):  # oldest first: the new ones are last
            if card_of(page, approval).evaluate("el => el === document.activeElement"):
                return
            page.keyboard.press("j")
        raise AssertionError(f"the keyboard never reached {approval['id']}")

    focus_on(first)
    page.keyboard.press("a")
    expect(page.locator(".notice.done")).to_contain_text("You approved refund for support-bot")
    expect(card_of(page, first)).to_have_count(0)
    focus_on(second)
    page.keyboard.press("r")
    reason = card_of(page, second).get_by_label(re.compile("Why reject it"))
    expect(reason).to_be_focused()
    page.keyboard.press("Escape")  # back: nothing sent
    expect(reason).to_have_count(0)
    page.keyboard.press("r")
    page.keyboard.type("duplicate of order 7101")
    page.keyboard.press("Control+Enter")
    expect(card_of(page, second)).to_have_count(0)
    with demo.agent() as http:
        assert http.get(f"/v1/approvals/{first['id']}").json()["status"] == "approved"
        decided = http.get(f"/v1/approvals/{second['id']}").json()
    assert (decided["status"], decided["reason"]) == ("rejected", "duplicate of order 7101")


def test_every_view_and_the_count_on_each(browse: Any, demo: Demo) -> None:
    """Every view is built (each one's own tests write its screenshots) and shows the count."""
    page = logged_in(browse, demo, "admin", "/")
    for link in ("Overview", "Runs", "Evals", "Costs", "Settings", "Approvals"):
        page.get_by_role("navigation", name="main").get_by_role("link", name=re.compile(f"^{link}")).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(link)
        wait_for(lambda: shows_pending_count(page, demo))  # on every page
        expect(page.locator("main")).not_to_contain_text("Not built yet")
    page.get_by_role("link", name="Expired or withdrawn").click()
    expect(page.locator("article").first).to_be_visible()  # the history's expired refunds
    screenshot(page, "approvals-expired")
