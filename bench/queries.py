"""Read-API latency on a large store (built by generate.py), through a real server.

Sequential requests from one keep-alive client, after a warm-up: ``GET /v1/runs`` first page
(no filter; agent; one status; two statuses; a common, a rare (0.5%) and a tiny
(30 runs) tag; has_error), the second page through a
cursor, ``GET /v1/costs/daily`` over 30 days, and ``GET /v1/runs/{id}`` of 200-span runs.
Each query is also timed in-process (``controlroom.projections.queries`` on a Store: database +
row handling, without HTTP), and its SQL is captured and explained (SQLite: EXPLAIN QUERY PLAN;
PostgreSQL: EXPLAIN ANALYZE), so that a slow one comes with its plan.

    .venv/bin/python bench/queries.py --backend sqlite --requests 200
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, event, select

from common import BACKENDS, latency_summary_ms, log, serve, write_result
from controlroom.accounts import projects
from controlroom.projections import queries
from controlroom.store.engine import Store
from controlroom.store.tables import runs
from generate import AGENTS, RARE_TAG, TINY_TAG, BuiltStore, GenConfig, build

TARGET_P95_MS = 50.0


@dataclass(frozen=True)
class Case:
    name: str
    params: dict[str, str]  # query string of GET /v1/runs
    run_filter: queries.RunFilter


LIST_CASES = (
    Case("runs: first page", {}, queries.RunFilter()),
    Case("runs: agent", {"agent": AGENTS[2][0]}, queries.RunFilter(agent=AGENTS[2][0])),
    Case("runs: status=failed", {"status": "failed"}, queries.RunFilter(status=("failed",))),
    Case(
        "runs: status=failed,abandoned",
        {"status": "failed,abandoned"},
        queries.RunFilter(status=("failed", "abandoned")),
    ),
    Case("runs: tag (common)", {"tag": "customer:acme"}, queries.RunFilter(tag="customer:acme")),
    Case(f"runs: tag (rare, {RARE_TAG})", {"tag": RARE_TAG}, queries.RunFilter(tag=RARE_TAG)),
    Case(f"runs: tag (tiny, {TINY_TAG})", {"tag": TINY_TAG}, queries.RunFilter(tag=TINY_TAG)),
    Case("runs: has_error", {"has_error": "true"}, queries.RunFilter(has_error=True)),
)


@dataclass(frozen=True)
class QueryConfig:
    backend: str = "sqlite"
    requests: int = 300  # measured requests per query
    warmup: int = 20
    in_process: int = 50  # in-process repetitions per query


class _Capture:
    """Records the SQL a block of code sends through an engine."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> _Capture:
        event.listen(self.store.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.store.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters))


def explain(store: Store, fn: Callable[[Connection], Any]) -> list[dict[str, Any]]:
    """The plans of the SELECTs that ``fn`` runs."""
    with _Capture(store) as cap, store.read() as conn:
        fn(conn)
    plans = []
    with store.read() as conn:
        for sql, params in cap.statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
            rows = conn.exec_driver_sql(prefix + sql, params).all()
            plan = [" ".join(str(c) for c in r[1:]) if store.is_sqlite else str(r[0]) for r in rows]
            plans.append({"sql": " ".join(sql.split()), "plan": plan})
    return plans


def _list_runs(project_id: int, f: queries.RunFilter) -> Callable[[Connection], Any]:
    return lambda conn: queries.list_runs(conn, project_id, f)


