"""Money and token usage, defined once for the server, the CLI and the SDK (standard library only).

Money is kept exactly, as integer nano-dollars (1e-9 USD). The one rounding rule: an amount in
USD with more than nine decimal places becomes the nearest nano-dollar, halves rounded up (away
from zero; amounts are never negative) — the rule genai-prices' costs, reported costs, caps and
settlements all follow, so the cap's ledger and the read model charge a call the same. The one
exception is deliberate and named: a reservation's worst case is rounded up (:func:`ceil_nanos`),
so a hold is never smaller than the call it guards.

Token usage follows the OpenTelemetry rule: ``input_tokens`` includes cached tokens,
``output_tokens`` includes reasoning tokens. Every field is a count of one call, 0 to
:data:`MAX_TOKENS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

NANOS_PER_USD = 10**9
MAX_USD = Decimal(10**9)
"""The largest amount of money any field accepts (a daily cap): a billion dollars."""
MAX_CALL_USD = Decimal(10**6)
"""The largest cost of one call (reported on a span or a settlement): a million dollars."""

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
MAX_TOKENS = 10**10
"""The bound of every usage field: tokens of one call."""


def to_nanos(usd: Decimal | str | int) -> int:
    """USD -> nano-dollars, rounded to the nearest nano-dollar, halves up (the one rounding rule)."""
    return int((Decimal(usd) * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def ceil_nanos(usd: Decimal) -> int:
    """USD -> nano-dollars rounded up: for worst cases (a hold must cover the call it guards)."""
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def to_usd(nanos: int) -> str:
    """Nano-dollars -> the exact USD decimal string, without trailing zeros ("0", "0.000345", "12")."""
    if not nanos:
        return "0"
    return format(Decimal(nanos).scaleb(-9).normalize(), "f")


def parse_usd(value: object, name: str, *, maximum: Decimal = MAX_USD) -> int:
    """A USD amount a person or client wrote (a decimal string or number) -> nano-dollars.

    Raises ValueError naming ``name`` and the value when it is not a finite decimal number from 0
    to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f'{name} must be a decimal number of USD, e.g. "0.25"')
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number of USD") from None
    if not d.is_finite() or d < 0 or d > maximum:
        raise ValueError(f"{name} {value!r} must be between 0 and {maximum} USD")
    return to_nanos(d)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call (see the module's docstring for what each includes)."""

    input_tokens: int = 0
    """All input tokens, INCLUDING ``cache_read_tokens`` and ``cache_write_tokens``."""
    output_tokens: int = 0
    """All output tokens, INCLUDING ``reasoning_tokens``."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in USAGE_FIELDS}
