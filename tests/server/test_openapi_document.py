"""The dashboard's typed client is generated from ``web/openapi.json``: the committed document must
be what the server publishes now, or the dashboard would be typed against an API that is gone.
(No Node needed here; tests/web/test_client.py checks the generated TypeScript against it.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import LiveServer
from controlroom.server.openapi_document import document, render

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "web" / "openapi.json"
REGENERATE = "python -m controlroom.server.openapi_document web/openapi.json"


def test_the_committed_document_is_the_server_s() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(document()), (
        f"web/openapi.json is stale: run `{REGENERATE}`, then `npm run api:generate` in web/"
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_it_is_what_a_running_server_publishes(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/openapi.json").json() == document()


def test_the_check_command_says_stale_and_how_to_fix(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    command = [sys.executable, "-m", "controlroom.server.openapi_document"]
    done = subprocess.run([*command, "--check", str(stale)], capture_output=True, text=True)
    assert done.returncode == 1 and "is stale" in done.stderr
    assert subprocess.run([*command, str(stale)], check=False).returncode == 0
    assert subprocess.run([*command, "--check", str(stale)], check=False).returncode == 0
