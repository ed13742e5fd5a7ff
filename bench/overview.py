"""The overview's latency on the 1,000,000-span store (built by generate.py), through a real server.

``GET /v1/overview`` (the 24-hour series, the page's default, and the 7-day one) from one
keep-alive client, sequential requests after a warm-up; each also timed in-process
(``controlroom.projections.overview.overview`` on a Store, without HTTP), with the SQL it sends
explained (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE). Prints one JSON document per
backend. Target: p95 under 50 ms.

    .venv/bin/python bench/overview.py --backend sqlite --requests 300
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
from sqlalchemy import Connection

from common import BACKENDS, cpu_busy, log, serve
from controlroom.accounts import projects
from controlroom.projections import overview as ov
from controlroom.store.engine import Store
from generate import GenConfig, build
from queries import _time_http, _time_in_process, explain

TARGET_P95_MS = 50.0


def run_overview(backend: str, requests: int, warmup: int = 20, in_process: int = 50) -> dict[str, Any]:
    built = build(GenConfig(backend=backend))
    log(f"overview {backend}: {built.stats['runs']} runs, {built.stats['spans']} spans")
    store = Store(built.url)
    results = []
    try:
        with store.read() as conn:
            project = projects.get_project(conn, name=built.project)
            assert project is not None
        pid, tz = project.id, project.timezone
        with serve(built.url) as server:
            headers = {"Authorization": f"Bearer {built.api_key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                for window in ("24h", "7d"):
                    answer = client.get("/v1/overview", params={"window": window}).json()
                    errors = [k for k, v in answer.items() if isinstance(v, dict) and set(v) == {"error"}]
                    if errors:
                        raise RuntimeError(f"cards that failed: {errors}: {answer}")

                    def fn(conn: Connection, window: str = window) -> Any:
                        return ov.overview(conn, project_id=pid, timezone=tz, window=window)

                    busy = cpu_busy()
                    http = _time_http(client, [("/v1/overview", {"window": window})] * requests, warmup)
                    direct = _time_in_process(store, fn, in_process)
                    results.append(
                        {
                            "query": f"overview window={window}",
                            "http": http,
                            "in_process": direct,
                            "meets_target": http["p95_ms"] < TARGET_P95_MS,
                            "cpu_busy_before": busy,
                            "failures_24h": answer["failures"]["failed"],
                            "spikes": len(answer["cost"]["spikes"]),
                            "explain": explain(store, fn),
                        }
                    )
                    log(
                        f"  overview {window:4} p50 {http['p50_ms']:7.2f}  p95 {http['p95_ms']:7.2f}  "
                        f"p99 {http['p99_ms']:7.2f} ms   (in-process p50 {direct['p50_ms']:.2f} ms)"
                    )
    finally:
        store.dispose()
    return {
        "benchmark": "overview",
        "backend": backend,
        "store": built.stats,
        "requests": requests,
        "target_p95_ms": TARGET_P95_MS,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args(argv)
    for backend in args.backend or BACKENDS:
        print(json.dumps(run_overview(backend, args.requests)), flush=True)


if __name__ == "__main__":
    main()
