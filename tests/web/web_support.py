"""What the dashboard's tests need: the real build, Debian's Chromium, npm, a demo server.

The build comes from ``make dashboard`` (``make test`` runs it) and ``/usr/bin/chromium`` from
Debian's ``chromium`` package (``make test`` installs it). Missing either, the tests that need it
fail in CI (``CI`` is set) and are skipped elsewhere with the command that fixes it: a developer
without Node can still run the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port, start_server
from controlroom.accounts import projects
from controlroom.config import Settings
from controlroom.demo import DEMO_PASSWORD, backfill
from controlroom.server.dashboard import BUILT
from controlroom.store.engine import Store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
# as the machine's own probe starts it: as root (no sandbox), no GPU, and nothing that phones home
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(ok: bool, why: str) -> None:
    """Fail in CI, skip with ``why`` elsewhere."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI runs every browser test: `make test` prepares them)")
    pytest.skip(why)


def newest_source() -> float:
    sources = [p for d in ("src", "public") for p in (ROOT / "web" / d).rglob("*") if p.is_file()]
    sources += [ROOT / "web" / n for n in ("package.json", "next.config.ts", "tsconfig.json")]
    return max(p.stat().st_mtime for p in sources if p.exists())


def require_built() -> Path:
    """The built dashboard in the package, not older than its sources."""
    index = BUILT / "index.html"
    require(index.is_file(), f"the dashboard is not built ({index} is missing): run `make dashboard`")
    require(
        index.stat().st_mtime >= newest_source(),
        "the dashboard's build is older than its sources in web/: run `make dashboard`",
    )
    return BUILT


@dataclass
class Demo:
    url: str
    store: Store
    project: projects.Project
    key: str  # an agent key of the demo project

    def agent(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def person(self, login: str) -> httpx.Client:
        """A browser-like HTTP client logged in as one of the demo's people."""
        client = httpx.Client(base_url=self.url, timeout=30, headers={"X-Controlroom-CSRF": "1"})
        r = client.post("/v1/session", json={"login": login, "password": DEMO_PASSWORD})
        assert r.status_code == 200, r.text
        return client

    def pending(self) -> list[dict[str, Any]]:
        with self.agent() as http:
            r = http.get("/v1/approvals", params={"status": "pending", "limit": 500})
            assert r.status_code == 200, r.text
            return list(r.json()["approvals"])


@contextmanager
def demo_server(built: Path, directory: Path, days: int = 3) -> Iterator[Demo]:
    """A server with the built dashboard and ``days`` of the demo's history (runs, approvals
    decided, expired and pending) and its people (admin, approver, viewer); on SQLite: what the
    browser sees does not depend on the database. Cheap password hashes: not what is tested."""
    from argon2 import PasswordHasher

    from controlroom.accounts import passwords

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store = Store(f"sqlite:///{directory / 'controlroom.db'}")
    store.migrate()
    with store.write() as conn:
        project = projects.ensure_project(conn, name="demo")
        key = projects.create_key(conn, project=project).key
    backfill(store, project, days=days)
    port = free_port()
    settings = Settings.load(env={}, database_url=store.url, port=port)
    server, thread = start_server(store, settings, dashboard=built)
    try:
        yield Demo(f"http://127.0.0.1:{port}", store, project, key)
    finally:
        server.should_exit = True
        thread.join(10)
        store.dispose()
        passwords.use_hasher(None)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright (which never downloads a browser of its own here)."""
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (or `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    """docs/screenshots/<name>.png: what each view looks like, as of this build."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def npm() -> str:
    found = shutil.which("npm")
    require(found is not None, "npm is missing: install Node 20 or later")
    assert found is not None
    return found


# -- the costs and evals views (tests/web/test_analytics.py) --------------------------------------

ANALYTICS_DAYS = 8  # the support bot's bad release went out 4 days ago: 4 days of each version


@contextmanager
def analytics_demo_server(built: Path, directory: Path) -> Iterator[Demo]:
    """Like :func:`demo_server`, with what the costs and evals views show: the demo's caps, its eval
    configurations with the history judged, and enough days of it for the support bot's
    regression (its versions compared) to be open when the server starts."""
    from argon2 import PasswordHasher

    from controlroom.accounts import passwords
    from controlroom.demo import judge_history, set_demo_caps, set_demo_evals

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store = Store(f"sqlite:///{directory / 'controlroom.db'}")
    store.migrate()
    with store.write() as conn:
        project = projects.ensure_project(conn, name="demo")
        key = projects.create_key(conn, project=project).key
    backfill(store, project, days=ANALYTICS_DAYS)
    set_demo_caps(store, project)
    set_demo_evals(store, project)
    judge_history(store, project)
    port = free_port()
    settings = Settings.load(env={}, database_url=store.url, port=port)
    server, thread = start_server(store, settings, dashboard=built)
    try:
        yield Demo(f"http://127.0.0.1:{port}", store, project, key)
    finally:
        server.should_exit = True
        thread.join(10)
        store.dispose()
        passwords.use_hasher(None)
