"""Cost of LLM calls: token usage priced in integer nano-dollars."""

from controlroom.cost.pricing import PriceOverride, Pricer, Rates, canonical_provider
from controlroom.money import Usage

__all__ = ["PriceOverride", "Pricer", "Rates", "Usage", "canonical_provider"]
