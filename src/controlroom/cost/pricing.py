"""What one LLM call cost, in integer nano-dollars.

Prices come from two places: per-project :class:`PriceOverride` rows (private, fine-tuned or
missing models) and the price data bundled with ``genai-prices``, taken *as of* the call's time.

Token accounting (OpenTelemetry ``gen_ai.usage.*`` rule, which genai-prices shares):

* ``input_tokens`` includes ``cache_read_tokens`` and ``cache_write_tokens``;
* ``output_tokens`` includes ``reasoning_tokens``.

A model that prices cache reads (writes, reasoning) separately charges those tokens at that price and
the rest of the input (output) at the plain rate; a model that does not charges them at the plain
input (output) rate. Nothing is counted twice. If a producer breaks the inclusion rule (cache tokens
larger than ``input_tokens``, reasoning larger than ``output_tokens``) the total is taken as the sum of
its parts; negative counts are treated as 0.

Money is exact: prices are Decimals, turned once into integers scaled to a power of ten, so a call's
cost is integer arithmetic, rounded half-up to the nano-dollar only at the end.

Speed: the projector prices >10,000 spans/s, so everything that does not depend on the token counts is
resolved once per ``(provider, model, UTC day)`` and kept in a bounded cache; a repeated model costs
one dict lookup and a few integer multiplications. Prices that change inside a day (an override whose
``effective_from_ns`` falls in that day, genai-prices' time-of-day prices such as DeepSeek's off-peak
discount) are kept as a per-day schedule and found with a bisection.

Not modelled: request context variants of genai-prices (batch, flex/priority service tiers), 1-hour
cache writes (all cache writes are charged at the model's default cache-write price), modalities
(audio/image tokens are charged as text), and tool fees (web searches).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from typing import Final, TypeVar

from genai_prices import data_snapshot as _gp_snapshot
from genai_prices import types as _gp

from controlroom.money import Usage

__all__ = ["PriceOverride", "Pricer", "Rates", "Usage", "canonical_provider"]

_NS_PER_DAY: Final = 86_400 * 10**9
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamps outside what `datetime` can represent are clamped into this range for price look-ups.
_MIN_NS: Final = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) * 1000
_MAX_NS: Final = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) * 1000
_ZERO: Final = Decimal(0)
_DEFAULT_CACHE_SIZE: Final = 65_536

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A per-project price for a private / fine-tuned / missing model; wins over genai-prices."""

    model: str
    """Matched exactly against the call's model, case-insensitively."""
    provider: str | None
    """``None`` matches any provider; otherwise matched after :func:`canonical_provider`."""
    input_per_mtok: Decimal
    """USD per million tokens."""
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    """``None``: cache reads are charged at the input rate."""
    cache_write_per_mtok: Decimal | None = None
    """``None``: cache writes are charged at the input rate."""
    effective_from_ns: int = 0
    """UTC epoch nanoseconds; the override applies to calls at or after this time."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("PriceOverride.model must be a non-empty string")
        if self.provider is not None and not isinstance(self.provider, str):
            raise ValueError("PriceOverride.provider must be a string or None")
        if isinstance(self.effective_from_ns, bool) or not isinstance(self.effective_from_ns, int):
            raise ValueError("PriceOverride.effective_from_ns must be an int (UTC epoch nanoseconds)")
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"):
            value: object = getattr(self, name)
            if value is None and name.startswith("cache_"):
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(
                    f"PriceOverride.{name} must be a finite, non-negative Decimal, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-token USD rates of a model at one time, for reserving a call's worst-case cost.

    Where the price depends on the call (genai-prices' long-context tiers) the highest rate is given;
    ``output`` is the highest of the output and reasoning rates. Cache rates fall back to the input rate
    when the model has no separate cache price.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    max_output_tokens: int | None = None
    """The model's output token limit, if known (genai-prices 0.2.3 has no such field: always None)."""
    per_request: Decimal = _ZERO
    """A fixed fee per call in USD (e.g. Perplexity's per-request fee), 0 for most models."""
    context_window: int | None = None
    """The model's maximum input tokens, if genai-prices knows it."""


