"""SDK overhead on the agent's own thread, side by side with the OpenTelemetry SDK.

Both record the same work: a span with 4 attributes, nested in a run/root span, handed to a
background exporter. controlroom's exporter posts to a port where nothing listens, so it spools to
disk in the background; OpenTelemetry's BatchSpanProcessor exports to an in-memory exporter (its
cheapest case). We time only the agent's thread: the median of per-span times over many spans.

    .venv/bin/python bench/sdk_overhead.py [--spans 200000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import controlroom

ATTRS = {"user.id": "u-42", "retrieval.k": 8, "cache.hit": True, "score": 0.93}


def per_span_ns(make_span: Any, n: int, chunk: int = 100) -> list[float]:
    """Time chunks of ``chunk`` spans (a single span is too short for the clock); ns per span."""
    out = []
    for _ in range(n // chunk):
        t = time.perf_counter_ns()
        for _ in range(chunk):
            with make_span():
                pass
        out.append((time.perf_counter_ns() - t) / chunk)
    return out


def bench_controlroom(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as spool:
        controlroom.init(
            url="http://127.0.0.1:9",
            api_key="cr_" + "b" * 40,
            spool_dir=spool,
            strict=False,
            shutdown_timeout=0.5,
        )
        import logging

        logging.getLogger("controlroom.sdk").setLevel(logging.ERROR)
        with controlroom.run("bench"):
            per_span_ns(lambda: controlroom.span("warmup", attributes=ATTRS), 10_000)
            samples = per_span_ns(lambda: controlroom.span("step", attributes=ATTRS), n)
        controlroom.shutdown(timeout=0.5)
    return summarise(samples)


def bench_otel(n: int) -> dict[str, float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("run"):
        per_span_ns(lambda: tracer.start_as_current_span("warmup", attributes=ATTRS), 10_000)
        samples = per_span_ns(lambda: tracer.start_as_current_span("step", attributes=ATTRS), n)
    provider.force_flush()
    exported = len(exporter.get_finished_spans())
    provider.shutdown()
    result = summarise(samples)
    result["exported"] = exported
    result["recorded"] = n + 10_000 + 1
    return result


def summarise(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=200_000)
    args = parser.parse_args()
    result = {"controlroom": bench_controlroom(args.spans), "opentelemetry": bench_otel(args.spans)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
