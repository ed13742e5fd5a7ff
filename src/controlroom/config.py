"""Server settings: one table, read from ``CONTROLROOM_*`` environment variables, validated once.

Each setting is declared once in ``SETTINGS``; the docs list is checked against this table by a test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from controlroom.errors import ConfigError


def default_database_url() -> str:
    home = Path(os.environ.get("CONTROLROOM_HOME", Path.home() / ".controlroom"))
    return f"sqlite:///{home / 'controlroom.db'}"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    env: str
    parse: Callable[[str], Any]
    default: Callable[[], Any]
    help: str


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _database_url(raw: str) -> str:
    if not raw.startswith(("sqlite:///", "postgresql+psycopg://", "postgresql://")):
        raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
    if raw.startswith("postgresql://"):
        raw = "postgresql+psycopg://" + raw.removeprefix("postgresql://")
    if raw.startswith("sqlite:///~"):
        raw = "sqlite:///" + str(Path(raw.removeprefix("sqlite:///")).expanduser())
    return raw


def _hold_seconds(raw: str) -> float:
    value = float(raw)
    if not 1 <= value <= 86_400:
        raise ValueError("must be a number of seconds from 1 to 86400")
    return value


def _public_url(raw: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http:// or https:// URL such as https://controlroom.example.com")
    return raw.rstrip("/")


def _session_seconds(raw: str) -> float:
    value = float(raw)
    if not 60 <= value <= 366 * 86_400:
        raise ValueError("must be a number of seconds from 60 to 31622400 (a year)")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "CONTROLROOM_DATABASE_URL",
        _database_url,
        default_database_url,
        "SQLAlchemy URL of the store: sqlite:///PATH (default ~/.controlroom/controlroom.db) "
        "or postgresql+psycopg://USER@HOST/DB.",
    ),
    Setting("host", "CONTROLROOM_HOST", str, lambda: "127.0.0.1", "Address `serve` listens on."),
    Setting("port", "CONTROLROOM_PORT", _port, lambda: 8750, "Port `serve` listens on."),
    Setting(
        "max_batch_events",
        "CONTROLROOM_MAX_BATCH_EVENTS",
        _positive_int,
        lambda: 5000,
        "Most events one POST /v1/events may carry (more answers 413).",
    ),
    Setting(
        "max_body_bytes",
        "CONTROLROOM_MAX_BODY_BYTES",
        _positive_int,
        lambda: 16 * 1024 * 1024,
        "Largest request body accepted, after decompression (more answers 413).",
    ),
    Setting(
        "abandon_after_seconds",
        "CONTROLROOM_ABANDON_AFTER_SECONDS",
        _positive_float,
        lambda: 3600.0,
        "A run with no end and no event for this long is marked abandoned (a failure).",
    ),
    Setting(
        "hold_seconds",
        "CONTROLROOM_HOLD_SECONDS",
        _hold_seconds,
        lambda: 600.0,
        "A budget hold not settled within this many seconds (its process died, or the call outlasted "
        "it) is settled at its full amount.",
    ),
    Setting(
        "projector_batch",
        "CONTROLROOM_PROJECTOR_BATCH",
        _positive_int,
        lambda: 5000,
        "Events the projector folds per transaction.",
    ),
    Setting(
        "public_url",
        "CONTROLROOM_PUBLIC_URL",
        _public_url,
        lambda: "",
        "The URL people use to reach this server (e.g. https://controlroom.example.com): links in "
        "notifications, and the origin a browser's changes must come from (CSRF). Default: "
        "http://HOST:PORT.",
    ),
    Setting(
        "session_idle_seconds",
        "CONTROLROOM_SESSION_IDLE_SECONDS",
        _session_seconds,
        lambda: 12 * 3600.0,
        "A dashboard session ends after this long without a request.",
    ),
    Setting(
        "session_max_seconds",
        "CONTROLROOM_SESSION_MAX_SECONDS",
        _session_seconds,
        lambda: 7 * 86_400.0,
        "A dashboard session ends this long after login, however active.",
    ),
    Setting(
        "worker_poll_seconds",
        "CONTROLROOM_WORKER_POLL_SECONDS",
        _positive_float,
        lambda: 0.5,
        "How often a `controlroom worker` looks for new events when none woke it (ingest in its own "
        "process wakes it at once; `serve`'s child polls at least every 0.1 s).",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    host: str
    port: int
    max_batch_events: int
    max_body_bytes: int
    abandon_after_seconds: float
    hold_seconds: float
    projector_batch: int
    public_url: str
    session_idle_seconds: float
    session_max_seconds: float
    worker_poll_seconds: float

    @property
    def base_url(self) -> str:
        """Where people reach this server: ``public_url``, else http://HOST:PORT."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment, then ``overrides`` (e.g. CLI flags); a bad value raises ConfigError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for s in SETTINGS:
            if overrides.get(s.name) is not None:
                raw = overrides[s.name]
                source = "--db" if s.name == "database_url" else f"--{s.name.replace('_', '-')}"
            elif s.env in env:
                raw = env[s.env]
                source = s.env
            else:
                values[s.name] = s.default()
                continue
            try:
                values[s.name] = s.parse(str(raw))
            except ValueError as e:
                raise ConfigError(f"{source}={raw!r}: {e}") from None
        return cls(**values)


assert {f.name for f in fields(Settings)} == {s.name for s in SETTINGS}