# OpenTelemetry `gen_ai.provider.name` / `gen_ai.system` values and other common spellings whose
# genai-prices provider id differs. Anything else is lower-cased and handed to genai-prices as is
# (its ids and `provider_match` rules cover "openai", "anthropic", "groq", "cohere", "deepseek", ...).
_PROVIDER_ALIASES: Final[Mapping[str, str]] = {
    # Azure (semconv: azure.ai.openai, azure.ai.inference; older gen_ai.system: az.ai.*)
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azure.openai": "azure",
    "azure_ai": "azure",
    "azureopenai": "azure",
    # AWS Bedrock
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "aws_bedrock": "aws",
    "aws-bedrock": "aws",
    "amazon_bedrock": "aws",
    "amazon-bedrock": "aws",
    "amazon": "aws",
    # Google (semconv: gcp.gemini, gcp.vertex_ai, gcp.gen_ai; older: gemini, vertex_ai)
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gcp": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "vertex": "google",
    "gemini": "google",
    "google_genai": "google",
    "google.genai": "google",
    "google-genai": "google",
    "google_vertexai": "google",
    "google-vertex": "google",
    # Mistral (semconv: mistral_ai)
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "mistral-ai": "mistral",
    # xAI (semconv: x_ai; older: xai)
    "x_ai": "x-ai",
    "xai": "x-ai",
    "x.ai": "x-ai",
    "grok": "x-ai",
    # Others
    "together_ai": "together",
    "together-ai": "together",
    "togetherai": "together",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "fireworksai": "fireworks",
    "moonshot": "moonshotai",
    "moonshot_ai": "moonshotai",
    "moonshot-ai": "moonshotai",
    "voyage": "voyageai",
    "voyage_ai": "voyageai",
    "zhipu": "zhipuai",
    "z_ai": "zai",
    "z.ai": "zai",
    "cohere_ai": "cohere",
    "deepseek_ai": "deepseek",
    "perplexity_ai": "perplexity",
}


def canonical_provider(name: str | None) -> str | None:
    """The genai-prices provider id for a provider spelling, else the lower-cased name; None if blank."""
    if name is None:
        return None
    key = name.strip().lower()
    if not key:
        return None
    return _PROVIDER_ALIASES.get(key, key)


# ---------------------------------------------------------------------------------------------------
# Compiled prices
# ---------------------------------------------------------------------------------------------------


class _Table:
    """Prices of one model at one time, as integers: nano-dollars per unit times ``scale``."""

    __slots__ = ("bands", "half", "i", "o", "q", "r", "rates", "req", "scale", "w")

    i: int  # uncached input token
    r: int  # cache-read token
    w: int  # cache-write token
    o: int  # output token that is not reasoning
    q: int  # reasoning token
    req: int  # the call itself
    scale: int
    half: int
    # Long-context tiers, highest threshold first: (threshold, table) applies when total input > threshold.
    bands: tuple[tuple[int, _Table], ...]
    rates: Rates

    def cost(self, usage: Usage, at_ns: int) -> int | None:
        inp = usage.input_tokens
        out = usage.output_tokens
        cr = usage.cache_read_tokens
        cw = usage.cache_write_tokens
        rs = usage.reasoning_tokens
        if (inp | out | cr | cw | rs) < 0:
            inp, out, cr, cw = max(inp, 0), max(out, 0), max(cr, 0), max(cw, 0)
            rs = max(rs, 0)
        cached = cr + cw
        fresh = inp - cached if inp > cached else 0
        plain_out = out - rs if out > rs else 0
        t = self
        if self.bands:
            total_in = fresh + cached
            for threshold, band in self.bands:
                if total_in > threshold:
                    t = band
                    break
        total = t.i * fresh + t.r * cr + t.w * cw + t.o * plain_out + t.q * rs + t.req
        if t.scale == 1:
            return total
        return (total + t.half) // t.scale

    def rates_at(self, at_ns: int) -> Rates | None:
        return self.rates


class _NoPrice:
    __slots__ = ()

    def cost(self, usage: Usage, at_ns: int) -> int | None:
        return None

    def rates_at(self, at_ns: int) -> Rates | None:
        return None


_NO_PRICE: Final = _NoPrice()


class _Schedule:
    """Prices that change inside one UTC day: ``entries[k]`` applies from ``bounds[k]`` on."""

    __slots__ = ("bounds", "entries")

    def __init__(self, bounds: list[int], entries: list[_Table | _NoPrice]) -> None:
        self.bounds = bounds
        self.entries = entries

    def cost(self, usage: Usage, at_ns: int) -> int | None:
        return self.entries[bisect_right(self.bounds, at_ns) - 1].cost(usage, at_ns)

    def rates_at(self, at_ns: int) -> Rates | None:
        return self.entries[bisect_right(self.bounds, at_ns) - 1].rates_at(at_ns)


