"""The Runs and Run detail pages in a real browser against the demo's history: filters kept in the
URL across a reload, the preview moved with the keyboard, a run sent while the page is open showing
up without a reload, a failed run opened on its failing span, and a 2,000-span run whose tree is
virtualised (far fewer rows in the DOM than spans), whose last error is reached by jumping and by
scrolling, and whose spans' outputs are loaded only when selected. Writes docs/screenshots/runs.png
and run.png."""

from __future__ import annotations

import re
import time
import urllib.parse
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
VIEWPORT = {"width": 1366, "height": 860}
SEC = 10**9
MAX_TREE_ROWS = 120  # a screenful and the overscan: nowhere near 2,000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_server(require_built(), tmp_path_factory.mktemp("runs-demo")) as server:
        with server.agent() as http:  # the history folded into the read model
            wait_for(lambda: http.get("/v1/health").json()["projector"]["lag_events"] == 0, timeout=60)
        yield server


def open_logged_in(browse: Any, demo: Demo, path: str) -> Any:
    page = browse.new_page()
    page.goto(demo.url + path)
    page.get_by_label("Login").fill("viewer")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("who")).to_contain_text("viewer")
    return page


def api_runs(demo: Demo, **params: Any) -> list[dict[str, Any]]:
    with demo.agent() as http:
        r = http.get("/v1/runs", params={"limit": 50, **params})
        assert r.status_code == 200, r.text
        return list(r.json()["runs"])


def row_ids(page: Any) -> list[str]:
    return list(
        page.locator("table[aria-label='runs'] tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)")
    )


def send(demo: Demo, events: list[dict[str, Any]]) -> None:
    with demo.agent() as http:
        for i in range(0, len(events), 1000):
            r = http.post("/v1/events", json={"events": events[i : i + 1000]})
            assert r.status_code == 200 and not r.json()["rejected"], r.text


def ev(etype: str, run_id: str, ts: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "type": etype, "run_id": run_id, "ts": ts, "body": body}


def projected(demo: Demo, run_id: str, spans: int) -> bool:
    with demo.agent() as http:
        r = http.get(f"/v1/runs/{run_id}", params={"payloads": "false"})
        return (
            r.status_code == 200 and r.json()["counts"]["span"] == spans and r.json()["status"] != "running"
        )


def test_filter_by_agent_and_status_and_reload(browse: Any, demo: Demo) -> None:
    failed = api_runs(demo, status="failed")
    assert failed, "the demo has failed runs"
    agent = failed[0]["agent"]
    expected = [r["run_id"] for r in api_runs(demo, agent=agent, status="failed")]
    everyone = [r["run_id"] for r in api_runs(demo)]
    assert set(everyone) != set(expected)

    page = open_logged_in(browse, demo, "/runs/")
    expect(page.locator("table[aria-label='runs'] tbody tr").first).to_be_visible()
    wait_for(lambda: row_ids(page) == [r["run_id"] for r in api_runs(demo)])

    filters = page.get_by_role("form", name="run filters")
    filters.locator("input[name='agent']").fill(agent)
    filters.get_by_role("button", name="Apply").click()
    filters.locator("select[name='status']").select_option("failed")
    expect(page).to_have_url(re.compile(r"/runs/\?agent=[^&]+&status=failed$"))
    wait_for(lambda: row_ids(page) == expected)
    statuses = page.locator("table[aria-label='runs'] tbody tr .badge").all_inner_texts()
    assert set(statuses) == {"failed"}, statuses

    page.reload()
    expect(page.locator("input[name='agent']")).to_have_value(agent)
    expect(page.locator("select[name='status']")).to_have_value("failed")
    wait_for(lambda: row_ids(page) == expected)

    page.goto(demo.url + "/runs/")
    page.locator("select[name='last']").select_option("24")  # a time range from now
    expect(page).to_have_url(re.compile(r"/runs/\?since=[^&]+Z$"))
    since = urllib.parse.unquote(page.url.split("since=")[1])
    day = [r["run_id"] for r in api_runs(demo, since=since)]
    assert day and len(day) < len(api_runs(demo, limit=200))
    wait_for(lambda: row_ids(page) == day)
    expect(page.locator("input[name='since']")).not_to_have_value("")

    page.goto(demo.url + "/runs/?agent=nobody-at-all")  # a shared link with no match
    expect(page.get_by_text("No runs match these filters.")).to_be_visible()


