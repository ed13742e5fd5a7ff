"""Pricing: hand-computed costs, cache / reasoning accounting, overrides, provider aliases, as-of prices.

Expected figures are computed by hand from the per-million-token prices of genai-prices 0.2.3's bundled
data (quoted next to each test), not by asking the library.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import data_snapshot

from controlroom.cost import PriceOverride, Pricer, Rates, Usage, canonical_provider

D = Decimal


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC epoch nanoseconds."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 10**9


def nanos(usd: Decimal) -> int:
    return int((usd * 10**9).to_integral_value(rounding=ROUND_HALF_UP))


def per_mtok(tokens: int, usd_per_mtok: str) -> Decimal:
    return D(tokens) * D(usd_per_mtok) / 1_000_000


T = ns(2026, 11, 20, 12)  # a Friday noon UTC
NO_USAGE = Usage()


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


# ---------------------------------------------------------------------------------------------------
# Known models, hand computed
# ---------------------------------------------------------------------------------------------------

# gpt-4o: input $2.5, output $10, cache read $1.25 per MTok; no cache-write or reasoning price.


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "GPT-4o"])
def test_gpt_4o_matches_hand_computation(pricer: Pricer, model: str) -> None:
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000)
    expected = nanos(per_mtok(6_000, "2.5") + per_mtok(4_000, "1.25") + per_mtok(2_000, "10"))
    assert expected == 40_000_000
    assert pricer.cost_nanos(provider="openai", model=model, usage=usage, at_ns=T) == expected


def test_cache_write_without_own_price_is_charged_at_input_rate(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000, cache_write_tokens=1_000)
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=usage, at_ns=T) == nanos(
        per_mtok(1_000, "2.5")
    )


def test_reasoning_without_own_price_is_part_of_output_not_extra(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_000)
    expected = nanos(per_mtok(1_000, "2.5") + per_mtok(5_000, "10"))
    assert expected == 52_500_000
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=usage, at_ns=T) == expected


# claude-3-5-sonnet: input $3, output $15, cache read $0.3, cache write $3.75 per MTok.


@pytest.mark.parametrize("provider", ["anthropic", "Anthropic", None])
def test_claude_3_5_sonnet_cache_read_and_write(pricer: Pricer, provider: str | None) -> None:
    usage = Usage(
        input_tokens=100_000, output_tokens=3_000, cache_read_tokens=60_000, cache_write_tokens=20_000
    )
    expected = nanos(
        per_mtok(20_000, "3") + per_mtok(60_000, "0.3") + per_mtok(20_000, "3.75") + per_mtok(3_000, "15")
    )
    assert expected == 198_000_000
    cost = pricer.cost_nanos(provider=provider, model="claude-3-5-sonnet-20241022", usage=usage, at_ns=T)
    assert cost == expected


# perplexity sonar-deep-research: input $2, output $8, output reasoning $3 per MTok.


def test_separately_priced_reasoning_is_carved_out_of_output(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=10_000, reasoning_tokens=6_000)
    expected = nanos(per_mtok(1_000, "2") + per_mtok(4_000, "8") + per_mtok(6_000, "3"))
    assert expected == 52_000_000
    cost = pricer.cost_nanos(provider="perplexity", model="sonar-deep-research", usage=usage, at_ns=T)
    assert cost == expected


# perplexity sonar: input $1, output $1 per MTok, $12 per thousand requests.


def test_per_request_fee(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    expected = nanos(per_mtok(2_000, "1") + D(12) / 1_000)
    assert expected == 14_000_000
    assert pricer.cost_nanos(provider="perplexity", model="sonar", usage=usage, at_ns=T) == expected


# claude-sonnet-4-6: before 2026-03-13 input $3 / $6 above 200k input tokens, output $15 / $22.5,
# cache read $0.3 / $0.6, cache write $3.75 / $7.5; from 2026-03-13 the base prices at any length.


def test_current_claude_long_context_tier_and_price_as_of_call_time(pricer: Pricer) -> None:
    usage = Usage(
        input_tokens=300_000, output_tokens=10_000, cache_read_tokens=100_000, cache_write_tokens=50_000
    )
    before = nanos(
        per_mtok(150_000, "6") + per_mtok(100_000, "0.6") + per_mtok(50_000, "7.5") + per_mtok(10_000, "22.5")
    )
    after = nanos(
        per_mtok(150_000, "3") + per_mtok(100_000, "0.3") + per_mtok(50_000, "3.75") + per_mtok(10_000, "15")
    )
    assert (before, after) == (1_560_000_000, 817_500_000)
    model = "claude-sonnet-4-6"
    assert (
        pricer.cost_nanos(provider="anthropic", model=model, usage=usage, at_ns=ns(2026, 3, 12, 23)) == before
    )
    assert pricer.cost_nanos(provider="anthropic", model=model, usage=usage, at_ns=ns(2026, 3, 13)) == after


def test_tier_threshold_is_total_input_including_cache(pricer: Pricer) -> None:
    at = ns(2026, 2, 1)
    model = "claude-sonnet-4-6"
    at_threshold = Usage(input_tokens=200_000, cache_read_tokens=150_000)  # not above 200k: base
    above = Usage(input_tokens=200_001, cache_read_tokens=150_000)
    assert pricer.cost_nanos(provider="anthropic", model=model, usage=at_threshold, at_ns=at) == nanos(
        per_mtok(50_000, "3") + per_mtok(150_000, "0.3")
    )
    assert pricer.cost_nanos(provider="anthropic", model=model, usage=above, at_ns=at) == nanos(
        per_mtok(50_001, "6") + per_mtok(150_000, "0.6")
    )


# deepseek-chat: 00:30-16:30 UTC input $0.27, cache read $0.07, output $1.1; otherwise $0.135 / $0.035 / $0.55.


def test_time_of_day_prices_change_inside_a_day(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=400_000)
    peak = nanos(per_mtok(600_000, "0.27") + per_mtok(400_000, "0.07") + per_mtok(1_000_000, "1.1"))
    off_peak = nanos(per_mtok(600_000, "0.135") + per_mtok(400_000, "0.035") + per_mtok(1_000_000, "0.55"))
    assert (peak, off_peak) == (1_290_000_000, 645_000_000)
    half_past_midnight = ns(2026, 11, 20, 0, 30)
    cases = [
        (ns(2026, 11, 20, 0, 0), off_peak),
        (half_past_midnight - 1, off_peak),
        (half_past_midnight, peak),
        (ns(2026, 11, 20, 12), peak),
        (ns(2026, 11, 20, 16, 30) - 1, peak),
        (ns(2026, 11, 20, 16, 30), off_peak),
        (ns(2026, 11, 20, 23, 59), off_peak),
    ]
    for at, expected in cases:
        assert (
            pricer.cost_nanos(provider="deepseek", model="deepseek-chat", usage=usage, at_ns=at) == expected
        )


def test_zero_usage_costs_zero_for_a_known_model(pricer: Pricer) -> None:
    for provider, model in [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        (None, "o3-mini"),
    ]:
        assert pricer.cost_nanos(provider=provider, model=model, usage=NO_USAGE, at_ns=T) == 0


def test_usage_breaking_the_inclusion_rule_is_taken_as_the_sum_of_its_parts(pricer: Pricer) -> None:
    # cache tokens larger than input_tokens: no negative "uncached" part; reasoning larger than output.
    broken = Usage(input_tokens=10, output_tokens=0, cache_read_tokens=1_000, reasoning_tokens=100)
    expected = nanos(per_mtok(1_000, "1.25") + per_mtok(100, "10"))
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=broken, at_ns=T) == expected
    negative = Usage(input_tokens=-5, output_tokens=1_000)
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=negative, at_ns=T) == nanos(
        per_mtok(1_000, "10")
    )


# ---------------------------------------------------------------------------------------------------
# Unknown models
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        (None, "definitely-not-a-model"),
        ("openai", "definitely-not-a-model"),
        ("my-private-vllm", "definitely-not-a-model"),
        ("openai", None),
        (None, None),
        ("openai", ""),
        ("openai", "   "),
    ],
)
def test_unknown_model_is_none_not_zero(pricer: Pricer, provider: str | None, model: str | None) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert pricer.cost_nanos(provider=provider, model=model, usage=usage, at_ns=T) is None
    assert pricer.cost_nanos(provider=provider, model=model, usage=NO_USAGE, at_ns=T) is None
    assert pricer.rates(provider=provider, model=model, at_ns=T) is None


def test_unknown_provider_falls_back_to_the_model_name(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000_000)
    for provider in ("ibm.watsonx.ai", "some-proxy", None):
        assert pricer.cost_nanos(provider=provider, model="gpt-4o", usage=usage, at_ns=T) == 2_500_000_000


def test_vendor_prefixed_model_name(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000_000)
    assert pricer.cost_nanos(provider=None, model="openai/gpt-4o", usage=usage, at_ns=T) == 2_500_000_000


# ---------------------------------------------------------------------------------------------------
# Provider aliases
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("azure", "azure"),
        ("azure.ai.openai", "azure"),
        ("az.ai.inference", "azure"),
        ("anthropic", "anthropic"),
        ("gcp.vertex_ai", "google"),
        ("gcp.gemini", "google"),
        ("gcp.gen_ai", "google"),
        ("vertex_ai", "google"),
        ("google", "google"),
        ("aws.bedrock", "aws"),
        ("bedrock", "aws"),
        ("AWS.Bedrock", "aws"),
        ("mistral", "mistral"),
        ("mistral_ai", "mistral"),
        ("groq", "groq"),
        ("cohere", "cohere"),
        ("deepseek", "deepseek"),
        ("x_ai", "x-ai"),
        ("xai", "x-ai"),
        ("together_ai", "together"),
        (" Perplexity ", "perplexity"),
        ("my-private-vllm", "my-private-vllm"),
        ("", None),
        (None, None),
    ],
)
def test_canonical_provider(spelling: str | None, expected: str | None) -> None:
    assert canonical_provider(spelling) == expected


def test_alias_targets_are_genai_prices_provider_ids() -> None:
    from controlroom.cost.pricing import _PROVIDER_ALIASES

    ids = {p.id for p in data_snapshot.get_snapshot().providers}
    assert set(_PROVIDER_ALIASES.values()) <= ids


@pytest.mark.parametrize("provider", ["aws.bedrock", "bedrock", "AWS.Bedrock", "aws"])
def test_bedrock_model_id_needs_the_provider_alias(pricer: Pricer, provider: str) -> None:
    model = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert pricer.cost_nanos(provider=provider, model=model, usage=usage, at_ns=T) == nanos(
        per_mtok(1_000, "3") + per_mtok(1_000, "15")
    )
    assert pricer.cost_nanos(provider=None, model=model, usage=usage, at_ns=T) is None


@pytest.mark.parametrize("provider", ["gcp.vertex_ai", "gcp.gemini", "google", "vertex_ai"])
def test_google_spellings_price_gemini(pricer: Pricer, provider: str) -> None:
    # gemini-1.5-pro: input $1.25 / $2.5 above 128k, output $5 / $10.
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert pricer.cost_nanos(provider=provider, model="gemini-1.5-pro", usage=usage, at_ns=T) == nanos(
        per_mtok(1_000, "1.25") + per_mtok(1_000, "5")
    )


# ---------------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------------

MTOK_IN = Usage(input_tokens=1_000_000)


def override(
    model: str = "gpt-4o", provider: str | None = None, price: str = "1", at: int = 0
) -> PriceOverride:
    return PriceOverride(
        model=model,
        provider=provider,
        input_per_mtok=D(price),
        output_per_mtok=D(price),
        effective_from_ns=at,
    )


def test_override_wins_over_genai_prices() -> None:
    pricer = Pricer([override(price="7")])
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=MTOK_IN, at_ns=T) == 7_000_000_000
    # Exact model match only: a dated variant still gets genai-prices' price.
    dated = pricer.cost_nanos(provider="openai", model="gpt-4o-2024-08-06", usage=MTOK_IN, at_ns=T)
    assert dated == 2_500_000_000


def test_override_prices_an_unknown_model_with_cache_defaults() -> None:
    o = PriceOverride(
        model="acme-ft-1",
        provider=None,
        input_per_mtok=D("2"),
        output_per_mtok=D("8"),
        cache_read_per_mtok=D("0.5"),
    )
    pricer = Pricer([o])
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=4_000, cache_write_tokens=2_000)
    # cache writes have no price of their own: input rate.
    expected = nanos(
        per_mtok(4_000, "2") + per_mtok(4_000, "0.5") + per_mtok(2_000, "2") + per_mtok(1_000, "8")
    )
    assert pricer.cost_nanos(provider="anything", model="ACME-FT-1", usage=usage, at_ns=T) == expected
    assert pricer.rates(provider=None, model="acme-ft-1", at_ns=T) == Rates(
        input=D("0.000002"), output=D("0.000008"), cache_read=D("0.0000005"), cache_write=D("0.000002")
    )


def test_override_respects_effective_from_ns() -> None:
    day = ns(2026, 11, 20)
    pricer = Pricer([override(price="7", at=day + 3_600 * 10**9), override(price="9", at=ns(2026, 11, 25))])
    # Before the first override: genai-prices. The boundary lies inside a cached day.
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=day) == 2_500_000_000
    at = day + 3_600 * 10**9
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=at - 1) == 2_500_000_000
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=at) == 7_000_000_000
    assert (
        pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=ns(2026, 11, 24))
        == 7_000_000_000
    )
    assert (
        pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=ns(2026, 11, 25))
        == 9_000_000_000
    )
    # The same day again, now from the cache.
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=at - 1) == 2_500_000_000


def test_override_for_unknown_model_before_effective_time_is_none() -> None:
    pricer = Pricer([override(model="acme-ft-1", at=T)])
    assert pricer.cost_nanos(provider=None, model="acme-ft-1", usage=MTOK_IN, at_ns=T - 1) is None
    assert pricer.cost_nanos(provider=None, model="acme-ft-1", usage=MTOK_IN, at_ns=T) == 1_000_000_000


def test_provider_specific_override_is_preferred_over_a_later_generic_one() -> None:
    pricer = Pricer(
        [
            override(provider="Azure", price="3", at=ns(2026, 1, 1)),
            override(provider=None, price="5", at=ns(2026, 6, 1)),
            override(provider="openai", price="6", at=ns(2026, 1, 1)),
        ]
    )
    # azure.ai.openai and AZURE are spellings of the specific override's provider.
    for provider in ("azure", "AZURE", "azure.ai.openai"):
        assert pricer.cost_nanos(provider=provider, model="gpt-4o", usage=MTOK_IN, at_ns=T) == 3_000_000_000
    assert pricer.cost_nanos(provider="openai", model="gpt-4o", usage=MTOK_IN, at_ns=T) == 6_000_000_000
    # Other or no provider: only the generic override applies.
    assert pricer.cost_nanos(provider="groq", model="gpt-4o", usage=MTOK_IN, at_ns=T) == 5_000_000_000
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=T) == 5_000_000_000
    # Before the generic one starts: the specific one for azure, genai-prices for others.
    early = ns(2026, 3, 1)
    assert pricer.cost_nanos(provider="azure", model="gpt-4o", usage=MTOK_IN, at_ns=early) == 3_000_000_000
    assert pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=early) == 2_500_000_000


def test_latest_effective_override_wins_among_equals() -> None:
    pricer = Pricer([override(price="4", at=ns(2026, 5, 1)), override(price="3", at=ns(2026, 1, 1))])
    assert (
        pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=ns(2026, 4, 1)) == 3_000_000_000
    )
    assert (
        pricer.cost_nanos(provider=None, model="gpt-4o", usage=MTOK_IN, at_ns=ns(2026, 5, 1)) == 4_000_000_000
    )


def test_sub_nano_prices_round_half_up_once_per_call() -> None:
    pricer = Pricer([override(model="tiny", price="0.0005")])  # 0.5 nano-dollars per token
    cost = [
        pricer.cost_nanos(provider=None, model="tiny", usage=Usage(input_tokens=n), at_ns=T)
        for n in (0, 1, 2, 3)
    ]
    assert cost == [0, 1, 1, 2]


def test_override_validation() -> None:
    with pytest.raises(ValueError):
        PriceOverride(model="m", provider=None, input_per_mtok=D("-1"), output_per_mtok=D(1))
    with pytest.raises(ValueError):
        PriceOverride(model="m", provider=None, input_per_mtok=1.5, output_per_mtok=D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PriceOverride(model=" ", provider=None, input_per_mtok=D(1), output_per_mtok=D(1))
    with pytest.raises(ValueError):
        PriceOverride(model="m", provider=None, input_per_mtok=D("NaN"), output_per_mtok=D(1))


# ---------------------------------------------------------------------------------------------------
# Rates
# ---------------------------------------------------------------------------------------------------


def test_rates_of_a_known_model(pricer: Pricer) -> None:
    rates = pricer.rates(provider="openai", model="gpt-4o", at_ns=T)
    assert rates == Rates(
        input=D("2.5") / 10**6,
        output=D("10") / 10**6,
        cache_read=D("1.25") / 10**6,
        cache_write=D("2.5") / 10**6,  # no cache-write price: input rate
        max_output_tokens=None,
        context_window=128_000,
    )


def test_rates_are_worst_case_over_tiers(pricer: Pricer) -> None:
    rates = pricer.rates(provider="anthropic", model="claude-sonnet-4-6", at_ns=ns(2026, 2, 1))
    assert rates is not None
    assert (rates.input, rates.output, rates.cache_read, rates.cache_write) == (
        D("6") / 10**6,
        D("22.5") / 10**6,
        D("0.6") / 10**6,
        D("7.5") / 10**6,
    )
    later = pricer.rates(provider="anthropic", model="claude-sonnet-4-6", at_ns=ns(2026, 4, 1))
    assert later is not None
    assert later.input == D("3") / 10**6


def test_rates_include_request_fee_and_highest_output_rate(pricer: Pricer) -> None:
    sonar = pricer.rates(provider="perplexity", model="sonar", at_ns=T)
    assert sonar is not None
    assert sonar.per_request == D("0.012")
    deep = pricer.rates(provider="perplexity", model="sonar-deep-research", at_ns=T)
    assert deep is not None
    assert deep.output == D("8") / 10**6


# ---------------------------------------------------------------------------------------------------
# Agreement with genai-prices over its whole catalogue, caching, threads
# ---------------------------------------------------------------------------------------------------


def test_agrees_with_genai_prices_calc_price_for_every_model() -> None:
    """Our integer fast path must give genai-prices' own result (rounded to the nano) for every model."""
    pricer = Pricer()
    usages = [
        (Usage(input_tokens=250_123, output_tokens=12_345, cache_read_tokens=100_001, cache_write_tokens=20_007,
               reasoning_tokens=3_003),
         GenaiUsage(input_tokens=250_123, output_tokens=12_345, cache_read_tokens=100_001, cache_write_tokens=20_007,
                    output_reasoning_tokens=3_003)),
        (Usage(input_tokens=1_777, output_tokens=333, cache_read_tokens=1_001, cache_write_tokens=7,
               reasoning_tokens=111),
         GenaiUsage(input_tokens=1_777, output_tokens=333, cache_read_tokens=1_001, cache_write_tokens=7,
                    output_reasoning_tokens=111)),
    ]  # fmt: skip
    snapshot = data_snapshot.get_snapshot()
    compared = 0
    for at in (ns(2025, 6, 1, 3), ns(2026, 2, 1, 12), ns(2026, 11, 20, 12)):
        when = datetime.fromtimestamp(at / 10**9, tz=UTC)
        for provider in snapshot.providers:
            for model in provider.models:
                for usage, genai_usage in usages:
                    try:
                        genai = snapshot.calc(genai_usage, model.id, provider.id, None, when)
                    except LookupError:
                        continue
                    price = genai.model_price
                    ours = pricer.cost_nanos(provider=provider.id, model=model.id, usage=usage, at_ns=at)
                    if price.input_mtok is None and price.output_mtok is None:
                        assert ours is None, (provider.id, model.id)
                        continue
                    assert ours == nanos(genai.total_price), (provider.id, model.id, price)
                    compared += 1
    assert compared > 10_000


def test_small_cache_and_many_threads_give_the_same_answers() -> None:
    models = [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-6"),
        ("deepseek", "deepseek-chat"),
        (None, "x"),
    ]
    times = [ns(2026, 2, 1) + k * 5 * 3_600 * 10**9 for k in range(200)]  # ~42 days, any time of day
    usage = Usage(input_tokens=300_000, output_tokens=5_000, cache_read_tokens=50_000)
    reference = Pricer()
    expected = {
        (p, m, t): reference.cost_nanos(provider=p, model=m, usage=usage, at_ns=t)
        for p, m in models
        for t in times
    }
    shared = Pricer(cache_size=16)
    failures: list[object] = []

    def work(offset: int) -> None:
        for i in range(2_000):
            p, m = models[(i + offset) % len(models)]
            t = times[(i * 7 + offset) % len(times)]
            got = shared.cost_nanos(provider=p, model=m, usage=usage, at_ns=t)
            if got != expected[(p, m, t)]:
                failures.append((p, m, t, got))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(shared._days) <= 16
