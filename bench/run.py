"""Run the benchmarks on SQLite and PostgreSQL, print the results side by side, and write them to
bench/results/ (one JSON file per benchmark and backend, summary.json, report.md).

    .venv/bin/python bench/run.py                          # everything, both backends (make bench)
    .venv/bin/python bench/run.py --part ingest --backend sqlite
    .venv/bin/python bench/run.py --small                  # small sizes: a quick smoke run

The first full run builds the 1M-span stores (a few minutes per backend, see README.md); later
runs reuse them from bench/cache/. Exits 1 if a correctness check failed (not for a missed target).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from common import BACKENDS, BENCH, RESULTS, log, machine_info, wait_until_quiet, write_result
from generate import GenConfig, build
from ingest import IngestConfig, run_ingest
from queries import TARGET_P95_MS, QueryConfig, run_queries

PARTS = (
    "ingest",
    "generate",
    "queries",
    "overview",
    "otlp",
    "sdk",
    "budget",
    "approvals",
    "regressions",
    "evals",
    "dashboard",
)
# Benchmarks with their own scripts; each prints JSON lines (or one JSON document) on stdout.
SCRIPTS: dict[str, list[list[str]]] = {
    "otlp": [["otlp.py"]],
    "sdk": [["sdk_overhead.py"], ["sdk_throughput.py"]],
    "budget": [["budget.py", "--backend", "sqlite"], ["budget.py", "--backend", "postgresql"]],
    "approvals": [["approvals.py", "--backend", "sqlite"], ["approvals.py", "--backend", "postgresql"]],
    "regressions": [["regressions.py"]],
    "evals": [["eval_snapshots.py", "--backend", "sqlite"], ["eval_jobs.py"]],
    "overview": [["overview.py", "--backend", "sqlite"], ["overview.py", "--backend", "postgresql"]],
    "dashboard": [["dashboard.py", "--store", "demo"], ["dashboard.py", "--store", "large"]],
}
# (shape, projector in a separate `controlroom worker` process)
INGEST_VARIANTS = (("started_ended", False), ("started_ended", True), ("recorded", False))
INGEST_TARGET_SPANS = 10_000
INGEST_TARGET_LAG_S = 2.0
BUDGET_TARGET_P50_MS, BUDGET_TARGET_P99_MS, BUDGET_TARGET_RATE = 1.0, 5.0, 2_000
APPROVAL_TARGET_P50_MS, APPROVAL_TARGET_DECISION_MS = 5.0, 100.0  # issue 10
LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])


def _ingest_table(results: dict[str, dict[str, Any]], backends: list[str]) -> str:
    metrics: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
        ("spans/s acknowledged", lambda r: f"{r['spans_per_s']:,}"),
        ("events/s acknowledged", lambda r: f"{r['events_per_s']:,}"),
        ("request p50 / p99 (ms)", lambda r: f"{r['latency']['p50_ms']:.0f} / {r['latency']['p99_ms']:.0f}"),
        ("projector max lag_seconds", lambda r: f"{r['projector']['max_lag_seconds']:.2f}"),
        ("caught up after last ack (s)", lambda r: f"{r['projector']['caught_up_after_last_ack_s']}"),
        ("server process CPU (cores)", lambda r: f"{r['server_cpu_cores']:.2f}"),
        ("others' CPU use before (%)", lambda r: f"{r['cpu_busy_before'] * 100:.0f}"),
        ("runs read back = runs sent", lambda r: "yes" if r["check"]["ok"] else "NO"),
    )
    rows: list[list[str]] = []
    variants = list(dict.fromkeys(r["variant"] for r in results.values()))
    for variant in variants:
        found = {b: results.get(f"{b}-{variant}") for b in backends}
        sample = next(r for r in found.values() if r is not None)
        label = f"{sample['config']['shape']} ({sample['events_sent'] // sample['config']['runs']} ev/run)"
        if sample["config"]["separate_worker"]:
            label += ", separate worker"
        for name, fmt in metrics:
            rows.append([f"{label}: {name}", *(fmt(r) if r else "-" for r in found.values())])
    return _table(["ingest", *(LABEL[b] for b in backends)], rows)


def _queries_table(results: dict[str, dict[str, Any]], backends: list[str]) -> str:
    names: list[str] = []
    for b in backends:
        for item in results.get(b, {}).get("results", []):
            if item["query"] not in names:
                names.append(item["query"])
    rows = []
    for name in names:
        cells = []
        for b in backends:
            item = next((i for i in results.get(b, {}).get("results", []) if i["query"] == name), None)
            if item is None:
                cells.append("-")
                continue
            h = item["http"]
            cells.append(f"{h['p50_ms']:.1f} / {h['p95_ms']:.1f} / {h['p99_ms']:.1f}")
        rows.append([name, *cells])
    return _table(["query (p50 / p95 / p99 ms)", *(LABEL[b] for b in backends)], rows)


def _generate_table(results: dict[str, dict[str, Any]], backends: list[str]) -> str:
    rows = [
        ["runs / spans", *(_fmt_store(results.get(b)) for b in backends)],
        [
            "build time (s)",
            *(str(results[b]["seconds"].get("total", "-")) if b in results else "-" for b in backends),
        ],
    ]
    return _table(["generated store", *(LABEL[b] for b in backends)], rows)


def _fmt_store(r: dict[str, Any] | None) -> str:
    return f"{r['stats']['runs']:,} / {r['stats']['spans']:,}" if r else "-"


def _machine_table(m: dict[str, Any]) -> str:
    keys = ("date", "nproc", "cpu", "ram_gib", "os", "python", "sqlite", "postgresql", "controlroom")
    rows = [[k, str(m[k])] for k in keys]
    rows.append(["postgresql settings", ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())])
    return _table(["machine", ""], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=PARTS, action="append", help="default: all (queries implies generate)")
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    ap.add_argument("--small", action="store_true", help="small sizes, for a quick check")
    ap.add_argument(
        "--ingest-runs", type=int, help=f"runs per ingest benchmark (default {IngestConfig.runs})"
    )
    ap.add_argument("--clients", type=int, default=IngestConfig.clients, help="load-generating processes")
    ap.add_argument("--runs", type=int, help=f"runs in the generated store (default {GenConfig.runs})")
    ap.add_argument("--spans", type=int, help=f"spans in the generated store (default {GenConfig.spans})")
    ap.add_argument("--requests", type=int, help=f"requests per query (default {QueryConfig.requests})")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the generated stores")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, before each measurement, for other work on the machine to stop",
    )
    args = ap.parse_args(argv)
    parts = args.part or list(PARTS)
    backends = args.backend or list(BACKENDS)
    small = args.small
    ingest_runs = args.ingest_runs or (3_000 if small else IngestConfig.runs)
    gen = {
        "runs": args.runs or (15_000 if small else GenConfig.runs),
        "spans": args.spans or (100_000 if small else GenConfig.spans),
        "big_runs": 100 if small else GenConfig.big_runs,
    }
    requests = args.requests or (200 if small else QueryConfig.requests)

    t0 = time.monotonic()
    machine = machine_info()
    ingest: dict[str, dict[str, Any]] = {}
    generated: dict[str, dict[str, Any]] = {}
    queried: dict[str, dict[str, Any]] = {}
    for backend in backends:
        if "ingest" in parts:
            for shape, separate_worker in INGEST_VARIANTS:
                cfg = IngestConfig(
                    backend=backend,
                    shape=shape,
                    runs=ingest_runs,
                    clients=args.clients,
                    separate_worker=separate_worker,
                )
                busy = wait_until_quiet(args.quiet_wait)
                ingest[f"{backend}-{cfg.variant}"] = r = {**run_ingest(cfg), "cpu_busy_before": busy}
                write_result(f"ingest-{backend}-{cfg.variant}", {"machine": machine, **r})
        if "generate" in parts or "queries" in parts:
            t = time.monotonic()
            built = build(GenConfig(backend=backend, **gen), rebuild=args.rebuild)
            generated[backend] = r = {
                "benchmark": "generate",
                "config": asdict(built.config),
                "url": built.url,
                "stats": built.stats,
                "seconds": built.seconds,
                "seconds_this_run": round(time.monotonic() - t, 1),
            }
            write_result(f"generate-{backend}", {"machine": machine, **r})
            if "queries" in parts:
                busy = wait_until_quiet(args.quiet_wait)
                r = run_queries(QueryConfig(backend=backend, requests=requests), built)
                queried[backend] = r = {**r, "cpu_busy_before": busy}
                write_result(f"queries-{backend}", {"machine": machine, **r})

    others: dict[str, list[Any]] = {}
    for part, commands in SCRIPTS.items():
        if part in parts:
            for command in commands:
                log(f"{part}: {' '.join(command)}")
                out = subprocess.run(
                    [sys.executable, *command],
                    cwd=BENCH,
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                ).stdout
                others.setdefault(part, []).extend(_json_documents(out))

    sections = ["## Machine\n\n" + _machine_table(machine)]
    if ingest:
        sections.append("## Ingest (POST /v1/events)\n\n" + _ingest_table(ingest, backends))
    if generated:
        sections.append("## Generated store\n\n" + _generate_table(generated, backends))
    if queried:
        sections.append("## Read API latency, sequential requests\n\n" + _queries_table(queried, backends))
    for part, docs in others.items():
        sections.append(f"## {part}\n\n```\n" + "\n".join(json.dumps(d) for d in docs) + "\n```")
    verdicts = _verdicts(
        ingest,
        queried,
        others.get("budget", []),
        others.get("approvals", []),
        others.get("regressions", []),
        others.get("evals", []),
    )
    sections.append("## Targets\n\n" + "\n".join(f"- {v}" for v in verdicts))
    report = "\n\n".join(sections) + "\n"
    print("\n" + report)
    write_result(
        "summary",
        {
            "machine": machine,
            "ingest": ingest,
            "generate": generated,
            "queries": queried,
            "targets": verdicts,
            **others,
        },
    )
    (RESULTS / "report.md").write_text(report)
    log(f"done in {time.monotonic() - t0:.0f} s; results in bench/results/")
    ok = all(r["check"]["ok"] for r in ingest.values())
    return 0 if ok else 1


def _verdicts(
    ingest: dict[str, dict[str, Any]],
    queried: dict[str, dict[str, Any]],
    budget: list[dict[str, Any]],
    approvals: list[dict[str, Any]],
    regressions: list[dict[str, Any]],
    evals: list[dict[str, Any]],
) -> list[str]:
    out = []
    r = ingest.get("sqlite-started_ended")
    if r is not None:
        spans_ok = r["spans_per_s"] >= INGEST_TARGET_SPANS
        lag_ok = r["projector"]["max_lag_seconds"] < INGEST_TARGET_LAG_S
        out.append(
            f"ingest on SQLite >= {INGEST_TARGET_SPANS:,} spans/s: {'MET' if spans_ok else 'MISSED'} "
            f"({r['spans_per_s']:,} spans/s); projector lag < {INGEST_TARGET_LAG_S:.0f} s: "
            f"{'MET' if lag_ok else 'MISSED'} (max {r['projector']['max_lag_seconds']:.2f} s)"
        )
    q = queried.get("sqlite")
    if q is not None:
        missed = [i["query"] for i in q["results"] if not i["meets_target"]]
        out.append(
            f"read API p95 < {TARGET_P95_MS:.0f} ms on SQLite: "
            + ("MET for every query" if not missed else f"MISSED for {', '.join(missed)}")
        )
    for b in budget:
        if b["database"] == "sqlite":
            p50, p99, rate = b["round_trip_p50_ms"], b["round_trip_p99_ms"], b["admissions_per_s"]
            out.append(
                f"reservation + settle on SQLite: p50 < {BUDGET_TARGET_P50_MS:.0f} ms "
                f"{'MET' if p50 < BUDGET_TARGET_P50_MS else 'MISSED'} ({p50:.2f} ms), "
                f"p99 < {BUDGET_TARGET_P99_MS:.0f} ms {'MET' if p99 < BUDGET_TARGET_P99_MS else 'MISSED'} "
                f"({p99:.2f} ms), >= {BUDGET_TARGET_RATE:,} admissions/s "
                f"{'MET' if rate >= BUDGET_TARGET_RATE else 'MISSED'} ({rate:,.0f}/s)"
            )
    for a in approvals:
        if a["database"] == "sqlite":
            p50 = a["ask_decide_claim"]["p50_ms"]
            lag = a["decision_to_agent"]["max_ms"]
            out.append(
                f"approval request + decide + claim on SQLite: p50 < {APPROVAL_TARGET_P50_MS:.0f} ms "
                f"{'MET' if p50 < APPROVAL_TARGET_P50_MS else 'MISSED'} ({p50:.2f} ms); a decision reaches "
                f"the waiting agent within {APPROVAL_TARGET_DECISION_MS:.0f} ms "
                f"{'MET' if lag < APPROVAL_TARGET_DECISION_MS else 'MISSED'} (max {lag:.1f} ms)"
            )
    for r in regressions:
        out.append(
            f"eval regressions over {r['series']} series of {r['scores_per_series']:,} scores < "
            f"{r['target_s']:.0f} s: {'MET' if r['meets_target'] else 'MISSED'} ({r['seconds_best']:.2f} s; "
            f"{r['flagged']} flagged of {r['degraded']} degraded, check {'ok' if r['check']['ok'] else 'FAILED'})"
        )
    for e in evals:
        if e.get("benchmark") == "eval_snapshots" and e["database"] == "sqlite":
            cheap = e["results"][1]
            out.append(
                f"eval snapshots on SQLite, {e['target']}: {'MET' if e['meets_target'] else 'MISSED'} "
                f"({cheap['runs_per_s']:,} runs/s)"
            )
        if e.get("benchmark") == "eval_jobs":
            slowest = min(r["runs_per_s"] for r in e["results"])
            out.append(
                f"eval batch jobs on SQLite, {e['target']}: {'MET' if e['meets_target'] else 'MISSED'} "
                f"(slowest {slowest:,} runs/s, check {'ok' if e['check']['ok'] else 'FAILED'})"
            )
    return out or ["(no target measured in this run)"]


def _json_documents(text: str) -> list[Any]:
    """Every JSON document in a script's output (one per line, or one spread over lines)."""
    text = text.strip()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


if __name__ == "__main__":
    sys.exit(main())
