"""Integrations that trace provider SDK clients without hand-written spans.

``instrument_openai(openai.OpenAI())`` and ``instrument_anthropic(anthropic.Anthropic())`` instrument one
client instance each (sync or async) and return it. Neither ``openai`` nor ``anthropic`` is imported
until a client is instrumented: controlroom works without them.
"""

from __future__ import annotations

from controlroom.sdk.integrations.anthropic import instrument as instrument_anthropic
from controlroom.sdk.integrations.openai import instrument as instrument_openai

__all__ = ["instrument_anthropic", "instrument_openai"]
