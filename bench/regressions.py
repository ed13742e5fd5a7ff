"""Eval regression detection: how long `controlroom.evals.regressions.detect` takes over many
series, in-process (it is pure: no database, no server).

100 series of 2,500 scores each (2,000 baseline, 500 recent): 50 pass/fail, 40 numeric with
continuous scores (Beta-shaped, the permutation test's costly case: every score distinct) and 10
numeric ratings on a 1-5 scale (few distinct values). 15 of them are degraded, 5 of each kind
(pass rate 0.90 -> 0.80, continuous mean 0.80 -> 0.70, rating mean 0.75 -> 0.665), the rest
unchanged. The data is generated before
the clock starts; each repeat times one `detect` call over all 100 series. Prints one JSON
document: seconds per call (best and median of the repeats), what was flagged, and a check that
exactly the degraded series were flagged and that a second call gives the same findings.
Target: under 10 s.

    .venv/bin/python bench/regressions.py [--series 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from common import cpu_busy, log
from controlroom.evals.regressions import Kind, Sample, SeriesKey, SeriesPair, detect

TARGET_S = 10.0
BASELINE_N, RECENT_N = 2_000, 500


def _sample(values: np.ndarray, kind: Kind, prefix: str) -> Sample:
    return Sample(values, [f"{prefix}-{i}" for i in range(values.size)], kind)


def make_series(count: int, seed: int = 0) -> tuple[list[SeriesPair], set[SeriesKey]]:
    """``count`` series: half pass/fail, 40% continuous, 10% ratings; 3 in 20 degraded."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.0, 0.25, 0.5, 0.75, 1.0])  # a 1-5 rating, normalised
    rating_ok, rating_bad = [0.05, 0.05, 0.15, 0.35, 0.40], [0.08, 0.10, 0.20, 0.32, 0.30]
    pairs: list[SeriesPair] = []
    degraded: set[SeriesKey] = set()
    for i in range(count):
        key = SeriesKey(f"agent-{i % 7}", f"evaluator-{i}", "1", "score")
        worse = i % 20 in (0, 5, 9)
        kind: Kind
        if i % 10 < 5:
            kind = "boolean"
            base = (rng.random(BASELINE_N) < 0.90) * 1.0
            rec = (rng.random(RECENT_N) < (0.80 if worse else 0.90)) * 1.0
        elif i % 10 < 9:
            kind = "numeric"
            base = rng.beta(8, 2, BASELINE_N)  # mean 0.8
            rec = rng.beta(7, 3, RECENT_N) if worse else rng.beta(8, 2, RECENT_N)  # 0.7 or 0.8
        else:
            kind = "numeric"
            base = rng.choice(levels, BASELINE_N, p=rating_ok)  # mean 0.75
            rec = rng.choice(levels, RECENT_N, p=rating_bad if worse else rating_ok)  # 0.665 or 0.75
        if worse:
            degraded.add(key)
        pairs.append(SeriesPair(key, _sample(base, kind, "base"), _sample(rec, kind, "run")))
    return pairs, degraded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pairs, degraded = make_series(args.series)
    busy = cpu_busy()
    times: list[float] = []
    findings = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        findings = detect(pairs, seed=0)
        times.append(time.perf_counter() - t)
        log(f"detect over {len(pairs)} series: {times[-1]:.2f} s")
    flagged = {f.key for f in findings if f.flagged}
    result: dict[str, Any] = {
        "benchmark": "regressions",
        "series": len(pairs),
        "scores_per_series": BASELINE_N + RECENT_N,
        "seconds_best": round(min(times), 2),
        "seconds_median": round(statistics.median(times), 2),
        "target_s": TARGET_S,
        "meets_target": min(times) < TARGET_S,
        "flagged": len(flagged),
        "degraded": len(degraded),
        "missed": sorted(str(k) for k in degraded - flagged),
        "false_alarms": sorted(str(k) for k in flagged - degraded),
        "retested": sum(1 for f in findings if (f.permutations or 0) > 2000),
        "cpu_busy_before": busy,
        "check": {"ok": flagged == degraded and detect(pairs, seed=0) == findings},
    }
    print(json.dumps(result))
    return 0 if result["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
