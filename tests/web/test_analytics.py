"""The costs and evals views in a real browser (Debian's Chromium under Playwright) against a real
server with eight days of the demo's history, its caps and its evals judged (the support bot's bad
release is an open regression): spend per day with the cap, grouped by agent or by model through
the URL (a reload keeps it); the regression's evidence and a worst run opened from it; a job run
now by an admin followed to its end; a viewer's disabled controls (and the server's refusal of a
forged change). Screenshots: docs/screenshots/costs.png, costs-by-model.png and evals.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from web_support import (
    Demo,
    analytics_demo_server,
    require_built,
    screenshot,
)

import controlroom
from controlroom.demo import DEMO_PASSWORD
from tests_support import wait_for

TIMEZONE = "America/New_York"  # the viewer's; the server's days are UTC
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with analytics_demo_server(require_built(), tmp_path_factory.mktemp("analytics")) as server:
        yield server


def logged_in(browse: Any, demo: Demo, login: str, path: str) -> Any:
    page = browse.new_page()
    page.goto(demo.url + path)
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("who")).to_contain_text(login)
    expect(page).to_have_url(demo.url + path)
    return page


def usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def get(demo: Demo, path: str, **params: Any) -> Any:
    with demo.agent() as http:
        r = http.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


def test_costs_per_day_with_the_cap_by_agent_then_by_model_through_the_url(browse: Any, demo: Demo) -> None:
    by_agent = get(demo, "/v1/costs/daily", group_by="agent", since="2000-01-01")
    until = by_agent["until"]
    page = logged_in(browse, demo, "admin", "/costs/")

    chart = page.get_by_test_id("spend-chart")
    expect(chart.get_by_test_id("spend-day")).to_have_count(14)  # the default: 14 days
    expect(chart.locator(f"[data-day='{until}']")).to_have_count(1)  # ending the server's today
    expect(chart.get_by_test_id("cap-line")).to_contain_text("daily cap $500.00")
    legend = page.get_by_label("legend")
    for agent in ("support-bot", "research-agent", "coding-agent"):
        expect(legend).to_contain_text(agent)
    expect(page.get_by_test_id("day-boundary")).to_contain_text("UTC")
    # the demo's history lies within the 14 days: the period's spend is all of it
    expect(page.get_by_test_id("period-spend")).to_have_text(usd(Decimal(by_agent["total"]["cost_usd"])))
    # each agent's row: its spend, and its successful runs linked to the runs list
    support = page.get_by_test_id("table-agent").locator("tr[data-group='support-bot']")
    spent = sum(Decimal(d["cost_usd"]) for d in by_agent["days"] if d["agent"] == "support-bot")
    succeeded = sum(d["succeeded_runs"] for d in by_agent["days"] if d["agent"] == "support-bot")
    expect(support).to_contain_text(usd(spent))
    link = support.get_by_role("link", name=f"{succeeded:,}", exact=True)
    expect(link).to_have_attribute(
        "href", re.compile(r"^/runs/\?agent=support-bot&status=succeeded&since=.+Z&until=.+Z$")
    )
    # today against the coding agent's small cap: over it, projected past it
    coding = page.get_by_test_id("cap-card").filter(has_text="coding-agent today")
    expect(coding).to_contain_text("of $0.25")
    expect(coding).to_contain_text("past the cap")
    screenshot(page, "costs")

    page.get_by_role("link", name="By model").click()
    expect(page).to_have_url(re.compile(r"/costs/\?group_by=model&days=14$"))
    models = {d["model"] for d in get(demo, "/v1/costs/daily", group_by="model")["days"]}
    assert {"gpt-4o-mini", "claude-sonnet-4-5"} <= models, models
    for model in ("gpt-4o-mini", "claude-sonnet-4-5"):
        expect(legend).to_contain_text(model)
    expect(legend).not_to_contain_text("support-bot")
    # a run that called two models is still one successful run
    expect(page.get_by_test_id("succeeded-total")).to_have_text(f"{by_agent['total']['succeeded_runs']:,}")
    page.reload()
    expect(page.get_by_role("link", name="By model")).to_have_attribute("aria-current", "true")
    expect(page.get_by_label("legend")).to_contain_text("gpt-4o-mini")
    page.get_by_role("link", name="7 days").click()
    expect(page).to_have_url(re.compile(r"/costs/\?group_by=model&days=7$"))
    expect(page.get_by_test_id("spend-chart").get_by_test_id("spend-day")).to_have_count(7)
    screenshot(page, "costs-by-model")
    # usable narrower than a laptop: the page never scrolls sideways (wide tables scroll in place)
    page.set_viewport_size({"width": 760, "height": 900})
    expect(page.get_by_test_id("table-model")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_call_the_cap_refused_counts_among_the_refusals_linked_to_its_runs(
    browse: Any, demo: Demo, tmp_path: Path
) -> None:
    """The coding agent's day is spent (the demo's $0.25 cap): its next model call, through the
    SDK, is refused before it is made."""
    controlroom.init(
        url=demo.url, api_key=demo.key, spool_dir=tmp_path / "spool", strict=True, flush_interval=0.05
    )
    try:
        with (
            pytest.raises(controlroom.BudgetExceeded),
            controlroom.run("coding-agent", inputs={"task": "one more"}),
            controlroom.llm("openai", "gpt-4o", input="one more") as call,
        ):
            call.record(output="never", input_tokens=10, output_tokens=10)
        assert controlroom.flush(timeout=10)
    finally:
        controlroom.shutdown(timeout=10)
    wait_for(lambda: get(demo, "/v1/costs/daily")["total"]["refused_calls"] == 1)

    page = logged_in(browse, demo, "viewer", "/costs/?group_by=agent&days=7")
    refused = page.get_by_test_id("refused-total")
    expect(refused).to_have_text("1")
    expect(refused).to_have_attribute("href", re.compile(r"^/runs/\?refused_by_cap=true&since=.+&until=.+"))
    coding = page.get_by_test_id("table-agent").locator("tr[data-group='coding-agent']")
    expect(coding.get_by_role("link", name="1", exact=True)).to_have_attribute(
        "href", re.compile(r"^/runs/\?agent=coding-agent&refused_by_cap=true&")
    )


def test_the_regression_with_its_evidence_and_a_worst_run_opened_from_it(browse: Any, demo: Demo) -> None:
    regressions = get(demo, "/v1/evals/regressions")["regressions"]
    bot = [r for r in regressions if r["agent"] == "support-bot"]
    assert bot, regressions  # the demo's bad release
    page = logged_in(browse, demo, "viewer", "/evals/")
    for r in bot:
        card = page.locator(f"#regression-{r['id']}")
        expect(card.get_by_test_id("evidence")).to_have_text(r["evidence"])
        expect(card.get_by_test_id("worst-run")).to_have_count(len(r["worst_run_ids"]))
    expect(page.get_by_test_id("score-panel").first).to_be_visible()
    expect(page.get_by_test_id("score-panel")).to_have_count(3)  # helpfulness, run_succeeded, step_count
    screenshot(page, "evals")
    page.set_viewport_size({"width": 760, "height": 900})
    expect(page.get_by_role("table", name="eval configurations")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1366, "height": 900})

    worst = bot[0]["worst_run_ids"][0]
    page.locator(f"#regression-{bot[0]['id']}").get_by_test_id("worst-run").first.click()
    expect(page).to_have_url(f"{demo.url}/runs/view/?id={worst}")
    assert get(demo, f"/v1/runs/{worst}")["agent"] == "support-bot"

    # a link to one regression marks it
    page.goto(f"{demo.url}/evals/?regression={bot[-1]['id']}")
    expect(page.locator(f"#regression-{bot[-1]['id']}")).to_have_class(re.compile("chosen"))


def test_an_admin_runs_a_configuration_now_and_follows_the_job_to_its_end(browse: Any, demo: Demo) -> None:
    page = logged_in(browse, demo, "admin", "/evals/")
    before = {j["id"] for j in get(demo, "/v1/evals/jobs")["jobs"]}
    page.locator("tr[data-config='steps']").get_by_role("button", name="Run now").click()
    notice = page.get_by_role("status").filter(has_text="queued for steps")
    expect(notice).to_be_visible()
    job_id = int(re.search(r"Job (\d+) queued", notice.inner_text()).group(1))  # type: ignore[union-attr]
    assert job_id not in before
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_contain_text("steps")
    expect(row).to_have_attribute("data-state", "done")  # polled until the worker finished it
    expect(row.get_by_role("progressbar")).to_be_visible()
    assert get(demo, f"/v1/evals/jobs/{job_id}")["state"] == "done"

    # pause and resume, as the server records it
    steps = page.locator("tr[data-config='steps']")
    steps.get_by_role("button", name="Pause").click()
    expect(steps).to_contain_text("paused")
    assert next(c for c in get(demo, "/v1/evals/configs")["configs"] if c["name"] == "steps")["paused"]
    steps.get_by_role("button", name="Resume").click()
    expect(steps).to_contain_text("active")
    assert not next(c for c in get(demo, "/v1/evals/configs")["configs"] if c["name"] == "steps")["paused"]


def test_a_viewer_sees_the_admin_controls_disabled_with_the_reason(browse: Any, demo: Demo) -> None:
    page = logged_in(browse, demo, "viewer", "/evals/")
    expect(page.get_by_test_id("evals-admin-only")).to_contain_text("Only an admin")
    row = page.locator("tr[data-config='succeeded']")
    for name in ("Pause", "Run now"):
        button = row.get_by_role("button", name=name)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", re.compile("Only an admin"))
    # the server refuses the change anyway
    with closing(demo.person("viewer")) as http:
        r = http.patch("/v1/evals/configs/succeeded", json={"paused": True})
        assert r.status_code == 403, r.text
        r = http.post("/v1/evals/configs/succeeded/jobs", json={})
        assert r.status_code == 403, r.text
