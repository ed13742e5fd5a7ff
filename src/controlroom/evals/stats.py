"""The statistics behind eval regressions: one-sided tests that the recent window scores lower than
the baseline, the Benjamini-Hochberg correction over many series, and confidence intervals for the
change. Pure functions of numbers (numpy, no database), so they can be checked against textbook
values.

Conventions, the same everywhere: the *baseline* is the window we compare against, the *recent*
window is the one that may have regressed; every p-value is for the one-sided alternative "recent
is lower"; every interval is for the change ``recent - baseline`` (negative when scores dropped).
Scores are in 0..1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

PERMUTATIONS = 2000
"""Default permutations per test. The p-value's Monte Carlo standard error is at most
``sqrt(p (1 - p) / B)``: about 0.005 at p = 0.05, so a series near the usual threshold is called
the same way from one seed to the next, and a numeric series of 2,500 scores costs ~30 ms. Its
floor, 1 / 2001 = 0.0005, is too coarse once many series are corrected together (BH needs
p <= q / m for a lone regression): :func:`controlroom.evals.regressions.detect` re-tests with
more permutations exactly where that matters."""

_MASK_BUDGET = 1 << 22
"""Booleans in one chunk's membership mask (4 MB, or 256 rows if more): bounds memory whatever the
sample sizes, and stays in cache (8 MB made a chunk 1.5x slower per permutation)."""
_MIN_ROWS = 256
_DISTINCT_FOR_COUNTS = 256
"""Up to this many distinct pooled values, permutations are drawn as counts per value."""
_TINY = 2.0**-60
"""A hypergeometric term this much smaller than the running sum no longer changes a double."""

FloatArray = npt.NDArray[np.float64]


# -- pass/fail: Fisher's exact test ----------------------------------------------------------------


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_one_sided(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact p for the 2x2 table ``[[a, b], [c, d]]`` = baseline passes, baseline
    fails; recent passes, recent fails: the probability, with every margin fixed, of the baseline
    holding ``a`` or more of all the passes, i.e. of the recent pass rate being this much lower or
    lower still by chance alone.

    Exact: the terms of the hypergeometric tail are computed in log space with :func:`math.lgamma`
    (no factorial overflows, stable for tables of tens of thousands) and summed outward from the
    tail's largest term until they stop mattering, so the cost is about the distribution's width,
    not the table's size. A side with no scores carries no evidence: p = 1.
    """
    for v in (a, b, c, d):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"table cells must be non-negative integers, got {[a, b, c, d]!r}")
    a, b, c, d = int(a), int(b), int(c), int(d)
    n_base, passes, total = a + b, a + c, a + b + c + d
    if n_base == 0 or c + d == 0:
        return 1.0
    lowest, highest = max(0, n_base - (total - passes)), min(passes, n_base)
    if a <= lowest:
        return 1.0
    log_all = _log_comb(total, n_base)

    def log_term(x: int) -> float:
        return _log_comb(passes, x) + _log_comb(total - passes, n_base - x) - log_all

    # The pmf is unimodal: the tail's largest term is at the mode or at `a`, whichever is higher;
    # terms shrink monotonically on both sides of it.
    mode = (n_base + 1) * (passes + 1) // (total + 2)
    peak = max(a, min(mode, highest))
    log_peak = log_term(peak)
    scaled = 1.0  # the sum of terms / the peak term
    for x in range(peak + 1, highest + 1):
        t = math.exp(log_term(x) - log_peak)
        scaled += t
        if t < _TINY * scaled:
            break
    for x in range(peak - 1, a - 1, -1):
        t = math.exp(log_term(x) - log_peak)
        scaled += t
        if t < _TINY * scaled:
            break
    return min(1.0, math.exp(log_peak) * scaled)


# -- numeric scores: a permutation test on the difference of means --------------------------------


def permutation_p(
    baseline: npt.ArrayLike, recent: npt.ArrayLike, *, permutations: int = PERMUTATIONS, seed: int
) -> float:
    """One-sided permutation p for "the recent mean is lower": the statistic is
    ``mean(baseline) - mean(recent)``; under the null hypothesis every split of the pooled scores
    into groups of these sizes is equally likely, so p = (1 + count) / (1 + B), where count is how
    many of ``B = permutations`` random splits give a statistic at least as large as the observed
    one (the +1 counts the observed split, which keeps p a valid p-value: never 0).

    Deterministic given ``seed``. Vectorised: with the pooled total fixed the statistic only
    depends on the sum of the smaller group, so each split draws that group alone: as counts per
    value when the scores take few distinct values (exact multivariate hypergeometric draws, cost
    independent of n), otherwise by Floyd's sampling without replacement across all splits at once
    (cost ~ B x the smaller group's size, memory bounded by chunks). Sums within 1e-9 (relative)
    of the observed one count as ties, so summing the same scores in another order is not a
    difference. A side with no scores: p = 1.
    """
    base = np.asarray(baseline, dtype=np.float64).ravel()
    rec = np.asarray(recent, dtype=np.float64).ravel()
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    if not (np.isfinite(base).all() and np.isfinite(rec).all()):
        raise ValueError("scores must be finite numbers")
    if base.size == 0 or rec.size == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([base, rec])
    small_is_recent = rec.size <= base.size
    small = rec if small_is_recent else base
    observed = float(small.sum())
    tol = 1e-9 * (1.0 + abs(observed))
    sums = _subset_sums(pooled, small.size, permutations, rng)
    # Recent lower <=> recent's sum small <=> (when baseline is the smaller group) baseline's large.
    extreme = sums <= observed + tol if small_is_recent else sums >= observed - tol
    return (1.0 + float(np.count_nonzero(extreme))) / (1.0 + permutations)