def _time_in_process(store: Store, fn: Callable[[Connection], Any], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        with store.read() as conn:
            fn(conn)
        samples.append(time.perf_counter() - t)
    return latency_summary_ms(samples)


def _time_http(
    client: httpx.Client, requests: list[tuple[str, dict[str, str]]], warmup: int
) -> dict[str, Any]:
    """Latency of ``requests`` (cycled), sequentially, after ``warmup`` unmeasured ones."""
    samples = []
    size = 0
    for i in range(warmup + len(requests)):
        path, params = requests[i % len(requests)] if i < warmup else requests[i - warmup]
        t = time.perf_counter()
        r = client.get(path, params=params)
        elapsed = time.perf_counter() - t
        r.raise_for_status()
        if i >= warmup:
            samples.append(elapsed)
            size += len(r.content)
    return {**latency_summary_ms(samples), "mean_bytes": size // max(1, len(samples))}


def run_queries(cfg: QueryConfig, built: BuiltStore) -> dict[str, Any]:
    log(f"queries {cfg.backend}: {built.stats['runs']} runs, {built.stats['spans']} spans")
    store = Store(built.url)
    results: list[dict[str, Any]] = []
    try:
        with store.read() as conn:
            project = projects.get_project(conn, name=built.project)
            assert project is not None
            big = list(
                conn.execute(
                    select(runs.c.run_id)
                    .where(runs.c.project_id == project.id, runs.c.span_count >= 200)
                    .order_by(runs.c.run_id)
                    .limit(50)
                ).scalars()
            )
            first = queries.list_runs(conn, project.id, queries.RunFilter(), limit=50)
        if not big:
            raise RuntimeError("the store has no 200-span run")
        pid = project.id
        cases: list[tuple[str, list[tuple[str, dict[str, str]]], Callable[[Connection], Any]]] = []
        for c in LIST_CASES:
            cases.append((c.name, [("/v1/runs", c.params)], _list_runs(pid, c.run_filter)))
        cursor = first.next_cursor
        cases.append(
            (
                "runs: page 2 (cursor)",
                [("/v1/runs", {"cursor": cursor})],
                lambda conn: queries.list_runs(conn, pid, queries.RunFilter(), cursor=cursor),
            )
        )
        cases.append(
            (
                "costs/daily by agent,model",
                [("/v1/costs/daily", {"group_by": "agent,model"})],
                lambda conn: queries.daily_costs(
                    conn, pid, project.timezone, since=None, until=None, group_by=("agent", "model")
                ),
            )
        )
        cases.append(
            (
                "run detail (200 spans)",
                [(f"/v1/runs/{rid}", {}) for rid in big],
                lambda conn: queries.get_run(conn, pid, big[0]),
            )
        )
        with serve(built.url) as server:
            headers = {"Authorization": f"Bearer {built.api_key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                for name, reqs, fn in cases:
                    todo = [reqs[i % len(reqs)] for i in range(cfg.requests)]
                    http = _time_http(client, todo, cfg.warmup)
                    direct = _time_in_process(store, fn, cfg.in_process)
                    item = {
                        "query": name,
                        "http": http,
                        "in_process": direct,
                        "meets_target": http["p95_ms"] < TARGET_P95_MS,
                        "explain": explain(store, fn),
                    }
                    results.append(item)
                    log(
                        f"  {name:32} p50 {http['p50_ms']:7.2f}  p95 {http['p95_ms']:7.2f}  "
                        f"p99 {http['p99_ms']:7.2f} ms   (in-process p50 {direct['p50_ms']:.2f} ms)"
                    )
    finally:
        store.dispose()
    return {
        "benchmark": "queries",
        "config": asdict(cfg),
        "store": {"config": asdict(built.config), "stats": built.stats},
        "target_p95_ms": TARGET_P95_MS,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    ap.add_argument("--requests", type=int, default=QueryConfig.requests)
    ap.add_argument("--runs", type=int, default=GenConfig.runs, help="size of the generated store")
    ap.add_argument("--spans", type=int, default=GenConfig.spans)
    ap.add_argument("--big-runs", type=int, default=GenConfig.big_runs)
    args = ap.parse_args(argv)
    for backend in args.backend or BACKENDS:
        built = build(GenConfig(backend=backend, runs=args.runs, spans=args.spans, big_runs=args.big_runs))
        result = run_queries(QueryConfig(backend=backend, requests=args.requests), built)
        write_result(f"queries-{backend}", result)


if __name__ == "__main__":
    main()
