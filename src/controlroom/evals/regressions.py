"""Eval regressions that surface by themselves: for every series of scores (an agent, an
evaluator at one version, one score name), compare a recent window with a baseline window and flag
the series whose scores dropped by more than a margin, significantly, after correcting for how
many series were tested at once.

The caller decides what the windows are (the last day against the 30 before it, or the current
agent version against the previous one) and hands over the two samples; :func:`detect` is pure and
deterministic: the same samples and seed give the same findings, on any machine.

A series is flagged only when all of these hold:

- each window holds at least ``min_n`` scores (20): below that, it is not tested at all;
- the drop, ``baseline mean - recent mean`` on scores normalised to 0..1, is at least ``margin``
  (0.05): a real but negligible change is not worth anyone's attention;
- it is significant: a one-sided Fisher exact test for pass/fail scores, a one-sided permutation
  test on the difference of means for numeric ones, then Benjamini-Hochberg over every series
  tested together, q <= ``q`` (0.05): among flagged series, at most 5% are expected to be noise.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from controlroom.evals import stats

Kind = Literal["boolean", "numeric"]
Test = Literal["fisher", "permutation"]
KINDS: tuple[Kind, ...] = ("boolean", "numeric")
WORST_RUNS = 5
"""How many of the recent window's lowest-scoring runs a finding names."""
MAX_PERMUTATIONS = 200_000
"""The most permutations a numeric series is re-tested with (see :func:`detect`)."""


def normalise(
    value: float | bool,
    *,
    kind: Kind,
    bounds: tuple[float, float] = (0.0, 1.0),
    higher_is_better: bool = True,
) -> float:
    """A raw score -> 0..1, higher is better, so every series can be compared the same way.

    Boolean: true is 1, false 0 (flipped when lower is better: "hallucinated" true is a failure).
    Numeric: ``(value - lo) / (hi - lo)`` with ``bounds = (lo, hi)`` the evaluator's declared
    range, flipped when lower is better, clipped to 0..1 (an evaluator that strays outside its
    range counts as its best or worst, rather than stretching a mean)."""
    if kind == "boolean":
        if not isinstance(value, bool | np.bool_) and value not in (0, 1):
            raise ValueError(f"a boolean score must be true or false, got {value!r}")
        passed = bool(value)
        return 1.0 if passed == higher_is_better else 0.0
    if kind != "numeric":
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"bounds must be two finite numbers, low < high, got {bounds!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"a numeric score must be a finite number, got {value!r}")
    x = min(1.0, max(0.0, (v - lo) / (hi - lo)))
    return x if higher_is_better else 1.0 - x


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """What makes one series: scores from different evaluator versions or score names are never
    mixed (a new version may score differently without anything having regressed)."""

    agent: str
    evaluator: str
    evaluator_version: str
    score_name: str

    def __str__(self) -> str:
        return f"{self.agent} / {self.evaluator}@{self.evaluator_version} / {self.score_name}"

    def digest(self) -> bytes:
        """A stable hash of the key (Python's ``hash()`` of a str changes per process)."""
        parts = (self.agent, self.evaluator, self.evaluator_version, self.score_name)
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()


@dataclass(frozen=True, eq=False, slots=True)
class Sample:
    """One window of one series: scores normalised to 0..1 (see :func:`normalise`) and the run
    each came from, in the same order. ``values`` may be any sequence of numbers; it is stored as
    a read-only float64 array."""

    values: npt.NDArray[np.float64]
    run_ids: Sequence[str]
    kind: Kind

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float64).ravel()
        values.flags.writeable = False
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "run_ids", tuple(self.run_ids))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.run_ids) != values.size:
            raise ValueError(f"{values.size} scores but {len(self.run_ids)} run ids")
        if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
            raise ValueError("scores must be normalised to 0..1 (see normalise())")
        if self.kind == "boolean" and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError("boolean scores must be 0 or 1")

    @property
    def n(self) -> int:
        return int(self.values.size)

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else math.nan


@dataclass(frozen=True, eq=False, slots=True)
class SeriesPair:
    """A series' two windows, as the caller split them."""

    key: SeriesKey
    baseline: Sample
    recent: Sample

    def __post_init__(self) -> None:
        if self.baseline.kind != self.recent.kind:
            raise ValueError(
                f"{self.key}: baseline scores are {self.baseline.kind}, recent ones {self.recent.kind}"
            )


@dataclass(frozen=True, slots=True)
class Finding:
    """The result for one tested series, flagged or not, with the evidence a person needs to
    judge it: sizes and means of both windows, the change and its 95% interval (``recent -
    baseline``, in 0..1 units: -0.12 is 12 points worse), the test's p, the BH-adjusted q, and
    the recent window's lowest-scoring runs, worst first."""

    key: SeriesKey
    kind: Kind
    test: Test
    baseline_n: int
    recent_n: int
    baseline_mean: float
    recent_mean: float
    change: float
    ci: tuple[float, float]
    p: float
    q: float
    flagged: bool
    evidence: str
    worst_run_ids: tuple[str, ...]
    permutations: int | None = field(default=None)
    """How many permutations the p of a numeric series comes from (None for Fisher's test)."""

    @property
    def drop(self) -> float:
        """``baseline mean - recent mean``: positive when scores got worse."""
        return -self.change


@dataclass(frozen=True, slots=True)
class _Tested:
    pair: SeriesPair
    test: Test
    p: float
    permutations: int | None