_Entry = _Table | _NoPrice | _Schedule


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _make_table(
    *,
    i: Decimal,
    r: Decimal,
    w: Decimal,
    o: Decimal,
    q: Decimal,
    req: Decimal,
    max_output_tokens: int | None,
    context_window: int | None,
    bands: tuple[tuple[int, _Table], ...] = (),
) -> _Table:
    """A table from prices in USD per million tokens (``req``: USD per thousand calls)."""
    with localcontext(prec=200):
        # nano-dollars per token = USD/MTok * 1e3; nano-dollars per call = USD/Kcall * 1e6.
        nanos = (i.scaleb(3), r.scaleb(3), w.scaleb(3), o.scaleb(3), q.scaleb(3), req.scaleb(6))
        places = max(_decimal_places(v) for v in nanos)
        ints = [int(v.scaleb(places)) for v in nanos]
        rates = Rates(
            input=i.scaleb(-6),
            output=max(o, q).scaleb(-6),
            cache_read=r.scaleb(-6),
            cache_write=w.scaleb(-6),
            max_output_tokens=max_output_tokens,
            per_request=req.scaleb(-3),
            context_window=context_window,
        )
        for _, band in bands:
            b = band.rates
            rates = Rates(
                input=max(rates.input, b.input),
                output=max(rates.output, b.output),
                cache_read=max(rates.cache_read, b.cache_read),
                cache_write=max(rates.cache_write, b.cache_write),
                max_output_tokens=max_output_tokens,
                per_request=max(rates.per_request, b.per_request),
                context_window=context_window,
            )
    table = _Table()
    table.i, table.r, table.w, table.o, table.q, table.req = ints
    table.scale = 10**places
    table.half = table.scale // 2
    table.bands = bands
    table.rates = rates
    return table


def _override_table(o: PriceOverride) -> _Table:
    return _make_table(
        i=o.input_per_mtok,
        r=o.input_per_mtok if o.cache_read_per_mtok is None else o.cache_read_per_mtok,
        w=o.input_per_mtok if o.cache_write_per_mtok is None else o.cache_write_per_mtok,
        o=o.output_per_mtok,
        q=o.output_per_mtok,
        req=_ZERO,
        max_output_tokens=None,
        context_window=None,
    )


_PriceValue = Decimal | _gp.TieredPrices | None


def _price_at(price: _PriceValue, threshold: int | None) -> Decimal | None:
    """The price that applies when total input is just above ``threshold`` (None: below every tier)."""
    if price is None or isinstance(price, Decimal):
        return price
    best, best_start = price.base, -1
    if threshold is not None:
        for tier in price.tiers:
            if best_start < tier.start <= threshold:
                best, best_start = tier.price, tier.start
    return best


def _genai_table(price: _gp.ModelPrice, info: _gp.ModelInfo) -> _Table | _NoPrice:
    """Compile one genai-prices ModelPrice; only the units our Usage can carry matter.

    genai-prices prices the *leaves* of a unit hierarchy: a priced ``cache_read_tokens`` is carved out of
    ``input_tokens``, a priced ``output_reasoning_tokens`` out of ``output_tokens``; an unpriced one stays
    in its parent at the parent's rate. ``requests_kcount`` is charged once per call. Every other unit
    (audio, images, web searches, ...) has a count of 0 for us.
    """
    values: dict[str, _PriceValue] = {
        key: getattr(price, key)
        for key in (
            "input_mtok",
            "output_mtok",
            "cache_read_mtok",
            "cache_write_mtok",
            "output_reasoning_mtok",
            "requests_kcount",
        )
    }
    if values["input_mtok"] is None and values["output_mtok"] is None:
        return _NO_PRICE  # priced per character / second / page: tokens cannot price it
    thresholds = sorted(
        {tier.start for v in values.values() if isinstance(v, _gp.TieredPrices) for tier in v.tiers}
    )
    max_out = getattr(info, "max_output_tokens", None)
    max_output_tokens = max_out if isinstance(max_out, int) and not isinstance(max_out, bool) else None

    def table_at(threshold: int | None, bands: tuple[tuple[int, _Table], ...] = ()) -> _Table:
        i = _price_at(values["input_mtok"], threshold)
        o = _price_at(values["output_mtok"], threshold)
        r = _price_at(values["cache_read_mtok"], threshold)
        w = _price_at(values["cache_write_mtok"], threshold)
        q = _price_at(values["output_reasoning_mtok"], threshold)
        req = _price_at(values["requests_kcount"], threshold)
        i = _ZERO if i is None else i
        o = _ZERO if o is None else o
        return _make_table(
            i=i,
            r=i if r is None else r,
            w=i if w is None else w,
            o=o,
            q=o if q is None else q,
            req=_ZERO if req is None else req,
            max_output_tokens=max_output_tokens,
            context_window=info.context_window,
            bands=bands,
        )

    bands = tuple((start, table_at(start)) for start in reversed(thresholds))
    return table_at(None, bands)


