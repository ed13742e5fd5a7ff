"""The SDK client: configuration (validated eagerly) and the one default instance."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controlroom.errors import ConfigError
from controlroom.sdk._approvals import ApprovalClient
from controlroom.sdk._control import ControlClient
from controlroom.sdk._exporter import Exporter
from controlroom.sdk._transport import Transport

logger = logging.getLogger("controlroom.sdk")


@dataclass(frozen=True, slots=True)
class SDKConfig:
    url: str
    api_key: str
    environment: str | None
    spool_dir: Path
    batch_size: int
    max_queue: int
    flush_interval: float
    timeout: float
    shutdown_timeout: float
    strict: bool
    budget: bool
    control_timeout: float


class Client:
    """Holds the configuration and the exporter. Most programs use the default one, made by
    :func:`controlroom.init`."""

    def __init__(self, config: SDKConfig, *, transport: Transport | None = None) -> None:
        """``transport``: what both the exporter and the control calls send through (by default
        HTTP to ``config.url``), e.g. a :class:`~controlroom.sdk._transport.MockTransport` in tests."""
        self.config = config
        self.exporter = Exporter(
            url=config.url,
            api_key=config.api_key,
            spool_dir=config.spool_dir,
            batch_size=config.batch_size,
            max_queue=config.max_queue,
            flush_interval=config.flush_interval,
            timeout=config.timeout,
            strict=config.strict,
            transport=transport,
        )
        self.emit = self.exporter.put
        self.control = (
            ControlClient(config.url, config.api_key, config.control_timeout, transport=transport)
            if config.budget
            else None
        )
        self.approvals = ApprovalClient(
            config.url, config.api_key, config.control_timeout, transport=transport
        )

    def flush(self, timeout: float = 5.0) -> bool:
        return self.exporter.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        if self.control is not None:
            self.control.close()
        self.approvals.close()
        return self.exporter.shutdown(self.config.shutdown_timeout if timeout is None else timeout)


_default: Client | None = None
_lock = threading.Lock()
_scoped: ContextVar[Client | None] = ContextVar("controlroom_client", default=None)


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def build_config(
    url: str | None = None,
    api_key: str | None = None,
    *,
    environment: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 500,
    max_queue: int = 200_000,
    flush_interval: float = 0.5,
    timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
    strict: bool | None = None,
    budget: bool = True,
    control_timeout: float = 5.0,
) -> SDKConfig:
    url = url or os.environ.get("CONTROLROOM_URL")
    api_key = api_key or os.environ.get("CONTROLROOM_API_KEY")
    if not url:
        raise ConfigError("controlroom.init: no server URL; pass url= or set CONTROLROOM_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"controlroom.init: url {url!r} is not an http(s) URL such as http://127.0.0.1:8750"
        )
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"controlroom.init: url {url!r} has a bad port") from None
    if not api_key:
        raise ConfigError("controlroom.init: no API key; pass api_key= or set CONTROLROOM_API_KEY")
    if not api_key.startswith("cr_") or len(api_key) < 20:
        raise ConfigError("controlroom.init: api_key does not look like a controlroom key (cr_...)")
    for name, value in (("batch_size", batch_size), ("max_queue", max_queue)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"controlroom.init: {name}={value!r} must be a positive integer")
    for name, fvalue in (
        ("flush_interval", flush_interval),
        ("timeout", timeout),
        ("shutdown_timeout", shutdown_timeout),
        ("control_timeout", control_timeout),
    ):
        if not isinstance(fvalue, int | float) or fvalue <= 0:
            raise ConfigError(f"controlroom.init: {name}={fvalue!r} must be a positive number")
    if spool_dir is None:
        home = Path(os.environ.get("CONTROLROOM_HOME", Path.home() / ".controlroom"))
        tag = hashlib.sha256(f"{url}\n{api_key}".encode()).hexdigest()[:16]
        spool_dir = home / "spool" / tag
    return SDKConfig(
        url=url.rstrip("/"),
        api_key=api_key,
        environment=environment or os.environ.get("CONTROLROOM_ENVIRONMENT"),
        spool_dir=Path(spool_dir),
        batch_size=batch_size,
        max_queue=max(max_queue, batch_size),
        flush_interval=float(flush_interval),
        timeout=float(timeout),
        shutdown_timeout=float(shutdown_timeout),
        strict=_env_bool("CONTROLROOM_STRICT") if strict is None else strict,
        budget=budget,
        control_timeout=float(control_timeout),
    )


def init(
    url: str | None = None, api_key: str | None = None, *, transport: Transport | None = None, **options: Any
) -> Client:
    """Configure the default client (see :func:`build_config` for the options, :class:`Client` for
    ``transport``)."""
    global _default
    config = build_config(url, api_key, **options)
    with _lock:
        old, _default = _default, Client(config, transport=transport)
    if old is not None:
        old.shutdown()
    return _default


def get_client() -> Client | None:
    """The client runs and spans record with: the one :func:`recording_with` set in this thread or
    task, else the default one."""
    scoped = _scoped.get()
    return scoped if scoped is not None else _default


@contextmanager
def recording_with(client: Client) -> Iterator[Client]:
    """Record with ``client`` instead of the default one, in this thread or task only (a context
    variable), so code that records on behalf of someone else — an LLM judge inside a controlroom
    worker, whose client writes to the store directly — leaves the process's default client, and
    the other threads, alone."""
    token = _scoped.set(client)
    try:
        yield client
    finally:
        _scoped.reset(token)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the default client; what cannot be sent in time stays in the spool."""
    global _default
    with _lock:
        client, _default = _default, None
    return client.shutdown(timeout) if client is not None else True


atexit.register(shutdown)
