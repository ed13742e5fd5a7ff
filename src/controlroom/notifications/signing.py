"""Webhook signatures. Each delivery carries

    Controlroom-Timestamp: <unix seconds>
    Controlroom-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the webhook's secret>

A receiver recomputes the HMAC over the raw body, compares in constant time, and refuses a
timestamp older than a few minutes (a replayed delivery). Standard library only."""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {"Controlroom-Timestamp": str(ts), "Controlroom-Signature": signature(secret, ts, body)}


def verify(
    secret: str, body: bytes, timestamp: str, signature_header: str, *, now: float | None = None
) -> bool:
    """True if the delivery is authentic and fresh (what a receiver runs)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, ts, body), signature_header.strip())
