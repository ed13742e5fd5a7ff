"""The dashboard's static files, served by the API's own process: pages by directory, hashed
assets cached for good and pages revalidated, the API's paths never answered with a page, and a
server without a built dashboard that still serves the API. Run against a small export made here
(the real one needs Node: tests/web/ covers it)."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port, start_server
from controlroom.config import Settings
from controlroom.server.dashboard import IMMUTABLE
from controlroom.store.engine import Store

PAGE = "<!doctype html><title>{}</title>"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser asks for

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def export(root: Path) -> Path:
    """A static export shaped as Next writes one (``trailingSlash``: a directory per page)."""
    files = {
        "index.html": PAGE.format("overview"),
        "404.html": PAGE.format("not found"),
        "approvals/index.html": PAGE.format("approvals"),
        "approvals/index.txt": "rsc payload",
        "approvals/view/index.html": PAGE.format("one approval"),
        "_next/static/chunks/app-3f2a.js": "console.log(1)",
        "icon.svg": "<svg/>",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root.parent / "secret.txt").write_text("outside the export")
    return root


def serve(store: Store, dashboard: Path) -> Iterator[httpx.Client]:
    port = free_port()
    settings = Settings.load(env={}, database_url=store.url, port=port)
    server, thread = start_server(store, settings, dashboard=dashboard)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def site(store: Store, tmp_path: Path) -> Iterator[httpx.Client]:
    yield from serve(store, export(tmp_path / "web"))


@pytest.fixture
def unbuilt(store: Store, tmp_path: Path) -> Iterator[httpx.Client]:
    yield from serve(store, tmp_path / "never-built")


def test_pages_are_directories_and_revalidated(site: httpx.Client) -> None:
    for path, title in (
        ("/", "overview"),
        ("/approvals/", "approvals"),
        ("/approvals/view/?id=9f1c2e", "one approval"),
    ):
        r = site.get(path, headers=HTML)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert f"<title>{title}</title>" in r.text
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        again = site.get(path, headers={**HTML, "If-None-Match": etag})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
    rsc = site.get("/approvals/index.txt")  # what client-side navigation fetches
    assert rsc.status_code == 200 and rsc.headers["cache-control"] == "no-cache"
    assert site.head("/approvals/").status_code == 200


def test_a_page_without_its_slash_redirects_keeping_the_query(site: httpx.Client) -> None:
    r = site.get("/approvals/view", params={"id": "9f1c2e"})
    assert r.status_code == 308 and r.headers["location"] == "/approvals/view/?id=9f1c2e"
    assert site.get("/approvals").headers["location"] == "/approvals/"


def test_hashed_assets_are_cached_for_good(site: httpx.Client) -> None:
    r = site.get("/_next/static/chunks/app-3f2a.js")
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert r.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    assert site.get("/icon.svg").headers["cache-control"] == "no-cache"  # not content-hashed


def test_api_paths_are_never_pages(site: httpx.Client) -> None:
    for path in ("/v1/nope", "/v1", "/v1/index.html"):
        r = site.get(path, headers=HTML)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "not_found"
    assert site.get("/v1/health", headers=HTML).json()["status"] == "ok"
    assert site.get("/openapi.json", headers=HTML).json()["info"]["title"] == "controlroom"
    assert "swagger" in site.get("/docs", headers=HTML).text.lower()
    # other methods are the API's: a page never answers them
    r = site.post("/approvals/", headers=HTML)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_a_missing_file_is_the_404_page_for_a_browser_and_json_otherwise(site: httpx.Client) -> None:
    page = site.get("/runz/", headers=HTML)
    assert page.status_code == 404 and "<title>not found</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    r = site.get("/v2/runs")  # an API client mistyping its path
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    for sneaky in ("/..%2fsecret.txt", "/%2e%2e/secret.txt", "/approvals/../../secret.txt"):
        r = site.get(sneaky)
        assert r.status_code == 404 and "outside" not in r.text, sneaky


def test_without_a_built_dashboard_the_root_says_how_and_the_api_works(unbuilt: httpx.Client) -> None:
    r = unbuilt.get("/", headers=HTML)
    assert r.status_code == 200 and "make dashboard" in r.text and "/v1/health" in r.text
    assert unbuilt.get("/v1/health").json()["status"] == "ok"
    r = unbuilt.get("/approvals/", headers=HTML)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_text_files_go_compressed_to_a_browser_that_takes_gzip(site: httpx.Client, tmp_path: Path) -> None:
    """``make dashboard`` leaves a gzip twin beside each text file; the server sends it as is."""
    root = tmp_path / "web"
    script = root / "_next/static/chunks/app-3f2a.js"
    big = "console.log('controlroom');\n" * 400
    script.write_text(big)
    (root / "_next/static/chunks/app-3f2a.js.gz").write_bytes(gzip.compress(big.encode(), mtime=0))
    os.utime(script.with_name("app-3f2a.js.gz"), (script.stat().st_mtime,) * 2)

    r = site.get("/_next/static/chunks/app-3f2a.js", headers={"Accept-Encoding": "gzip, br"})
    assert r.status_code == 200 and r.text == big  # httpx decodes what the browser would
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
    assert int(r.headers["content-length"]) < len(big) / 10
    assert (
        r.headers["content-type"].startswith("text/javascript") or "javascript" in r.headers["content-type"]
    )
    assert r.headers["cache-control"] == IMMUTABLE
    again = site.get(
        "/_next/static/chunks/app-3f2a.js",
        headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]},
    )
    assert again.status_code == 304

    plain = site.get("/_next/static/chunks/app-3f2a.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers and plain.text == big
    assert plain.headers["etag"] != r.headers["etag"]  # two representations, two validators

    script.write_text("console.log(2)")  # changed after its twin was made: the twin is stale
    os.utime(script, (script.stat().st_mtime + 10,) * 2)
    fresh = site.get("/_next/static/chunks/app-3f2a.js", headers={"Accept-Encoding": "gzip"})
    assert fresh.text == "console.log(2)" and "content-encoding" not in fresh.headers
