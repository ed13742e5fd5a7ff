"""The statistics against values known independently: textbook examples (Fisher's tea tasting,
Benjamini and Hochberg's own worked example, Newcombe's and Wilson's published intervals, t
tables), exact computations in integers or by enumerating every permutation, and coverage
simulated with fixed seeds."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from controlroom.evals import stats


def exact_fisher(a: int, b: int, c: int, d: int) -> float:
    """The one-sided tail in exact integers: each term C(K, x) C(N-K, n-x) from the one before it
    (the division is exact), over C(N, n)."""
    n, k, total = a + b, a + c, a + b + c + d
    x, term, tail = a, math.comb(k, a) * math.comb(total - k, n - a), 0
    while True:
        tail += term
        if x == min(k, n):
            return float(Fraction(tail, math.comb(total, n)))
        term = term * (k - x) * (n - x) // ((x + 1) * (total - k - n + x + 1))
        x += 1


# -- Fisher -----------------------------------------------------------------------------------------


def test_fisher_tea_tasting() -> None:
    # Fisher's lady tasting tea: 3 of 4 milk-first cups named right: (C(4,3) C(4,1) + 1) / C(8,4).
    assert stats.fisher_one_sided(3, 1, 1, 3) == pytest.approx(17 / 70, rel=1e-12)
    assert round(stats.fisher_one_sided(3, 1, 1, 3), 4) == 0.2429


@pytest.mark.parametrize(
    "table",
    [
        (221, 19, 46, 11),  # the issue's example: p = 0.014
        (5, 5, 5, 5),
        (100, 0, 99, 1),
        (12, 3, 1, 9),
        (18_400, 1_600, 4_500, 500),  # 92% -> 90%, 20,000 / 5,000 scores
        (9_200, 800, 9_000, 1_000),
        (46_000, 4_000, 45_000, 5_000),  # 100,000 scores: p ~ 1e-28
        (30_000, 10_000, 31_000, 9_000),  # recent better: p near 1
    ],
)
def test_fisher_matches_exact_integer_arithmetic(table: tuple[int, int, int, int]) -> None:
    assert stats.fisher_one_sided(*table) == pytest.approx(exact_fisher(*table), rel=1e-9)


def test_fisher_of_the_issue_example() -> None:
    assert f"{stats.fisher_one_sided(221, 19, 46, 11):.3f}" == "0.014"


def test_fisher_the_two_tails_overlap_by_exactly_the_observed_table() -> None:
    # P(X >= a) + P(X <= a) = 1 + P(X = a); the second is the test with the rows swapped.
    a, b, c, d = 40, 10, 30, 20
    point = exact_fisher(a, b, c, d) - exact_fisher(a + 1, b - 1, c - 1, d + 1)
    total = stats.fisher_one_sided(a, b, c, d) + stats.fisher_one_sided(c, d, a, b)
    assert total == pytest.approx(1 + point, rel=1e-12)


@pytest.mark.parametrize(
    ("table", "p"),
    [
        ((240, 0, 57, 0), 1.0),  # all passes: no evidence of anything
        ((0, 240, 0, 57), 1.0),  # all fails
        ((0, 0, 10, 5), 1.0),  # no baseline
        ((10, 5, 0, 0), 1.0),  # no recent scores
        ((0, 0, 0, 0), 1.0),
        ((0, 10, 10, 0), 1.0),  # recent all passes, baseline none: P(X >= 0) = 1
    ],
)
def test_fisher_edges(table: tuple[int, int, int, int], p: float) -> None:
    assert stats.fisher_one_sided(*table) == p


def test_fisher_far_beyond_the_smallest_double_is_zero_not_an_error() -> None:
    assert stats.fisher_one_sided(20_000, 0, 0, 20_000) == 0.0  # 1 / C(40000, 20000)
    assert 0 < stats.fisher_one_sided(300, 0, 0, 300) < 1e-170


@pytest.mark.parametrize("table", [(-1, 0, 0, 0), (1.5, 0, 0, 0), (True, 1, 1, 1)])
def test_fisher_rejects_what_is_not_a_count(table: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        stats.fisher_one_sided(*table)


# -- permutations -----------------------------------------------------------------------------------


def exact_permutation_p(baseline: list[float], recent: list[float]) -> float:
    """Every split of the pooled scores, enumerated."""
    pooled = baseline + recent
    observed = np.mean(baseline) - np.mean(recent)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(recent)):
        rec = [pooled[i] for i in chosen]
        base = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += bool(np.mean(base) - np.mean(rec) >= observed - 1e-12)
        total += 1
    return hits / total


@pytest.mark.parametrize(
    ("baseline", "recent"),
    [
        # many distinct values: subsets by Floyd's algorithm
        ([0.1, 0.5, 0.7, 0.9, 0.3, 0.8], [0.2, 0.4, 0.35]),
        ([0.2, 0.4, 0.35], [0.1, 0.5, 0.7, 0.9, 0.3, 0.8]),  # the baseline is the smaller group
        # three distinct values, groups of 5 and 7: counts per value (multivariate hypergeometric)
        ([1, 1, 0.5, 1, 0.5, 1, 0], [0.5, 0, 0.5, 1, 0]),
        ([0.5, 0, 0.5, 1, 0], [1, 1, 0.5, 1, 0.5, 1, 0]),
    ],
)
def test_permutation_p_matches_enumerating_every_split(baseline: list[float], recent: list[float]) -> None:
    exact = exact_permutation_p(baseline, recent)
    b = 40_000
    p = stats.permutation_p(baseline, recent, permutations=b, seed=7)
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / b) + 1 / b


def test_permutation_p_is_deterministic_given_the_seed() -> None:
    rng = np.random.default_rng(1)
    base, rec = rng.random(400), rng.random(100) * 0.97
    assert stats.permutation_p(base, rec, seed=3) == stats.permutation_p(base, rec, seed=3)
    other = stats.permutation_p(base, rec, seed=4)
    assert abs(other - stats.permutation_p(base, rec, seed=3)) < 0.05


def test_permutation_p_is_never_zero() -> None:
    base, rec = np.full(100, 0.9), np.full(100, 0.1)
    assert stats.permutation_p(base, rec, permutations=2000, seed=0) == 1 / 2001


@pytest.mark.parametrize(
    ("baseline", "recent"),
    [([0.7] * 30, [0.7] * 30), ([], [0.5] * 5), ([0.5] * 5, []), ([0.9] * 30, [1.0] * 30)],
)
def test_permutation_p_without_evidence_is_one(baseline: list[float], recent: list[float]) -> None:
    assert stats.permutation_p(baseline, recent, seed=0) == 1.0


def test_permutation_p_ties_from_summing_in_another_order_are_ties() -> None:
    # 0.1 + 0.2 != 0.2 + 0.1 + 0.0 in binary floating point, to the last bit; still the same sum.
    values = [0.1, 0.2, 0.3, 0.7, 0.6] * 10
    assert stats.permutation_p(values, values[::-1], seed=0) > 0.4


# -- Benjamini-Hochberg -----------------------------------------------------------------------------

# Benjamini & Hochberg (1995), section 4: 15 p-values from a trial; at level 0.05 the procedure
# rejects the four smallest. q_(i) = min over j >= i of p_(j) 15 / j, worked by hand.
BH_P = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459]
BH_P += [0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000]
BH_Q = [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0298 * 15 / 7, 0.0298 * 15 / 7, 0.0645, 0.0765]
BH_Q += [0.486, 0.4262 * 15 / 11, 0.714875, 0.6528 * 15 / 13, 0.759 * 15 / 14, 1.0]


def test_benjamini_hochberg_worked_example() -> None:
    q = stats.benjamini_hochberg(BH_P)
    assert q == pytest.approx(BH_Q, rel=1e-12)
    assert sum(v <= 0.05 for v in q) == 4


def test_benjamini_hochberg_keeps_the_input_order() -> None:
    order = np.random.default_rng(0).permutation(len(BH_P))
    q = stats.benjamini_hochberg([BH_P[i] for i in order])
    assert q == pytest.approx([BH_Q[i] for i in order], rel=1e-12)


def test_benjamini_hochberg_is_monotone_and_never_below_p() -> None:
    p = np.random.default_rng(2).random(500) ** 3
    q = np.array(stats.benjamini_hochberg(p))
    by_p = np.argsort(p)
    assert (np.diff(q[by_p]) >= 0).all()
    assert (q >= p).all() and (q <= 1).all()


def test_benjamini_hochberg_edges() -> None:
    assert stats.benjamini_hochberg([]) == []
    assert stats.benjamini_hochberg([0.03]) == [0.03]
    assert stats.benjamini_hochberg([0.04, 0.04, 0.04]) == [0.04, 0.04, 0.04]
    assert stats.benjamini_hochberg([0.0, 1.0]) == [0.0, 1.0]
    for bad in ([1.5], [-0.1], [math.nan]):
        with pytest.raises(ValueError, match="from 0 to 1"):
            stats.benjamini_hochberg(bad)


# -- intervals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", method 3
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_published_values(successes: int, n: int, expected: tuple[float, float]) -> None:
    lo, hi = stats.wilson_interval(successes, n)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_wilson_interval_edges() -> None:
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson_interval(240, 240)
    assert hi == 1.0 and 0.98 < lo < 1
    assert stats.wilson_interval(0, 20)[0] == 0.0  # not -1e-17
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 4)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions", Table II, method 10: the interval for p1 - p2 (first - second).
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
        ((0, 10), (0, 20), (-0.1611, 0.2775)),
        ((10, 10), (0, 20), (0.6791, 1.0)),
    ],
)
def test_newcombe_interval_published_values(
    first: tuple[int, int], second: tuple[int, int], expected: tuple[float, float]
) -> None:
    # Our change is recent - baseline: the first proportion is the recent one.
    lo, hi = stats.newcombe_interval(second[0], second[1], first[0], first[1])
    assert (round(lo, 4), round(hi, 4)) == expected


def test_newcombe_interval_of_the_issue_example() -> None:
    lo, hi = stats.newcombe_interval(221, 240, 46, 57)
    assert (round(lo * 100, 1), round(hi * 100, 1)) == (-23.7, -2.2)


def test_newcombe_interval_edges() -> None:
    assert stats.newcombe_interval(0, 0, 5, 10) == (-1.0, 1.0)
    lo, hi = stats.newcombe_interval(240, 240, 57, 57)  # all passes on both sides
    assert lo < 0 < hi and lo > -0.1 and hi < 0.02


def test_newcombe_interval_covers_the_true_change_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    trials = 4000
    base = rng.binomial(240, 0.92, trials)
    rec = rng.binomial(60, 0.80, trials)
    covered = 0
    for b, r in zip(base, rec, strict=True):
        lo, hi = stats.newcombe_interval(int(b), 240, int(r), 60)
        covered += lo <= 0.80 - 0.92 <= hi
    assert 0.935 <= covered / trials <= 0.965


@pytest.mark.parametrize(
    ("df", "t", "tolerance"),
    [(5, 2.570582, 3e-4), (10, 2.228139, 1e-5), (19, 2.093024, 1e-5), (30, 2.042272, 1e-5)],
)
def test_t_quantile_against_the_table(df: float, t: float, tolerance: float) -> None:
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=tolerance)
    assert stats.t_quantile(0.025, df) == pytest.approx(-t, abs=tolerance)


def test_t_quantile_at_infinite_df_is_the_normal_one() -> None:
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


def test_welch_interval_by_hand() -> None:
    # Equal spreads and sizes: df = 2 (n - 1) = 18, t = 2.100922; s^2 = 0.05^2 var(0..9).
    baseline = [0.5 + 0.05 * k for k in range(10)]
    recent = [v - 0.1 for v in baseline]
    se = math.sqrt(2 * 0.0025 * (55 / 6) / 10)
    lo, hi = stats.welch_interval(baseline, recent)
    assert lo == pytest.approx(-0.1 - 2.100922 * se, abs=1e-5)
    assert hi == pytest.approx(-0.1 + 2.100922 * se, abs=1e-5)


def test_welch_interval_edges() -> None:
    assert stats.welch_interval([0.7] * 30, [0.6] * 30) == pytest.approx((-0.1, -0.1))
    assert stats.welch_interval([0.5], [0.5, 0.6]) == (-1.0, 1.0)
    assert stats.welch_interval([0.0, 1.0], [0.0, 1.0]) == (-1.0, 1.0)  # clipped: scores are in 0..1


def test_welch_interval_covers_the_true_change_95_percent_of_the_time() -> None:
    # Skewed scores, as a judge's often are: Beta(8, 2) (mean 0.8) -> Beta(7, 3) (mean 0.7).
    rng = np.random.default_rng(12)
    trials = 4000
    covered = 0
    for _ in range(trials):
        lo, hi = stats.welch_interval(rng.beta(8, 2, 240), rng.beta(7, 3, 60))
        covered += lo <= 0.7 - 0.8 <= hi
    assert 0.935 <= covered / trials <= 0.965