def test_awaiting_approval_and_refused_by_the_cap(browse: Any, demo: Demo) -> None:
    run_id, now = uuid.uuid4().hex, time.time_ns()
    send(
        demo,
        [
            ev("run.started", run_id, now, {"agent": "capped-agent"}),
            ev(
                "span.recorded",
                run_id,
                now + 1000,
                {
                    "span_id": uuid.uuid4().hex[:16],
                    "name": "openai.chat",
                    "kind": "llm",
                    "ended_at": now + 2000,
                    "status": "error",
                    "error": {"type": "BudgetExceeded", "message": "the daily cost cap would be crossed"},
                    "attributes": {"controlroom.budget.reason": "cap_reached"},
                },
            ),
            ev("run.ended", run_id, now + 3000, {"status": "failed"}),
        ],
    )
    wait_for(lambda: [r["run_id"] for r in api_runs(demo, refused_by_cap="true")][:1] == [run_id])
    waiting = [r["run_id"] for r in api_runs(demo, awaiting_approval="true")]
    assert waiting, "the demo has runs waiting on a person"

    page = open_logged_in(browse, demo, "/runs/")
    expect(page.locator("table[aria-label='runs'] tbody tr").first).to_be_visible()
    page.get_by_label("awaiting approval").check()
    expect(page).to_have_url(re.compile(r"/runs/\?awaiting_approval=true$"))
    wait_for(lambda: row_ids(page) == waiting)
    page.get_by_label("awaiting approval").uncheck()
    page.get_by_label("refused by the cap").check()
    expect(page).to_have_url(re.compile(r"/runs/\?refused_by_cap=true$"))
    wait_for(lambda: row_ids(page) == [r["run_id"] for r in api_runs(demo, refused_by_cap="true")])
    expect(page.locator(f"tr[data-run='{run_id}']")).to_contain_text("cap")


def test_keyboard_moves_the_preview_and_opens_the_run(browse: Any, demo: Demo) -> None:
    page = open_logged_in(browse, demo, "/runs/?status=succeeded")
    rows = page.locator("table[aria-label='runs'] tbody tr")
    expect(rows.nth(2)).to_be_visible()
    first, second = row_ids(page)[:2]
    preview = page.get_by_role("complementary", name="run preview")
    expect(preview).to_have_count(0)

    page.keyboard.press("j")
    expect(page.locator(f"tr[data-run='{first}']")).to_have_attribute("aria-selected", "true")
    expect(preview).to_contain_text(first)
    page.keyboard.press("j")
    expect(page.locator(f"tr[data-run='{second}']")).to_have_attribute("aria-selected", "true")
    expect(preview).to_contain_text(second)
    screenshot(page, "runs")
    page.keyboard.press("ArrowUp")
    expect(preview).to_contain_text(first)
    page.keyboard.press("Escape")
    expect(preview).to_have_count(0)
    page.keyboard.press("ArrowDown")
    expect(preview).to_contain_text(first)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/runs/view/\?id={first}"))
    expect(page.get_by_role("tree", name="spans")).to_be_visible()


