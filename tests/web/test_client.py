"""The dashboard's typed client (web/src/api/schema.d.ts) is generated from web/openapi.json (itself
checked against the server by tests/server/test_openapi_document.py): a change to the API that
was not regenerated fails here, not in a person's browser."""

from __future__ import annotations

import subprocess

from web_support import ROOT, npm, require


def test_the_typed_client_is_generated_from_the_committed_document() -> None:
    command = npm()
    require(
        (ROOT / "web" / "node_modules" / ".bin" / "openapi-typescript").exists(),
        "web/node_modules is not installed: run `make dashboard` (npm ci)",
    )
    done = subprocess.run(
        [command, "run", "--silent", "api:check"],
        cwd=ROOT / "web",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        "web/src/api/schema.d.ts is stale: run `npm run api:generate` in web/\n" + done.stdout + done.stderr
    )
