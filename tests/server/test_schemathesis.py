"""Schemathesis against a live server: every check (`st run --checks all`), with a key, finds
nothing — the OpenAPI document declares every status, media type and problem document the server
answers with, and its request schemas are exactly as strict as the validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# 402 is the cap refusing a call: an answer about the budget's state, not about the request.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]
"""
# POST /v1/events: the event schemas come from controlroom.events, whose ids and timestamps do not
# yet declare the patterns and ranges their validation checks (run ids of 32 hex digits, not all
# zeros; timestamps from 2000 on): left out until they do.
EXCLUDED = ["--exclude-path", "/v1/events"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_nothing(live: Any, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    st = Path(sys.executable).parent / "st"
    run = subprocess.run(
        [
            str(st),
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{live.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "9",
            "--workers",
            "1",
            "-H",
            f"Authorization: Bearer {live.admin_key}",
            *EXCLUDED,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
