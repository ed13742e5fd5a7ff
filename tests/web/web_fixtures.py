"""The browser fixtures every dashboard test module shares (a plugin: tests/conftest.py names it):
Debian's Chromium, one per module, and a fresh context per test that fails the test if the
dashboard asked anything of another server. Each module brings its own ``demo`` server (the history
it needs) and may set ``TIMEZONE`` (the viewer's, other than the server's UTC) and ``VIEWPORT``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web_support import Demo, chromium

DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_VIEWPORT = {"width": 1366, "height": 900}  # a laptop


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def browse(browser: Any, demo: Demo, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh context (no cookies) at the module's viewport, in the module's timezone, recording
    every request: the dashboard asks nothing of any other server (no CDN, no fonts)."""
    context = browser.new_context(
        viewport=getattr(request.module, "VIEWPORT", DEFAULT_VIEWPORT),
        timezone_id=getattr(request.module, "TIMEZONE", DEFAULT_TIMEZONE),
        locale="en-US",
    )
    context.set_default_timeout(15_000)
    elsewhere: list[str] = []
    context.on("request", lambda r: None if r.url.startswith(demo.url + "/") else elsewhere.append(r.url))
    yield context
    context.close()
    assert elsewhere == [], f"the dashboard asked something of another server: {elsewhere}"