def test_a_new_run_appears_without_reload(browse: Any, demo: Demo) -> None:
    page = open_logged_in(browse, demo, "/runs/")
    expect(page.locator("table[aria-label='runs'] tbody tr").first).to_be_visible()
    agent = f"newcomer-{uuid.uuid4().hex[:6]}"
    expect(page.get_by_text(agent)).to_have_count(0)
    run_id, now = uuid.uuid4().hex, time.time_ns()
    send(
        demo,
        [
            ev("run.started", run_id, now, {"agent": agent}),
            ev("run.ended", run_id, now + SEC // 10, {"status": "succeeded"}),
        ],
    )
    row = page.locator(f"tr[data-run='{run_id}']")
    expect(row).to_contain_text(agent)  # polled in, no reload
    assert row_ids(page)[0] == run_id


def test_a_failed_run_opens_on_its_failing_span(browse: Any, demo: Demo) -> None:
    # one of the demo fleet's own (other tests here send failed runs of a span or two)
    run = next(
        r
        for r in api_runs(demo, status="failed")
        if r["failing_span_id"] and r["agent"] in ("support-bot", "research-agent")
    )
    page = open_logged_in(browse, demo, f"/runs/view/?id={run['run_id']}")
    selected = page.locator("[role='treeitem'][aria-selected='true']")
    expect(selected).to_have_attribute("data-span", run["failing_span_id"])
    expect(selected).to_be_in_viewport()
    expect(page.get_by_role("alert", name="run error")).to_contain_text(run["error"]["type"])
    expect(page.get_by_role("note", name="span error")).to_be_visible()
    expect(page.get_by_label("span output").or_(page.get_by_text("none").first)).to_be_visible()
    screenshot(page, "run")


def big_run(demo: Demo) -> tuple[str, list[str], list[str]]:
    """A 2,000-span run: an agent span over 1,999 steps, three of them failing (the last one near
    the end), every step with an output of its own. Its span ids and its error spans' ids."""
    run_id, t0 = uuid.uuid4().hex, time.time_ns() - 3600 * SEC
    root = uuid.uuid4().hex[:16]
    ids = [root] + [uuid.uuid4().hex[:16] for _ in range(1999)]
    failing = {10, 1000, 1990}
    events = [ev("run.started", run_id, t0, {"agent": "big-agent"})]
    events.append(
        ev(
            "span.recorded",
            run_id,
            t0,
            {"span_id": root, "name": "agent", "kind": "agent", "ended_at": t0 + 2000 * SEC // 10},
        )
    )
    for i in range(1, 2000):
        start = t0 + i * SEC // 10
        body: dict[str, Any] = {
            "span_id": ids[i],
            "parent_span_id": root,
            "name": f"step {i}",
            "kind": "tool",
            "ended_at": start + SEC // 20,
            "output": {"step": i, "note": f"output of step {i}"},
        }
        if i in failing:
            body |= {"status": "error", "error": {"type": "StepFailed", "message": f"step {i} broke"}}
        events.append(ev("span.recorded", run_id, start, body))
    events.append(ev("run.ended", run_id, t0 + 2001 * SEC // 10, {"status": "succeeded"}))
    send(demo, events)
    wait_for(lambda: projected(demo, run_id, 2000), timeout=60)
    return run_id, ids, [ids[i] for i in sorted(failing)]


def test_a_2000_span_run_is_virtualised_and_loads_outputs_on_selection(browse: Any, demo: Demo) -> None:
    run_id, ids, errors = big_run(demo)
    page = open_logged_in(browse, demo, "/runs/")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{demo.url}/runs/view/?id={run_id}")
    tree = page.get_by_role("tree", name="spans")
    expect(tree).to_have_attribute("data-rows", "2000")
    items = tree.get_by_role("treeitem")
    expect(items.first).to_contain_text("agent")
    assert 0 < items.count() <= MAX_TREE_ROWS, items.count()
    expect(page.get_by_label("errors")).to_have_text("3 errors")
    assert any(f"/v1/runs/{run_id}?payloads=false" in u for u in requests), requests
    assert not any("/spans/" in u for u in requests), "no span's payload before one is selected"

    # Jumping: the previous error from nowhere is the last one, scrolled into view.
    page.get_by_role("button", name="↑ Previous error").click()
    last = page.locator(f"[role='treeitem'][data-span='{errors[-1]}']")
    expect(last).to_have_attribute("aria-selected", "true")
    expect(last).to_be_in_viewport()
    expect(page).to_have_url(re.compile(rf"span={errors[-1]}$"))
    expect(page.get_by_role("complementary", name="span")).to_contain_text("step 1990 broke")
    expect(page.get_by_label("span output")).to_contain_text("output of step 1990")
    assert any(f"/spans/{errors[-1]}" in u for u in requests)
    page.get_by_role("button", name="Jump to next error ↓").click()  # wraps to the first
    expect(page.locator(f"[role='treeitem'][data-span='{errors[0]}']")).to_be_in_viewport()
    expect(page.get_by_label("errors")).to_have_text("3 errors (this is 1)")
    page.keyboard.press("j")  # the keyboard moves through the rows
    expect(page.locator(f"[role='treeitem'][data-span='{ids[11]}']")).to_have_attribute(
        "aria-selected", "true"
    )
    page.keyboard.press("ArrowUp")
    expect(page.locator(f"[role='treeitem'][data-span='{errors[0]}']")).to_have_attribute(
        "aria-selected", "true"
    )
    assert tree.get_by_role("treeitem").count() <= MAX_TREE_ROWS

    # Scrolling to the bottom renders the last rows (and only a window of rows).
    tree.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    bottom = page.locator(f"[role='treeitem'][data-span='{ids[-1]}']")
    expect(bottom).to_be_in_viewport()
    expect(page.locator(f"[role='treeitem'][data-span='{ids[1]}']")).to_have_count(0)
    assert tree.get_by_role("treeitem").count() <= MAX_TREE_ROWS

    # Selecting a span loads its output, and only then.
    before = [u for u in requests if f"/spans/{ids[-1]}" in u]
    assert before == []
    bottom.click()
    expect(page.get_by_label("span output")).to_contain_text("output of step 1999")
    assert any(f"/spans/{ids[-1]}" in u for u in requests)

    # A collapsed parent still says it holds errors.
    page.goto(f"{demo.url}/runs/view/?id={run_id}")
    tree = page.get_by_role("tree", name="spans")
    tree.get_by_role("button", name="collapse agent").click()
    expect(tree).to_have_attribute("data-rows", "1")
    expect(tree.get_by_role("treeitem").first).to_contain_text("3 errors inside")