# ---------------------------------------------------------------------------------------------------
# genai-prices look-up
# ---------------------------------------------------------------------------------------------------


def _ns_to_datetime(at_ns: int) -> datetime:
    at_ns = min(max(at_ns, _MIN_NS), _MAX_NS)
    return _EPOCH + timedelta(microseconds=at_ns // 1000)


def _time_of_day_ns(value: time) -> int:
    utc = value if value.tzinfo is None else datetime.combine(date(1970, 1, 2), value).astimezone(UTC).time()
    return (((utc.hour * 60 + utc.minute) * 60 + utc.second) * 1_000_000 + utc.microsecond) * 1000


class _GenaiModel:
    """A genai-prices model and its compiled prices (keyed by the ModelPrice object)."""

    __slots__ = ("_compiled", "info", "time_of_day_ns")

    def __init__(self, info: _gp.ModelInfo) -> None:
        self.info = info
        self._compiled: dict[int, tuple[_gp.ModelPrice, _Table | _NoPrice]] = {}
        offsets: set[int] = set()
        if isinstance(info.prices, list):
            for conditional in info.prices:
                constraint = conditional.constraint
                if isinstance(constraint, _gp.TimeOfDateConstraint):
                    offsets.add(_time_of_day_ns(constraint.start_time))
                    offsets.add(_time_of_day_ns(constraint.end_time))
        # Offsets inside the UTC day at which the price may change (time-of-day prices only).
        self.time_of_day_ns = tuple(sorted(offsets))

    def table_at(self, at_ns: int) -> _Table | _NoPrice:
        price = self.info.get_prices(_ns_to_datetime(at_ns))
        hit = self._compiled.get(id(price))
        if hit is not None and hit[0] is price:
            return hit[1]
        table = _genai_table(price, self.info)
        self._compiled[id(price)] = (price, table)
        return table


def _find_model(
    snapshot: _gp_snapshot.DataSnapshot, provider_id: str | None, ref: str
) -> _gp.ModelInfo | None:
    """genai-prices' find_provider_model without its unbounded caches and without exceptions."""
    provider: _gp.Provider | None
    if provider_id is not None:
        provider = _gp_snapshot.find_provider_by_id(snapshot.providers, provider_id)
    else:
        provider = next(
            (p for p in snapshot.providers if p.model_match is not None and p.model_match.is_match(ref)),
            None,
        )
    if provider is None:
        return None
    return provider.find_model(ref, all_providers=snapshot.providers)


def _lookup_genai(
    snapshot: _gp_snapshot.DataSnapshot, provider_key: str | None, model: str
) -> _gp.ModelInfo | None:
    """The provider's model, else the model found by name alone; retried without a ``vendor/`` prefix."""
    ref = model.strip().lower()
    refs = [ref]
    if "/" in ref and (tail := ref.rsplit("/", 1)[1]):
        refs.append(tail)
    for candidate in refs:
        try:
            if provider_key is not None and (info := _find_model(snapshot, provider_key, candidate)):
                return info
            if info := _find_model(snapshot, None, candidate):
                return info
        except (LookupError, ValueError):
            continue
    return None


def _evict(cache: dict[_K, _V], limit: int) -> None:
    """Drop the oldest entries (insertion order) so that one more fits."""
    while len(cache) >= limit:
        del cache[next(iter(cache))]


# ---------------------------------------------------------------------------------------------------
# Pricer
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CompiledOverride:
    provider_key: str | None
    effective_from_ns: int
    order: int
    table: _Table


class Pricer:
    """Prices LLM calls; thread-safe (look-ups are lock-free, cache fills take a lock)."""

    def __init__(
        self, overrides: Iterable[PriceOverride] = (), *, cache_size: int = _DEFAULT_CACHE_SIZE
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be positive")
        by_model: dict[str, list[_CompiledOverride]] = {}
        for order, o in enumerate(overrides):
            if not isinstance(o, PriceOverride):
                raise TypeError(f"expected PriceOverride, got {type(o).__name__}")
            by_model.setdefault(o.model.strip().lower(), []).append(
                _CompiledOverride(
                    canonical_provider(o.provider), o.effective_from_ns, order, _override_table(o)
                )
            )
        self._overrides: dict[str, tuple[_CompiledOverride, ...]] = {k: tuple(v) for k, v in by_model.items()}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._snapshot = _gp_snapshot.get_snapshot()
        self._days: dict[tuple[str | None, str | None, int], _Entry] = {}
        self._models: dict[tuple[str | None, str], _GenaiModel | None] = {}

    def cost_nanos(self, *, provider: str | None, model: str | None, usage: Usage, at_ns: int) -> int | None:
        """Cost of one call in integer nano-dollars (1e-9 USD), rounded half-up to the nano, or None
        when the model has no known price (never 0 for an unknown model).

        ``at_ns`` is the call's time (UTC epoch ns); genai-prices prices as of that time are used.
        Overrides win over genai-prices: among overrides whose model equals ``model`` (exact,
        case-insensitive) and whose provider is None or equals ``provider`` (case-insensitive, after
        :func:`canonical_provider`), a provider-specific one is preferred, then the latest
        ``effective_from_ns <= at_ns``.
        """
        entry = self._days.get((provider, model, at_ns // _NS_PER_DAY))
        if entry is None:
            entry = self._fill(provider, model, at_ns)
        return entry.cost(usage, at_ns)

    def rates(self, *, provider: str | None, model: str | None, at_ns: int) -> Rates | None:
        """Per-token USD rates of the model at ``at_ns`` (worst case over price tiers), None if unknown."""
        entry = self._days.get((provider, model, at_ns // _NS_PER_DAY))
        if entry is None:
            entry = self._fill(provider, model, at_ns)
        return entry.rates_at(at_ns)

    def clear_cache(self) -> None:
        """Forget resolved prices and re-read genai-prices' current data snapshot."""
        with self._lock:
            self._days = {}
            self._models = {}
            self._snapshot = _gp_snapshot.get_snapshot()

    # -- slow path -----------------------------------------------------------------------------------

    def _fill(self, provider: str | None, model: str | None, at_ns: int) -> _Entry:
        day = at_ns // _NS_PER_DAY
        key = (provider, model, day)
        with self._lock:
            entry = self._days.get(key)
            if entry is None:
                entry = self._build_day(provider, model, day)
                _evict(self._days, self._cache_size)
                self._days[key] = entry
            return entry

    def _build_day(self, provider: str | None, model: str | None, day: int) -> _Entry:
        if model is None or not model.strip():
            return _NO_PRICE
        provider_key = canonical_provider(provider)
        overrides = [
            o
            for o in self._overrides.get(model.strip().lower(), ())
            if o.provider_key is None or o.provider_key == provider_key
        ]
        genai = self._genai_model(provider_key, model)
        start = day * _NS_PER_DAY
        end = start + _NS_PER_DAY
        bounds = {start}
        bounds.update(o.effective_from_ns for o in overrides if start < o.effective_from_ns < end)
        if genai is not None:
            bounds.update(start + offset for offset in genai.time_of_day_ns)
        starts: list[int] = []
        entries: list[_Table | _NoPrice] = []
        for t in sorted(bounds):
            entry = self._entry_at(overrides, genai, t)
            if not entries or entry is not entries[-1]:
                starts.append(t)
                entries.append(entry)
        if len(entries) == 1:
            return entries[0]
        return _Schedule(starts, entries)

    @staticmethod
    def _entry_at(
        overrides: list[_CompiledOverride], genai: _GenaiModel | None, at_ns: int
    ) -> _Table | _NoPrice:
        active = [o for o in overrides if o.effective_from_ns <= at_ns]
        if active:
            best = max(active, key=lambda o: (o.provider_key is not None, o.effective_from_ns, o.order))
            return best.table
        if genai is not None:
            return genai.table_at(at_ns)
        return _NO_PRICE

    def _genai_model(self, provider_key: str | None, model: str) -> _GenaiModel | None:
        key = (provider_key, model.strip().lower())
        if key in self._models:
            return self._models[key]
        info = _lookup_genai(self._snapshot, provider_key, model)
        found = None if info is None else _GenaiModel(info)
        _evict(self._models, self._cache_size)
        self._models[key] = found
        return found