def detect(
    pairs: Iterable[SeriesPair],
    *,
    margin: float = 0.05,
    q: float = 0.05,
    min_n: int = 20,
    seed: int = 0,
    permutations: int = stats.PERMUTATIONS,
    max_permutations: int = MAX_PERMUTATIONS,
) -> list[Finding]:
    """Test every series with at least ``min_n`` scores in each window, correct for their number
    with Benjamini-Hochberg, and flag the regressions (see the module's docstring). Returns one
    :class:`Finding` per tested series, in the input's order; series with too few scores are left
    out (the caller knows which it passed).

    Numeric series are tested with ``permutations`` permutations, seeded from ``seed`` and a
    stable hash of the series' key: a series draws the same permutations wherever it sits in the
    input.

    A permutation p cannot go below 1 / (B + 1), while BH needs p <= q / m to flag a lone
    regression among m series: with 2,000 permutations and 100 series that is out of reach. So a
    numeric series whose first p is at most ``q`` is tested again, with fresh permutations, enough
    for a floor ten times below q / m (at most ``max_permutations``), and that second p is its
    p. (Re-testing only the series whose first p is small keeps the p valid: for any level a,
    "final p <= a" implies "first p <= a" when a >= q, and "second p <= a" when a < q.)
    A drop counts as reaching the margin within 1e-9: 0.85 -> 0.80 is a drop of 0.05, though
    it is 0.04999999999999993 in floating point.
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    if min_n < 2:
        raise ValueError(f"min_n must be at least 2, got {min_n}")
    if permutations < 1 or max_permutations < permutations:
        raise ValueError("need 1 <= permutations <= max_permutations")
    pairs = list(pairs)
    keys = [pair.key for pair in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("each series must appear once")
    eligible = [p for p in pairs if p.baseline.n >= min_n and p.recent.n >= min_n]
    m = len(eligible)
    refined = min(max_permutations, max(permutations, math.ceil(10 * m / q)))
    tested = [_test(pair, seed, permutations, refined, q) for pair in eligible]
    qvalues = stats.benjamini_hochberg([t.p for t in tested])
    return [_finding(t, qv, m=m, margin=margin, q_level=q) for t, qv in zip(tested, qvalues, strict=True)]


def _seed(seed: int, key: SeriesKey, stage: int) -> int:
    salt = f"\x1f{seed}\x1f{stage}".encode()
    return int.from_bytes(hashlib.blake2b(key.digest() + salt, digest_size=8).digest(), "big")


def _test(pair: SeriesPair, seed: int, permutations: int, refined: int, q: float) -> _Tested:
    base, rec = pair.baseline, pair.recent
    if base.kind == "boolean":
        b_pass, r_pass = int(base.values.sum()), int(rec.values.sum())
        p = stats.fisher_one_sided(b_pass, base.n - b_pass, r_pass, rec.n - r_pass)
        return _Tested(pair, "fisher", p, None)
    p = stats.permutation_p(base.values, rec.values, permutations=permutations, seed=_seed(seed, pair.key, 1))
    if p <= q and refined > permutations:
        p = stats.permutation_p(base.values, rec.values, permutations=refined, seed=_seed(seed, pair.key, 2))
        return _Tested(pair, "permutation", p, refined)
    return _Tested(pair, "permutation", p, permutations)


def _finding(t: _Tested, qv: float, *, m: int, margin: float, q_level: float) -> Finding:
    base, rec = t.pair.baseline, t.pair.recent
    change = rec.mean - base.mean
    flagged = -change >= margin - 1e-9 and qv <= q_level
    if base.kind == "boolean":
        b_pass, r_pass = int(base.values.sum()), int(rec.values.sum())
        ci = stats.newcombe_interval(b_pass, base.n, r_pass, rec.n)
        evidence = (
            f"pass rate {_pct(base.mean)} ({b_pass}/{base.n}) → {_pct(rec.mean)} ({r_pass}/{rec.n}), "
            f"95% CI of the change [{_num(ci[0] * 100, 1)}, {_num(ci[1] * 100, 1)}] points, "
            f"{_p('p', t.p)} (one-sided Fisher exact test)"
        )
    else:
        ci = stats.welch_interval(base.values, rec.values)
        evidence = (
            f"mean score {_num(base.mean, 2)} (n={base.n}) → {_num(rec.mean, 2)} (n={rec.n}), "
            f"95% CI of the change [{_num(ci[0], 2)}, {_num(ci[1], 2)}], "
            f"{_p('p', t.p)} (one-sided permutation test, {t.permutations} permutations)"
        )
    evidence += f", {_p('q', qv)} (Benjamini-Hochberg over {m} series)"
    worst = np.argsort(rec.values, kind="stable")[:WORST_RUNS]
    return Finding(
        key=t.pair.key,
        kind=base.kind,
        test=t.test,
        baseline_n=base.n,
        recent_n=rec.n,
        baseline_mean=base.mean,
        recent_mean=rec.mean,
        change=change,
        ci=ci,
        p=t.p,
        q=qv,
        flagged=flagged,
        evidence=evidence,
        worst_run_ids=tuple(rec.run_ids[i] for i in worst),
        permutations=t.permutations,
    )


def _num(x: float, places: int) -> str:
    text = f"{x:.{places}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0"


def _pct(x: float) -> str:
    return f"{_num(x * 100, 1)}%"


def _p(name: str, p: float) -> str:
    """Three decimals down to 0.001 (p = 0.014), then two significant digits (p = 4.2e-05); a
    Fisher p below the smallest double is "p < 1e-300", not "p = 0"."""
    if p >= 0.001:
        return f"{name} = {p:.3f}"
    return f"{name} = {p:.1e}" if p >= 1e-300 else f"{name} < 1e-300"
