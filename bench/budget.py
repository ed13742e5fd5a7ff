"""The daily cost cap at the call boundary: a reservation + settle round trip over loopback HTTP.

Starts `controlroom serve` on a fresh database, sets a cap that is never reached, then:
- latency: one caller, reserve then settle, N times: p50 / p99 of the pair;
- throughput: several client processes reserving and settling as fast as they can: admissions/s;
- under ingest: one caller again, while a client process posts agent traces to /v1/events as fast
  as the server takes them (SDK-shaped batches of ~500 events): p50 / p99 of the pair then, since
  on SQLite a reservation must wait while a batch of traces holds the write lock.

    .venv/bin/python bench/budget.py [--backend sqlite|postgresql] [--n 2000] [--procs 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import time
from decimal import Decimal
from typing import Any

import httpx

from common import fresh_database, latency_summary_ms, percentile, serve
from controlroom.accounts import projects
from controlroom.budget import ledger
from controlroom.cost import Pricer, Usage
from controlroom.sdk._control import ControlClient
from controlroom.store.engine import Store

WARM_UP = 200
INPUT_TOKENS, OUTPUT_TOKENS = 1500, 200  # what each call reports when it settles


def pair(control: ControlClient) -> None:
    rid = control.reserve(
        agent="bench",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=2000,
        max_output_tokens=500,
    )
    assert rid is not None
    assert control.settle(
        rid,
        outcome="completed",
        usage={"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        cost_usd=None,
    )


def timed_pair(control: ControlClient) -> float:
    """One reserve + settle pair: its round trip in ms."""
    t = time.perf_counter_ns()
    pair(control)
    return (time.perf_counter_ns() - t) / 1e6


def loop(url: str, key: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    control = ControlClient(url, key, timeout=30)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pair(control)
        n += 1
    control.close()
    out.put(n)


def under_ingest(url: str, key: str, runs: int) -> dict[str, Any]:
    """Reserve + settle pairs, one after the other, for as long as one ingest client is posting."""
    from ingest import _client_main, _ClientJob

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    job = _ClientJob(index=0, url=url, key=key, runs=runs, spans_per_run=6, batch_events=500, recorded=False)
    poster = ctx.Process(target=_client_main, args=(job, start, results))
    poster.start()
    control = ControlClient(url, key, timeout=30)
    start.wait(timeout=300)  # the client has built its bodies
    samples: list[float] = []
    while True:
        try:
            posted = results.get_nowait()
            break
        except queue.Empty:
            samples.append(timed_pair(control))
    poster.join(60)
    control.close()
    assert "error" not in posted, posted
    seconds = posted["last_ack"] - posted["first_send"]
    return {
        "samples": samples,
        "pairs": len(samples),
        "round_trip_p50_ms": percentile(samples, 50),
        "round_trip_p99_ms": percentile(samples, 99),
        "ingest_spans_per_s": round(runs * 6 / seconds),
        "ingest_request_p99_ms": latency_summary_ms(posted["latencies"])["p99_ms"],
    }


def ledger_check(url: str, key: str, pairs: int) -> dict[str, Any]:
    """After the run: nothing is held, and the day's settled spend through reservations is exactly
    the pairs' cost."""
    (status,) = httpx.get(f"{url}/v1/budgets", headers={"Authorization": f"Bearer {key}"}).json()["budgets"]
    each = Pricer(()).cost_nanos(
        provider="openai",
        model="gpt-4o-mini",
        usage=Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS),
        at_ns=time.time_ns(),
    )
    assert each is not None
    expected = Decimal(each * pairs) / 10**9
    guarded = Decimal(status["settled_usd"]) - Decimal(
        status["unguarded_usd"]
    )  # the traces posted: unguarded
    ok = status["held_usd"] == "0" and guarded == expected
    return {"ok": ok, "pairs": pairs, "settled_guarded_usd": str(guarded), "expected_usd": str(expected)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--n", type=int, default=2000, help="round trips for the latency figures")
    parser.add_argument("--procs", type=int, default=4, help="client processes for the throughput figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the throughput run")
    parser.add_argument(
        "--ingest-runs",
        type=int,
        default=3000,
        help="agent runs (6 spans each) posted during 'under ingest'; 0: skip",
    )
    args = parser.parse_args()
    with fresh_database(args.backend, "budget") as db:
        store = Store(db)
        store.migrate()
        with store.write() as conn:
            project = projects.ensure_project(conn, name=f"bench-{os.getpid()}")
            key = projects.create_key(conn, project=project).key
            ledger.set_budget(store, conn, project=project, agent=None, cap_usd="1000000")
        store.dispose()
        with serve(db) as server:
            url = server.url
            control = ControlClient(url, key, timeout=30)
            for _ in range(WARM_UP):
                pair(control)
            samples = [timed_pair(control) for _ in range(args.n)]
            control.close()
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            procs = [ctx.Process(target=loop, args=(url, key, args.seconds, out)) for _ in range(args.procs)]
            for p in procs:
                p.start()
            total = sum(out.get(timeout=args.seconds + 60) for _ in procs)
            for p in procs:
                p.join()
            loaded = under_ingest(url, key, args.ingest_runs) if args.ingest_runs else None
            measured = len(loaded.pop("samples")) if loaded else 0
            check = ledger_check(url, key, pairs=WARM_UP + args.n + total + measured)
            result = {
                "database": args.backend,
                "round_trip_p50_ms": percentile(samples, 50),
                "round_trip_p99_ms": percentile(samples, 99),
                "admissions_per_s": total / args.seconds,
                "client_processes": args.procs,
                "under_ingest": loaded,
                "check": check,
            }
            print(json.dumps(result, indent=2))
            if not check["ok"]:
                sys.exit(1)


if __name__ == "__main__":
    main()
