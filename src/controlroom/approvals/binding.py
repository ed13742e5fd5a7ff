"""What an approval is bound to: the SHA-256 of the canonical JSON of (run, action, arguments).

Canonical JSON here: object keys sorted, no insignificant white space, non-ASCII characters as
themselves (UTF-8). Standard library only: the SDK computes the same hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def arguments_hash(*, run_id: str, action: str, arguments: Any) -> str:
    return hashlib.sha256(
        canonical_json({"run_id": run_id, "action": action, "arguments": arguments})
    ).hexdigest()
