"""Re-send batches of events that the SDK kept on disk: those the server refused (``rejected/`` in
the spool directory, e.g. sent with a revoked key) once the cause is fixed, or a spool that no
process will replay. Ingest is idempotent by event id, so sending a batch twice stores it once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from controlroom.sdk._transport import HTTPTransport, Request, Transport, json_headers

SUFFIX = ".batch.gz"  # the SDK spool's file names (controlroom.sdk._spool)


@dataclass(frozen=True, slots=True)
class Outcome:
    path: Path
    sent: bool  # accepted by the server (and deleted)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    detail: str = ""  # why a batch was kept, or the first rejected events


def batches(paths: Iterable[Path]) -> Iterator[Path]:
    """The batch files named, and those in the directories named (oldest first)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(path.glob(f"*{SUFFIX}"))
        else:
            yield path


def resend(
    paths: Iterable[Path],
    *,
    url: str,
    api_key: str,
    timeout: float = 30.0,
    transport: Transport | None = None,
) -> Iterator[Outcome]:
    """POST each batch (gzip-encoded JSON, as spooled) to ``url``/v1/events; delete those the server
    accepts. Raises OSError when the server cannot be reached (or answers something that is not
    HTTP), ValueError for a URL that is not http(s)."""
    transport = transport or HTTPTransport(url, timeout=timeout)
    headers = json_headers(api_key, gzip=True)
    try:
        for path in batches(paths):
            answer = transport.send(Request("POST", "/v1/events", path.read_bytes(), headers))
            doc = answer.json()
            if answer.status != 200:
                detail = doc.get("detail")
                yield Outcome(path, False, detail=f"HTTP {answer.status}: {detail or answer.body[:200]!r}")
                continue
            path.unlink(missing_ok=True)  # (an SDK process replaying the same spool may have sent it too)
            rejected = doc.get("rejected") or []
            yield Outcome(
                path,
                True,
                accepted=int(doc.get("accepted", 0)),
                duplicates=int(doc.get("duplicates", 0)),
                rejected=len(rejected),
                detail="; ".join(f"{r.get('id')}: {r.get('reason')}" for r in rejected[:3]),
            )
    finally:
        transport.close()
