"""Request-scoped dependencies: the store, the authenticated project, bounded body reading."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from pydantic import WithJsonSchema
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from controlroom.accounts.projects import KEY_USE_RESOLUTION_NS, KeyInfo, hash_key, key_info, key_used
from controlroom.config import Settings
from controlroom.errors import (
    InvalidEncoding,
    InvalidJSON,
    InvalidQuery,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from controlroom.store.engine import Store

KEY_CACHE_SECONDS = 30.0
logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class KeyCache:
    """API key -> its project and scope, cached briefly so ingest does not hit the database per
    request. A revoked key stops working within KEY_CACHE_SECONDS. A key's last use is recorded
    when the cache asks the database about it and the recorded one is older than
    KEY_USE_RESOLUTION_NS: so at most once a minute per key (and per process)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, KeyInfo | None]:
        """(found, key info) without touching the database."""
        return self._cached(hash_key(key), time.monotonic())

    def _cached(self, h: str, now: float) -> tuple[bool, KeyInfo | None]:
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return True, hit[1]
        return False, None

    def forget(self, key_hash: str) -> None:
        """Drop a key this process may have cached (it was just revoked here)."""
        with self._lock:
            self._cache.pop(key_hash, None)

    def lookup(self, key: str) -> KeyInfo | None:
        h = hash_key(key)
        now = time.monotonic()
        found, info = self._cached(h, now)
        if found:
            return info
        with self.store.read() as conn:
            info = key_info(conn, key)
        at_ns = time.time_ns()
        if info is not None and (
            info.last_used_at is None or info.last_used_at <= at_ns - KEY_USE_RESOLUTION_NS
        ):
            try:
                with self.store.write() as conn:
                    key_used(conn, key_hash=h, at_ns=at_ns)
            except SQLAlchemyError:  # a note for people, never a reason to refuse the request
                logger.warning(
                    "could not record the use of an API key of %s", info.project.name, exc_info=True
                )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = (now + KEY_CACHE_SECONDS, info)
        return info


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Declares the routes' authentication in the OpenAPI document; auth.authorize does the checking.
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey")


async def authorized_key(header: str, cache: KeyCache) -> KeyInfo:
    """The key in an ``Authorization: Bearer <key>`` header, or Unauthorized; the database is asked
    (off the event loop) only for a key the cache does not know."""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send the project API key as 'Authorization: Bearer <key>'")
    found, info = cache.cached(key.strip())
    if not found:
        info = await run_in_threadpool(cache.lookup, key.strip())
    if info is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    return info


def no_nul_in_query(request: Request) -> None:
    """PostgreSQL cannot compare text with U+0000 in it: refuse such parameters up front."""
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise InvalidQuery(f"{name}: NUL characters (U+0000) are not allowed", parameter=name)


# A text query parameter: anything but NUL (see no_nul_in_query).
QueryText = Annotated[str | None, WithJsonSchema({"type": "string", "pattern": "^[^\\u0000]*$"})]
StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def in_read(
    store: Store, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``query(conn, *args, **kwargs)`` in a read transaction, on a worker thread."""

    def run() -> T:
        with store.read() as conn:
            return query(conn, *args, **kwargs)

    return await run_in_threadpool(run)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, decompressed (gzip / deflate), refusing more than ``max_bytes`` either way."""
    return await read_raw_body(
        request.receive,
        request.headers.get("content-length"),
        request.headers.get("content-encoding"),
        max_bytes,
    )


async def read_raw_body(receive: Any, length: str | None, encoding: str | None, max_bytes: int) -> bytes:
    """:func:`read_body` on the ASGI ``receive`` channel and the two headers it needs (the fast
    routes read bodies this way, without building a Request)."""
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {max_bytes}", limit=max_bytes)
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes", limit=max_bytes)
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"content-encoding {encoding!r} is not supported; use gzip or deflate")
    return _inflate(body, encoding, max_bytes)


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    wbits = 31 if encoding == "gzip" else 15
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_bytes + 1)
        if len(out) > max_bytes or d.unconsumed_tail:
            raise PayloadTooLarge(
                f"decompressed body exceeds the limit of {max_bytes} bytes", limit=max_bytes
            )
        out += d.flush()
        if not d.eof:
            raise zlib.error("truncated stream")
    except zlib.error as e:
        if encoding == "deflate" and not body.startswith(b"x"):
            return _raw_deflate(body, max_bytes)
        raise InvalidEncoding(f"the body is not valid {encoding} data: {e}") from None
    return out


def _raw_deflate(body: bytes, max_bytes: int) -> bytes:
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise InvalidEncoding(f"the body is not valid deflate data: {e}") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {max_bytes} bytes", limit=max_bytes)
    return out


def json_content_type(content_type: str | None) -> None:
    """A JSON body's Content-Type rule: application/json or any ``+json`` type (none means JSON);
    anything else is 415."""
    ct = (content_type or "application/json").split(";")[0].strip().lower()
    if ct != "application/json" and not ct.endswith("+json"):
        raise UnsupportedMediaType(f"content-type {ct!r} is not supported here; send application/json")


def parse_json(body: bytes, content_type: str | None) -> Any:
    json_content_type(content_type)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidJSON(f"the body is not valid JSON: {e}") from None
