"""The settings view in a real browser against a real server with the demo's history: an admin
makes an API key (its secret shown once, then never again) and revokes it; adds a person and
changes their role, and is told plainly that the last admin cannot be demoted; sets a daily cap
and sees it; adds a webhook and sends it a test, which a real receiver on loopback gets signed;
changes an eval threshold that is still there after a reload. A viewer sees every control
disabled with the reason, and the same changes forged with the viewer's session are refused."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from web_support import (
    Demo,
    demo_server,
    require_built,
    screenshot,
)

from controlroom.demo import DEMO_PASSWORD
from controlroom.notifications import signing
from tests_support import wait_for

expect.set_options(timeout=15_000)  # conditions are waited on, never slept on: at most this long
TABS = ("keys", "users", "budgets", "prices", "webhooks", "evals")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_server(require_built(), tmp_path_factory.mktemp("settings")) as server:
        yield server


def settings_page(browse: Any, demo: Demo, login: str, tab: str) -> Any:
    page = browse.new_page()
    page.on("dialog", lambda d: d.accept())  # the confirmations (revoke, remove) are answered yes
    page.goto(f"{demo.url}/settings/?tab={tab}")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("who")).to_contain_text(login)
    expect(page).to_have_url(f"{demo.url}/settings/?tab={tab}")
    return page


def listed(demo: Demo, path: str, member: str) -> list[dict[str, Any]]:
    with closing(demo.person("admin")) as admin:
        r = admin.get(path)
        assert r.status_code == 200, r.text
        return list(r.json()[member])


def test_an_api_key_is_shown_once_works_and_is_revoked(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "admin", "keys")
    keys = page.get_by_role("table", name="API keys")
    expect(keys).to_contain_text("default")  # the demo's key is listed
    form = page.get_by_role("form", name="create an API key")
    form.get_by_label("Name").fill("browser-made")
    form.get_by_role("button", name="Create key").click()

    shown = page.get_by_test_id("secret")
    expect(shown).to_have_text(re.compile(r"^cr_\S{40,}$"))
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    expect(page.get_by_label("how to use the key")).to_contain_text(f"export CONTROLROOM_URL={demo.url} ")
    secret = shown.inner_text()
    with httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {secret}"}) as agent:
        assert agent.get("/v1/runs", params={"limit": 1}).status_code == 200
    row = keys.get_by_role("row").filter(has_text="browser-made")
    expect(row).to_contain_text(secret[:10])
    screenshot_keys = page.get_by_role("button", name="I have stored it")
    screenshot_keys.click()
    expect(shown).to_have_count(0)

    page.reload()  # never shown again: not on the page, not in what the server lists
    expect(row).to_contain_text("active")
    assert secret not in page.content()
    assert all(secret not in str(k) for k in listed(demo, "/v1/keys", "keys"))
    expect(row).not_to_contain_text("never")  # its use above is its last use
    screenshot(page, "settings")

    row.get_by_role("button", name="Revoke").click()  # confirmed by the dialog handler
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    with httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {secret}"}) as agent:
        assert agent.get("/v1/runs", params={"limit": 1}).status_code == 401


def test_a_person_is_added_their_role_changed_and_the_last_admin_kept(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "admin", "users")
    form = page.get_by_role("form", name="add a user")
    form.get_by_label("Login").fill("ana")
    form.get_by_label("Initial password (12+ characters)").fill("a long enough password")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status").filter(has_text="ana is a viewer")).to_be_visible()

    role = page.get_by_label("role of ana")
    expect(role).to_have_value("viewer")
    role.select_option("approver")
    expect(page.get_by_role("status").filter(has_text="ana is an approver now")).to_be_visible()
    wait_for(
        lambda: {u["login"]: u["role"] for u in listed(demo, "/v1/users", "users")}.get("ana") == "approver"
    )
    with httpx.Client(base_url=demo.url, headers={"X-Controlroom-CSRF": "1"}) as ana:  # logs in with it
        assert ana.post("/v1/session", json={"login": "ana", "password": "a long enough password"}).is_success

    page.get_by_label("role of admin").select_option("viewer")  # the demo's only admin
    refused = page.get_by_role("alert").filter(has_text="409")
    expect(refused).to_contain_text("Make someone else an admin first")
    expect(page.get_by_label("role of admin")).to_have_value("admin")
    assert {u["login"]: u["role"] for u in listed(demo, "/v1/users", "users")}["admin"] == "admin"


def test_a_daily_cap_is_set_and_shown_with_today_s_spend(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "admin", "budgets")
    form = page.get_by_role("form", name="set a cap")
    form.get_by_label("Agent (empty: the whole project)").fill("settings-bot")
    form.get_by_label("Daily cap (USD)").fill("12.5")
    form.get_by_role("button", name="Set cap").click()
    row = page.locator("tr[data-agent='settings-bot']")
    expect(row).to_contain_text("$12.50")
    expect(row).to_contain_text("$0.00")  # nothing spent by it today: the whole cap remains
    caps = {b["agent"]: Decimal(b["cap_usd"]) for b in listed(demo, "/v1/budgets", "budgets")}
    assert caps["settings-bot"] == Decimal("12.5")

    form.get_by_label("Daily cap (USD)").fill("twelve")
    form.get_by_role("button", name="Set cap").click()
    expect(page.get_by_role("alert").filter(has_text="422")).to_be_visible()  # said under the form


def test_a_price_override_is_added_and_the_model_in_use_is_charged_it(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "admin", "prices")
    in_use = page.get_by_role("table", name="models in use")
    expect(in_use).to_contain_text("built-in list")  # the demo's models are all on the list
    first = in_use.locator("tbody tr").first
    model = first.locator("td").first.inner_text()
    expect(first).not_to_contain_text("this project's override")

    form = page.get_by_role("form", name="add a price override")
    form.get_by_label("Model").fill(model)
    form.get_by_label("Input, USD / M tokens").fill("1.5")
    form.get_by_label("Output, USD / M tokens").fill("6")
    form.get_by_role("button", name="Add override").click()
    expect(page.get_by_role("table", name="price overrides")).to_contain_text(model)
    row = in_use.locator("tbody tr").filter(has=page.get_by_text(model, exact=True))
    expect(row.first).to_contain_text("this project's override")
    expect(row.first).to_contain_text("$1.5")

    form.get_by_label("Model").fill(model)
    form.get_by_label("Input, USD / M tokens").fill("-1")
    form.get_by_label("Output, USD / M tokens").fill("6")
    form.get_by_role("button", name="Add override").click()
    expect(page.get_by_role("alert").filter(has_text="422")).to_contain_text("input_per_mtok")


@dataclass
class Receiver:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver: a real HTTP server on a free loopback port."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def test_a_webhook_is_added_and_its_test_delivery_arrives_signed(
    browse: Any, demo: Demo, receiver: Receiver
) -> None:
    page = settings_page(browse, demo, "admin", "webhooks")
    form = page.get_by_role("form", name="add a webhook")
    form.get_by_label("URL").fill(receiver.url)
    form.get_by_role("button", name="Add webhook").click()
    secret = page.get_by_test_id("secret").inner_text()
    assert secret and secret not in receiver.url

    card = page.get_by_role("article", name=f"webhook {receiver.url}")
    card.get_by_role("button", name="Send test").click()
    expect(card.get_by_test_id("test-result")).to_have_text("Test delivered: the receiver answered 204.")
    (sent,) = receiver.received
    headers = sent["headers"]
    assert headers["Controlroom-Event"] == "webhook.test"
    assert signing.verify(
        secret, sent["body"], headers["Controlroom-Timestamp"], headers["Controlroom-Signature"]
    )

    card.get_by_role("button", name="Recent deliveries").click()
    deliveries = card.get_by_role("table")
    expect(deliveries).to_contain_text("webhook.test")
    expect(deliveries).to_contain_text("delivered")


def test_an_eval_threshold_is_saved_and_still_there_after_a_reload(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "admin", "evals")
    margin = page.get_by_label("Margin")
    expect(margin).to_have_value(re.compile(r"^0\.\d+$"))
    margin.fill("0.12")
    page.get_by_role("button", name="Save thresholds").click()
    expect(page.get_by_role("status").filter(has_text="thresholds are saved")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Margin")).to_have_value("0.12")
    with closing(demo.person("viewer")) as viewer:
        assert viewer.get("/v1/evals/settings").json()["margin"] == 0.12

    page.get_by_label("Margin").fill("1.5")  # out of range: the server's answer shown under the form
    page.get_by_role("button", name="Save thresholds").click()
    expect(page.get_by_role("alert").filter(has_text="422")).to_contain_text("margin")


def test_a_viewer_sees_every_control_disabled_and_forged_changes_are_refused(browse: Any, demo: Demo) -> None:
    page = settings_page(browse, demo, "viewer", "keys")
    for tab in TABS:
        page.goto(f"{demo.url}/settings/?tab={tab}")
        notes = page.get_by_role("note")
        expect(notes.first).to_contain_text("Only an admin can")
        expect(notes.first).to_contain_text("your role here is viewer")
        expect(page.get_by_role("form").first).to_be_visible()
        expect(page.get_by_text("Loading…")).to_have_count(0)  # the tables' rows and their buttons too
        controls = page.locator(
            "form input, form select, form button, table button, table select, article button"
        )
        changing = controls.filter(has_not_text=re.compile("deliveries"))
        assert changing.count() >= 2, tab
        for i in range(changing.count()):
            expect(changing.nth(i)).to_be_disabled()
    screenshot(page, "settings-viewer")

    with closing(demo.person("viewer")) as viewer:
        for method, path, body in (
            ("POST", "/v1/keys", {"name": "forged"}),
            (
                "POST",
                "/v1/users",
                {"login": "mallory", "password": "a long enough password", "role": "admin"},
            ),
            ("PATCH", "/v1/users/viewer", {"role": "admin"}),
            ("PUT", "/v1/budgets", {"cap_usd": "1000000"}),
            ("POST", "/v1/prices", {"model": "gpt-4o", "input_per_mtok": "0", "output_per_mtok": "0"}),
            ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x"}),
            ("PUT", "/v1/approval-policies/refund", {"min_role": "approver"}),
            ("PUT", "/v1/evals/settings", {"margin": 0.9}),
        ):
            r = viewer.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["code"] == "forbidden"
    assert "forged" not in {k["name"] for k in listed(demo, "/v1/keys", "keys")}
    assert "mallory" not in {u["login"] for u in listed(demo, "/v1/users", "users")}
    assert {u["login"]: u["role"] for u in listed(demo, "/v1/users", "users")}["viewer"] == "viewer"