def _subset_sums(pooled: FloatArray, m: int, count: int, rng: np.random.Generator) -> FloatArray:
    """Sums of ``count`` uniformly random ``m``-subsets (without replacement) of ``pooled``."""
    values, counts = np.unique(pooled, return_counts=True)
    if values.size <= _DISTINCT_FOR_COUNTS and values.size < m:
        draws = rng.multivariate_hypergeometric(counts, m, size=count)
        return np.asarray(draws @ values, dtype=np.float64)
    n = pooled.size
    rows = min(count, max(_MIN_ROWS, _MASK_BUDGET // n))
    out = np.empty(count, dtype=np.float64)
    for start in range(0, count, rows):
        k = min(rows, count - start)
        out[start : start + k] = _floyd_sums(pooled, m, k, rng)
    return out


def _floyd_sums(pooled: FloatArray, m: int, rows: int, rng: np.random.Generator) -> FloatArray:
    """Floyd's algorithm, one subset per row, all rows per step: for j = n-m .. n-1 pick t in
    [0, j]; take t unless already taken, else j. Exactly uniform m-subsets in m vector steps."""
    n = pooled.size
    taken = np.zeros(rows * n, dtype=bool)
    offsets = np.arange(rows, dtype=np.intp) * n
    picks = rng.integers(0, np.arange(n - m + 1, n + 1, dtype=np.intp)[:, None], size=(m, rows))
    sums = np.zeros(rows, dtype=np.float64)
    for i, j in enumerate(range(n - m, n)):
        t = picks[i]
        chosen = np.where(taken[offsets + t], j, t)
        taken[offsets + chosen] = True
        sums += pooled[chosen]
    return sums


# -- many series: Benjamini-Hochberg ---------------------------------------------------------------


def benjamini_hochberg(pvalues: Sequence[float] | npt.ArrayLike) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order: q_(i) =
    min over j >= i of p_(j) m / j, capped at 1. Monotone in p (a smaller p never gets a larger
    q), so "q <= 0.05" flags exactly the series BH's step-up procedure rejects at level 0.05, and
    the expected share of false alarms among flagged series stays at most 5%."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return []
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("p-values must be numbers from 0 to 1")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    q = np.empty(m, dtype=np.float64)
    q[order] = q_sorted
    return [float(v) for v in q]


# -- confidence intervals for the change -----------------------------------------------------------


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion: unlike the textbook p +- z se it stays inside
    0..1 and keeps its coverage near 0% and 100% (a pass rate of 240/240 is not "exactly 1").
    No scores: (0, 1)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denominator = n + z * z
    centre = (successes + z * z / 2) / denominator
    half = z * math.sqrt(n) / denominator * math.sqrt(p * (1 - p) + z * z / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    baseline_passes: int, baseline_n: int, recent_passes: int, recent_n: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10, 1998) for the change of a pass rate,
    ``recent - baseline``, built from the two Wilson intervals: good coverage where the Wald
    interval fails (rates near 0 or 1, small windows), and never outside -1..1. A side with no
    scores: (-1, 1)."""
    if baseline_n == 0 or recent_n == 0:
        wilson_interval(baseline_passes, baseline_n)  # still validate
        wilson_interval(recent_passes, recent_n)
        return -1.0, 1.0
    p1, p2 = recent_passes / recent_n, baseline_passes / baseline_n
    l1, u1 = wilson_interval(recent_passes, recent_n, confidence=confidence)
    l2, u2 = wilson_interval(baseline_passes, baseline_n, confidence=confidence)
    change = p1 - p2
    lower = change - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = change + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile, from the normal one by the Cornish-Fisher expansion in 1/df
    (Abramowitz & Stegun 26.7.5, four terms): within 1e-4 of the exact value for df >= 5 and
    about 0.1% (too small) at df = 3; the Welch intervals here have df >= 19 when both windows
    hold 20 scores. ``df = inf`` gives the normal quantile."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be between 0 and 1, got {probability}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    z = NormalDist().inv_cdf(probability)
    if math.isinf(df):
        return z
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def welch_interval(
    baseline: npt.ArrayLike, recent: npt.ArrayLike, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Welch's interval for the change of a mean score, ``mean(recent) - mean(baseline)``: the
    difference +- t(df) x sqrt(s1^2/n1 + s2^2/n2), df by Welch-Satterthwaite (the windows' sizes
    and spreads differ, so no pooled variance). Chosen over a bootstrap: closed form, cheap and
    deterministic, and with at least 20 scores bounded in 0..1 a side the mean is close enough to
    normal for a 95% interval (the tests check its coverage). The decision itself rests on the
    permutation test; the interval is the evidence's size of the change. Clipped to -1..1 (the
    most scores in 0..1 can change); a side with fewer than 2 scores: (-1, 1); no spread on
    either side: the difference itself."""
    _z(confidence)  # validates it
    base = np.asarray(baseline, dtype=np.float64).ravel()
    rec = np.asarray(recent, dtype=np.float64).ravel()
    if base.size < 2 or rec.size < 2:
        return -1.0, 1.0
    change = float(rec.mean() - base.mean())
    v1, v2 = float(base.var(ddof=1)) / base.size, float(rec.var(ddof=1)) / rec.size
    se2 = v1 + v2
    if se2 <= 0:
        return change, change
    df = se2 * se2 / (v1 * v1 / (base.size - 1) + v2 * v2 / (rec.size - 1))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(se2)
    return max(-1.0, change - half), min(1.0, change + half)
