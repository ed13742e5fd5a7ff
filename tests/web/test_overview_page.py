"""The overview in a real browser against a real server with a week of the demo's history (its
spike day within the overview's 7 days): a failure, a cost spike and a pending approval shown; a
number leading to the filtered runs list; approving inline as the approver; a viewer's controls
disabled with the reason; a request an agent asks while the page is open showing without a reload.
Writes docs/screenshots/overview.png."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from web_support import (
    Demo,
    demo_server,
    require_built,
    screenshot,
)

from controlroom.demo import DEMO_PASSWORD
from tests_support import wait_for

expect.set_options(timeout=15_000)  # conditions are waited on, never slept on: at most this long


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_server(require_built(), tmp_path_factory.mktemp("overview"), days=7) as server:
        yield server


def overview_as(browse: Any, demo: Demo, login: str) -> Any:
    page = browse.new_page()
    page.goto(demo.url + "/")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("who")).to_contain_text(login)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def test_the_overview_shows_a_failure_a_spike_and_a_pending_approval(browse: Any, demo: Demo) -> None:
    page = overview_as(browse, demo, "approver")
    failures = page.locator("[data-card='failures']")
    expect(failures.get_by_label("failed runs in the last 24 hours")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(failures.get_by_label("error signatures")).to_contain_text(
        re.compile("OrderServiceError|CalledProcessError")
    )
    spikes = page.locator("[data-card='cost']").get_by_label("cost spikes")
    expect(spikes.locator("li").first).to_contain_text("research-agent on claude-sonnet-4-5")
    approvals = page.locator("[data-card='approvals']")
    expect(approvals.get_by_label("pending approvals")).to_have_text(str(len(demo.pending())))
    expect(approvals.get_by_label("oldest pending requests").locator("li").first).to_be_visible()
    expect(
        page.locator("[data-card='series']").get_by_role("img", name="runs per hour by status")
    ).to_be_visible()
    screenshot(page, "overview")

    page.get_by_role("link", name="Last 7 days").click()
    expect(page).to_have_url(re.compile(r"/\?window=7d$"))
    expect(page.locator("[data-card='series'] svg[aria-label='runs per hour by status'] > a")).to_have_count(
        168
    )

    failures.get_by_label("failed runs in the last 24 hours").click()  # a number opens the list behind it
    expect(page).to_have_url(
        re.compile(r"/runs/\?status=failed,abandoned&since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    )


def test_a_failed_run_opened_from_the_overview_shows_its_failing_span_selected(
    browse: Any, demo: Demo
) -> None:
    page = overview_as(browse, demo, "viewer")
    latest = page.locator("[data-card='failures']").get_by_label("latest failed runs").locator("li").first
    link = latest.get_by_role("link")
    href = link.get_attribute("href")
    assert href is not None
    run_id = re.search(r"id=([0-9a-f]{32})", href)
    assert run_id is not None, href
    link.click()
    expect(page).to_have_url(re.compile(rf"/runs/view/\?id={run_id[1]}"))
    with demo.agent() as http:
        run = http.get(f"/v1/runs/{run_id[1]}").json()
    assert run["status"] in ("failed", "abandoned") and run["failing_span_id"], run
    selected = page.locator("[role='treeitem'][aria-selected='true']")
    expect(selected).to_have_attribute("data-span", run["failing_span_id"])
    expect(selected).to_be_in_viewport()
    expect(page.get_by_role("alert", name="run error")).to_contain_text(run["error"]["type"])


def test_an_approver_approves_inline_and_a_new_request_shows_without_reload(browse: Any, demo: Demo) -> None:
    page = overview_as(browse, demo, "approver")
    card = page.locator("[data-card='approvals']")
    first = card.get_by_label("oldest pending requests").locator("li").first
    expect(first).to_be_visible()
    approval_id = first.get_attribute("data-id")
    first.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").filter(has_text="You approved")).to_be_visible()
    expect(card.locator(f"li[data-id='{approval_id}']")).to_have_count(0)
    with demo.agent() as http:
        assert http.get(f"/v1/approvals/{approval_id}").json()["status"] == "approved"

    before = len(demo.pending())
    with demo.agent() as http:  # an agent asks while the page is open
        body = {
            "run_id": uuid.uuid4().hex,
            "action": "refund",
            "arguments": {"order_id": 777, "usd": 12.5},
            "idempotency_key": "overview-777",
            "agent": "support-bot",
        }
        r = http.post("/v1/approvals", json=body)
        assert r.status_code == 201, r.text
    wait_for(lambda: len(demo.pending()) == before + 1)
    expect(card.get_by_label("pending approvals")).to_have_text(str(len(demo.pending())))


def test_a_viewer_reads_the_overview_but_cannot_decide(browse: Any, demo: Demo) -> None:
    page = overview_as(browse, demo, "viewer")
    first = (
        page.locator("[data-card='approvals']").get_by_label("oldest pending requests").locator("li").first
    )
    expect(first.get_by_role("button", name="Approve")).to_be_disabled()
    expect(first.get_by_role("note")).to_contain_text("Deciding needs the approver role")


def test_an_empty_project_shows_how_to_send_a_first_run(browse: Any, demo: Demo) -> None:
    from controlroom.accounts import projects
    from controlroom.accounts import users as u

    with demo.store.write() as conn:
        empty = projects.ensure_project(conn, name="fresh")
        newcomer = u.create_user(conn, login="newcomer", password=DEMO_PASSWORD)
        u.set_role(conn, user=newcomer, project=empty, role=u.Role.admin)
    page = overview_as(browse, demo, "newcomer")
    first = page.get_by_role("region", name="send a first run")
    expect(first).to_contain_text("Nothing has run in this project lately")
    expect(first).to_contain_text(f"curl -s {demo.url}/v1/events")  # this server's own address
    expect(first).to_contain_text(f"CONTROLROOM_URL={demo.url}")
    expect(
        page.locator("[data-card='failures']").get_by_label("failed runs in the last 24 hours")
    ).to_have_text("0")
