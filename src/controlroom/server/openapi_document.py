"""The server's OpenAPI document as a file: the dashboard's typed client is generated from it
(``web/openapi.json`` → ``web/src/api/schema.d.ts``), so the file is committed and a test fails when
it differs from what the server publishes now.

    python -m controlroom.server.openapi_document web/openapi.json          # write it
    python -m controlroom.server.openapi_document --check web/openapi.json  # exit 1 if stale

No database is touched: the document comes from the routes' declarations only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def document() -> dict[str, Any]:
    """What ``GET /openapi.json`` answers, built from an app that is never started."""
    from controlroom.config import Settings
    from controlroom.server.app import create_app
    from controlroom.store.engine import Store

    with tempfile.TemporaryDirectory() as tmp:  # a database URL the app needs, never opened
        store = Store(f"sqlite:///{Path(tmp) / 'unused.db'}")
        try:
            settings = Settings.load(env={}, database_url=store.url)
            return create_app(settings, store=store, run_worker=False).openapi()
        finally:
            store.dispose()


def render(doc: dict[str, Any]) -> str:
    """Stable text: keys in the order the server declares them, two-space indents, a final newline
    (so a diff of the committed file shows what changed in the API)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlroom.server.openapi_document")
    parser.add_argument("path", type=Path, help="where the document is (web/openapi.json)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args(argv)
    text = render(document())
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(
                f"{args.path} is stale: run `python -m controlroom.server.openapi_document {args.path}`",
                file=sys.stderr,
            )
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
