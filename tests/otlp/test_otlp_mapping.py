"""Where message content from OpenTelemetry attributes lands on a span (pure mapping, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlroom.otlp.mapping import io

USER = [{"role": "user", "parts": [{"type": "text", "content": "Book a flight"}]}]
SYSTEM = [{"type": "text", "content": "You are a travel agent."}]


@pytest.mark.parametrize(
    ("attrs", "expected_input"),
    [
        # GenAI semantic conventions: instructions apart from the messages, both as JSON strings
        (
            {"gen_ai.system_instructions": json.dumps(SYSTEM), "gen_ai.input.messages": json.dumps(USER)},
            [{"role": "system", "parts": SYSTEM}, *USER],
        ),
        ({"gen_ai.system_instructions": json.dumps(SYSTEM)}, [{"role": "system", "parts": SYSTEM}]),
        (
            {"gen_ai.system_instructions": "Be brief.", "input.value": "plain text"},
            {"system_instructions": "Be brief.", "input": "plain text"},
        ),
        ({"gen_ai.input.messages": json.dumps(USER)}, USER),
    ],
)
def test_system_instructions_become_the_first_input_message(
    attrs: dict[str, Any], expected_input: Any
) -> None:
    inp, out = io(attrs)
    assert inp == expected_input and out is None
