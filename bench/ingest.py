"""Durable ingest throughput through ``POST /v1/events``, and how far the projector lags behind.

A real ``controlroom serve`` runs in a subprocess on a fresh database; 2-4 client processes
(httpx, keep-alive, one request in flight each) post pre-built batches of ~500 events (whole
runs, gzip-compressed JSON as the SDK's exporter sends them) as fast as the server acknowledges
them. A 200 means the batch is committed (SQLite: synchronous=FULL;
PostgreSQL: synchronous_commit=on), so acknowledged spans/s is durable throughput. Meanwhile the
parent samples ``GET /v1/health``; after the last ack it waits until ``lag_events`` is 0.

    .venv/bin/python bench/ingest.py --backend sqlite --runs 6000
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, func, select

from common import (
    BACKENDS,
    create_key,
    fresh_database,
    latency_summary_ms,
    log,
    process_cpu_seconds,
    serve,
    write_result,
)
from controlroom.store.tables import events, runs, spans
from workload import RunSpec, build_run

SHAPES = {"started_ended": False, "recorded": True}  # shape -> span.recorded?
AGENTS = ("support-bot", "research-agent", "sql-analyst")


@dataclass(frozen=True)
class IngestConfig:
    backend: str = "sqlite"
    shape: str = "started_ended"  # or "recorded"
    runs: int = 24_000
    spans_per_run: int = 6
    batch_events: int = 500
    clients: int = 3
    separate_worker: bool = False  # projector in `controlroom worker` (`serve --no-worker`)

    @property
    def variant(self) -> str:
        return self.shape + ("-worker" if self.separate_worker else "")

    health_every: float = 0.1  # seconds between /v1/health samples
    drain_timeout: float = 600.0  # most seconds to wait for the projector to catch up


@dataclass(frozen=True)
class _ClientJob:
    index: int
    url: str
    key: str
    runs: int
    spans_per_run: int
    batch_events: int
    recorded: bool


def _build_bodies(job: _ClientJob) -> tuple[list[bytes], list[int]]:
    """Request bodies of whole runs, ~batch_events events each, and the event count of each."""
    rng = random.Random(job.index)
    now = time.time_ns()
    bodies: list[bytes] = []
    counts: list[int] = []
    pending: list[dict[str, Any]] = []
    for i in range(job.runs):
        spec = RunSpec(
            run_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            agent=AGENTS[i % len(AGENTS)],
            start_ns=now - 120 * 10**9 + i * 1000,
            n_spans=job.spans_per_run,
            tags=("bench", f"client-{job.index}"),
            user_id=f"user-{rng.randrange(1000)}",
            session_id=f"session-{rng.randrange(10_000)}",
        )
        run_events = build_run(spec, rng, recorded=job.recorded)
        if pending and len(pending) + len(run_events) > job.batch_events:
            bodies.append(_encode(pending))
            counts.append(len(pending))
            pending = []
        pending.extend(run_events)
    if pending:
        bodies.append(_encode(pending))
        counts.append(len(pending))
    return bodies, counts


def _encode(events: list[dict[str, Any]]) -> bytes:
    """A request body as the SDK's exporter makes it: JSON, gzip level 1."""
    return gzip.compress(orjson.dumps({"events": events}), compresslevel=1)


