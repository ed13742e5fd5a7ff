"""The dashboard's pages in headless Chromium: how long until each is interactive, against the demo's
store and against the 1,000,000-span store.

A real `controlroom serve` (the built dashboard in the package: `make dashboard` first) over a copy
of each store; Debian's Chromium under Playwright, logged in as an admin. For each page, a fresh
tab goes to its URL and the clock stops when the page shows its data with its controls (each page's
``ready`` condition below, checked every animation frame): the time is the page's own
``performance.now()`` then, from the start of the navigation. The first visit of each page is
"cold" (nothing cached), the next ``--repeat`` are "warm" (hashed assets cached for good, as for
anyone who has opened the dashboard before).

    .venv/bin/python bench/dashboard.py                # demo store and the 1M-span store
    .venv/bin/python bench/dashboard.py --store demo   # the demo's 30 days only
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from common import log, machine_info, percentile, serve, wait_until_quiet, write_result
from controlroom.accounts import projects
from controlroom.demo import DEMO_PASSWORD, backfill, ensure_demo_people, set_demo_caps
from controlroom.server.dashboard import BUILT
from controlroom.store.engine import Store
from controlroom.store.tables import runs
from generate import GenConfig, build

TARGET_MS = 1_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# page -> (path, what must all be on screen for it to count as interactive: its data, drawn)
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "overview": (
        "/",
        (
            "a[aria-label='failed runs in the last 24 hours']",
            "a[aria-label='spent today']",
            "svg[aria-label='runs per hour by status']",
        ),
    ),
    "runs": ("/runs/", ("table[aria-label='runs'] tbody tr",)),
    "run detail": ("/runs/view/?id={run_id}", ("[role='tree'] [role='treeitem']",)),
}


def _ready(selectors: tuple[str, ...]) -> str:
    found = " && ".join(f"document.querySelector({json.dumps(s)}) !== null" for s in selectors)
    return f"() => {found} && performance.now()"


@contextmanager
def demo_store(days: int) -> Iterator[tuple[str, str]]:
    """The demo's history in a fresh SQLite file; (url, project)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'demo.db'}")
        store.migrate()
        with store.write() as conn:
            project = projects.ensure_project(conn, name="demo")
        set_demo_caps(store, project)
        backfill(store, project, days=days)
        store.dispose()
        yield f"sqlite:///{Path(tmp) / 'demo.db'}", "demo"


@contextmanager
def large_store() -> Iterator[tuple[str, str]]:
    """A copy of the generator's 1,000,000-span store (built once, cached), with the demo's people."""
    built = build(GenConfig(backend="sqlite"))
    source = Path(built.url.removeprefix("sqlite:///"))
    with sqlite3.connect(source) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "large.db"
        shutil.copyfile(source, copy)
        store = Store(f"sqlite:///{copy}")
        with store.read() as conn:
            project = projects.get_project(conn, name=built.project)
        assert project is not None
        ensure_demo_people(store, project)
        store.dispose()
        yield f"sqlite:///{copy}", built.project


def _slowest_run(url: str) -> str:
    """The run with the most spans: the run-detail page's worst case in the store."""
    store = Store(url)
    try:
        with store.read() as conn:
            return str(
                conn.execute(select(runs.c.run_id).order_by(runs.c.span_count.desc()).limit(1)).scalar_one()
            )
    finally:
        store.dispose()


def measure(url: str, db_url: str, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    run_id = _slowest_run(db_url)
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 860})
        page = context.new_page()
        page.goto(f"{url}/login/")
        page.get_by_label("Login").fill("admin")
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{url}/")
        page.close()
        for name, (path, selector) in PAGES.items():
            times = []
            for _ in range(1 + repeat):
                tab = context.new_page()
                tab.goto(url + path.replace("{run_id}", run_id), wait_until="commit")
                times.append(
                    float(tab.wait_for_function(_ready(selector), polling="raf", timeout=30_000).json_value())
                )
                tab.close()
            warm = times[1:]
            out[name] = {
                "cold_ms": round(times[0]),
                "warm_median_ms": round(statistics.median(warm)),
                "warm_p95_ms": round(percentile(warm, 95)),
            }
            log(f"dashboard: {name}: cold {times[0]:.0f} ms, warm median {statistics.median(warm):.0f} ms")
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=("demo", "large", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    args = ap.parse_args(argv)
    if not (BUILT / "index.html").is_file():
        print("the dashboard is not built: run `make dashboard` first", file=sys.stderr)
        return 2
    stores = {"demo": lambda: demo_store(args.days), "large": large_store}
    chosen = list(stores) if args.store == "both" else [args.store]
    results: dict[str, Any] = {}
    for name in chosen:
        with stores[name]() as (db_url, _project), serve(db_url) as server:
            busy = wait_until_quiet(args.quiet_wait)
            results[name] = {"cpu_busy_before": busy, "pages": measure(server.url, db_url, args.repeat)}
    slowest = max(p["warm_p95_ms"] for r in results.values() for p in r["pages"].values())
    result = {
        "benchmark": "dashboard",
        "config": {"repeat": args.repeat, "viewport": "1366x860", "browser": CHROMIUM},
        "results": results,
        "target": f"each page interactive in under {TARGET_MS} ms",
        "meets_target": slowest < TARGET_MS,
    }
    write_result(f"dashboard-{args.store}", {"machine": machine_info(), **result})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
