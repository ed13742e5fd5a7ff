"""The evals' batch path: read-only run snapshots loaded from the read model (``load_runs``), then
built-in evaluators run on each, as a batch job over historical runs does.

A store of 20,000 runs of 6 spans on average (the generator's fleet: a root agent span, model
calls with ~1 KB of messages, tool calls; succeeded, failed, cancelled and abandoned runs) is
built once through controlroom's own ingest and projector and cached (``generate.py``). Then, in
batches of 1,000 run ids (one read transaction each): ``load_runs`` alone, and ``load_runs`` plus
three cheap built-ins (run_succeeded, step_count, cost_within), and plus three that read JSON
values (no_loops, output_is_json, trajectory in superset mode). Each is timed ``--repeat`` times;
the best pass is reported (the machine is shared), with the check that every span was loaded.

    .venv/bin/python bench/eval_snapshots.py                       # SQLite, 20,000 runs
    .venv/bin/python bench/eval_snapshots.py --backend postgresql --runs 5000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from common import BACKENDS, log, machine_info, wait_until_quiet, write_result
from controlroom.evals.builtins import (
    cost_within,
    no_loops,
    output_is_json,
    run_succeeded,
    step_count,
    trajectory,
)
from controlroom.evals.evaluator import Evaluator, evaluate
from controlroom.evals.loading import load_runs
from controlroom.store.engine import Store
from controlroom.store.tables import projects, runs
from generate import GenConfig, build

BATCH = 1_000
TARGET_RUNS_PER_S = 5_000  # load + three cheap built-ins, SQLite


def _pass(
    store: Store, project_id: int, run_ids: list[str], evaluators: Sequence[Evaluator[..., Any]]
) -> tuple[float, int, Counter[str]]:
    """One pass over every run: seconds, spans loaded, outcomes by status."""
    spans = 0
    outcomes: Counter[str] = Counter()
    t = time.perf_counter()
    for i in range(0, len(run_ids), BATCH):
        with store.read() as conn:
            loaded = load_runs(conn, project_id, run_ids[i : i + BATCH])
        for run in loaded.values():
            spans += len(run.spans)
            for e in evaluators:
                outcomes[evaluate(e, run).status] += 1
    return time.perf_counter() - t, spans, outcomes


def _best(
    repeat: int, once: Callable[[], tuple[float, int, Counter[str]]]
) -> tuple[float, int, Counter[str]]:
    results = [once() for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


def run_bench(backend: str, n_runs: int, repeat: int, quiet_wait: float) -> dict[str, Any]:
    built = build(GenConfig(backend=backend, runs=n_runs, spans=6 * n_runs, big_runs=0))
    store = Store(built.url)
    try:
        with store.read() as conn:
            project_id = conn.execute(
                select(projects.c.id).where(projects.c.name == built.project)
            ).scalar_one()
            run_ids = list(
                conn.execute(
                    select(runs.c.run_id).where(runs.c.project_id == project_id).order_by(runs.c.started_at)
                ).scalars()
            )
        variants: dict[str, list[Evaluator[..., Any]]] = {
            "load_runs only": [],
            "load_runs + 3 cheap built-ins": [
                run_succeeded(),
                step_count(max=10),
                cost_within(max_usd="0.05"),
            ],
            "load_runs + 3 JSON-reading built-ins": [
                no_loops(k=3),
                output_is_json(),
                trajectory(expected=["search_docs"], mode="superset", arguments="ignored"),
            ],
        }
        busy = wait_until_quiet(quiet_wait)
        _pass(store, project_id, run_ids[:BATCH], [])  # warm the page cache and the pools
        results = []
        for label, evaluators in variants.items():
            seconds, spans, outcomes = _best(
                repeat, lambda e=evaluators: _pass(store, project_id, run_ids, e)
            )
            results.append(
                {
                    "variant": label,
                    "runs": len(run_ids),
                    "seconds": round(seconds, 3),
                    "runs_per_s": round(len(run_ids) / seconds),
                    "spans_per_s": round(spans / seconds),
                    "outcomes": dict(outcomes),
                    "check": {"spans_loaded": spans, "spans_stored": built.stats["spans"]},
                }
            )
            log(f"eval_snapshots {backend}: {label}: {results[-1]['runs_per_s']:,} runs/s")
    finally:
        store.dispose()
    cheap = results[1]["runs_per_s"]
    return {
        "benchmark": "eval_snapshots",
        "database": backend,
        "config": {"runs": n_runs, "batch": BATCH, "repeat": repeat},
        "cpu_busy_before": busy,
        "results": results,
        "target": f">= {TARGET_RUNS_PER_S:,} runs/s (load + 3 cheap built-ins, SQLite)",
        "meets_target": cheap >= TARGET_RUNS_PER_S if backend == "sqlite" else None,
        "check": {"ok": all(r["check"]["spans_loaded"] == r["check"]["spans_stored"] for r in results)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS, default="sqlite")
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    args = ap.parse_args(argv)
    result = run_bench(args.backend, args.runs, args.repeat, args.quiet_wait)
    write_result(f"eval_snapshots-{args.backend}", {"machine": machine_info(), **result})
    print(json.dumps(result))
    return 0 if result["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