def _client_main(job: _ClientJob, start: Any, results: Any) -> None:
    """One load-generating process: build every body, wait for the start, post them in order."""
    try:
        bodies, counts = _build_bodies(job)
        headers = {
            "Authorization": f"Bearer {job.key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        latencies: list[float] = []
        accepted = duplicates = rejected = failures = 0
        with httpx.Client(base_url=job.url, headers=headers, timeout=120) as client:
            client.get("/v1/runs", params={"limit": 1}).raise_for_status()  # connect, warm the key cache
            start.wait()
            first = time.monotonic()
            for body, n in zip(bodies, counts, strict=True):
                t0 = time.monotonic()
                r = client.post("/v1/events", content=body)
                latencies.append(time.monotonic() - t0)
                if r.status_code != 200:
                    failures += 1
                    continue
                doc = r.json()
                accepted += doc["accepted"]
                duplicates += doc["duplicates"]
                rejected += len(doc["rejected"])
                if doc["accepted"] != n:
                    failures += 1
            last_ack = time.monotonic()
        results.put(
            {
                "index": job.index,
                "requests": len(bodies),
                "events": sum(counts),
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": rejected,
                "failures": failures,
                "first_send": first,
                "last_ack": last_ack,
                "latencies": latencies,
            }
        )
    except BaseException as e:
        start.abort()  # the parent must not wait for a client that will never arrive
        results.put({"index": job.index, "error": repr(e)})
        raise


class HealthSampler:
    """Polls /v1/health on a thread; keeps the largest lag seen."""

    def __init__(self, url: str, every: float) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.every = every
        self.max_lag_seconds = 0.0
        self.max_lag_events = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-sampler", daemon=True)

    def sample(self) -> dict[str, Any]:
        projector: dict[str, Any] = self.client.get("/v1/health").json()["projector"]
        self.samples += 1
        self.max_lag_seconds = max(self.max_lag_seconds, projector["lag_seconds"])
        self.max_lag_events = max(self.max_lag_events, projector["lag_events"])
        return projector

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_caught_up(self, timeout: float) -> float | None:
        """Poll until lag_events == 0; returns when (monotonic), None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sample()["lag_events"] == 0:
                return time.monotonic()
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.client.close()


def _count_runs_via_api(url: str, key: str, expected: int) -> int:
    """Page through GET /v1/runs (bounded by the expected count) and count the runs."""
    total = 0
    cursor: str | None = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for _ in range(expected // 200 + 5):
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/runs", params=params).raise_for_status().json()
            total += len(page["runs"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    return total


def _count_in_db(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                "events": conn.execute(select(func.count()).select_from(events)).scalar_one(),
                "runs": conn.execute(select(func.count()).select_from(runs)).scalar_one(),
                "runs_succeeded": conn.execute(
                    select(func.count()).select_from(runs).where(runs.c.status == "succeeded")
                ).scalar_one(),
                "spans": conn.execute(select(func.count()).select_from(spans)).scalar_one(),
            }
    finally:
        engine.dispose()


def run_ingest(cfg: IngestConfig) -> dict[str, Any]:
    recorded = SHAPES[cfg.shape]
    per_client = [
        cfg.runs // cfg.clients + (1 if i < cfg.runs % cfg.clients else 0) for i in range(cfg.clients)
    ]
    log(
        f"ingest {cfg.backend} {cfg.shape}{' (separate worker)' if cfg.separate_worker else ''}: "
        f"{cfg.runs} runs x {cfg.spans_per_run} spans, {cfg.clients} clients"
    )
    with fresh_database(cfg.backend, "ingest") as db_url:
        key = create_key(db_url)
        with serve(db_url, separate_worker=cfg.separate_worker) as server:
            ctx = mp.get_context("fork")  # before any thread of ours starts
            start = ctx.Barrier(cfg.clients + 1)
            results = ctx.Queue()
            procs = [
                ctx.Process(
                    target=_client_main,
                    args=(
                        _ClientJob(i, server.url, key, n, cfg.spans_per_run, cfg.batch_events, recorded),
                        start,
                        results,
                    ),
                    daemon=True,
                )
                for i, n in enumerate(per_client)
            ]
            sampler = HealthSampler(server.url, cfg.health_every)
            try:
                for p in procs:
                    p.start()
                start.wait(timeout=600)  # every client has built its bodies
                t_start = time.monotonic()
                cpu_start = process_cpu_seconds(server.pid)
                sampler.start()
                outcomes = [results.get(timeout=3600) for _ in procs]
                for o in outcomes:
                    if "error" in o:
                        raise RuntimeError(f"client {o['index']} failed: {o['error']}")
                last_ack = max(o["last_ack"] for o in outcomes)
                sampler.stop()
                caught_up = sampler.wait_caught_up(cfg.drain_timeout)
                server_cores = (process_cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - t_start)
                api_runs = _count_runs_via_api(server.url, key, cfg.runs)
            finally:
                sampler.stop()
                sampler.close()
                for p in procs:
                    p.join(10)
                    if p.is_alive():
                        p.kill()
                        p.join(5)
        counts = _count_in_db(db_url)

    elapsed = last_ack - t_start
    sent_events = sum(o["events"] for o in outcomes)
    total_spans = cfg.runs * cfg.spans_per_run
    latencies = [x for o in outcomes for x in o["latencies"]]
    errors = sum(o["failures"] for o in outcomes)
    correct = (
        api_runs == cfg.runs == counts["runs"] == counts["runs_succeeded"]
        and counts["spans"] == total_spans
        and counts["events"] == sent_events
        and errors == 0
    )
    result = {
        "benchmark": "ingest",
        "variant": cfg.variant,
        "config": asdict(cfg),
        "requests": len(latencies),
        "events_sent": sent_events,
        "spans_sent": total_spans,
        "seconds": round(elapsed, 3),
        "spans_per_s": round(total_spans / elapsed),
        "events_per_s": round(sent_events / elapsed),
        "latency": latency_summary_ms(latencies),
        "projector": {
            "max_lag_seconds": round(sampler.max_lag_seconds, 3),
            "max_lag_events": sampler.max_lag_events,
            "caught_up_after_last_ack_s": round(caught_up - last_ack, 3) if caught_up else None,
            "health_samples": sampler.samples,
            "spans_per_s_projected": round(total_spans / (caught_up - t_start)) if caught_up else None,
        },
        "server_cpu_cores": round(server_cores, 2),  # CPU the server process used while it worked
        "check": {
            "runs_sent": cfg.runs,
            "runs_api": api_runs,
            **counts,
            "request_errors": errors,
            "ok": correct,
        },
    }
    log(
        f"  {result['spans_per_s']} spans/s, {result['events_per_s']} events/s, "
        f"p50 {result['latency']['p50_ms']} ms p99 {result['latency']['p99_ms']} ms, "
        f"max lag {result['projector']['max_lag_seconds']} s, "
        f"caught up {result['projector']['caught_up_after_last_ack_s']} s after last ack, correct={correct}"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    ap.add_argument("--shape", choices=tuple(SHAPES), action="append", help="default: both")
    ap.add_argument("--runs", type=int, default=IngestConfig.runs)
    ap.add_argument("--clients", type=int, default=IngestConfig.clients)
    ap.add_argument("--batch-events", type=int, default=IngestConfig.batch_events)
    ap.add_argument(
        "--separate-worker", action="store_true", help="serve --no-worker, plus a `controlroom worker`"
    )
    args = ap.parse_args(argv)
    for backend in args.backend or BACKENDS:
        for shape in args.shape or tuple(SHAPES):
            cfg = IngestConfig(
                backend=backend,
                shape=shape,
                runs=args.runs,
                clients=args.clients,
                batch_events=args.batch_events,
                separate_worker=args.separate_worker,
            )
            result = run_ingest(cfg)
            write_result(f"ingest-{backend}-{cfg.variant}", result)


if __name__ == "__main__":
    main()
