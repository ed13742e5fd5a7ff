"""SDK throughput: one agent process emits spans as fast as it can into a running server; every
span must arrive (none lost), however far the server falls behind.

Starts `controlroom serve` on a fresh SQLite file, emits ``--spans`` spans (runs of 1,000 spans,
4 attributes each) from one thread, then waits until the server's run log holds every event.

    .venv/bin/python bench/sdk_throughput.py [--spans 200000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import httpx

import controlroom
from common import serve
from controlroom.accounts import projects
from controlroom.store.engine import Store

ATTRS = {"user.id": "u-42", "retrieval.k": 8, "cache.hit": True, "score": 0.93}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{tmp}/bench.db"
        store = Store(db)
        store.migrate()
        with store.write() as conn:
            key = projects.create_key(conn, project=projects.ensure_project(conn, name="bench")).key
        with serve(db) as server:
            url = server.url
            start_head = httpx.get(f"{url}/v1/health").json()["projector"]["head"]
            controlroom.init(url=url, api_key=key, spool_dir=f"{tmp}/spool", batch_size=2000)
            runs = args.spans // 1000
            t0 = time.perf_counter()
            for _ in range(runs):
                with controlroom.run("throughput"):
                    for _ in range(1000):
                        with controlroom.span("step", attributes=ATTRS):
                            pass
            emitted = time.perf_counter() - t0
            controlroom.flush(timeout=600)
            expected = start_head + runs * (2 + 2 * 1000)
            while (head := httpx.get(f"{url}/v1/health").json()["projector"]["head"]) < expected:
                if time.perf_counter() - t0 > 900:
                    break
                time.sleep(0.1)
            delivered = time.perf_counter() - t0
            controlroom.shutdown()
            result = {
                "spans": runs * 1000,
                "emit_spans_per_s": runs * 1000 / emitted,
                "seconds_until_all_durable": delivered,
                "events_expected": expected - start_head,
                "events_in_log": head - start_head,
                "lost": expected - head,
            }
            print(json.dumps(result, indent=2))
        store.dispose()


if __name__ == "__main__":
    main()
