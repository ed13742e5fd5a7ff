"""Shared fixtures: a real store on SQLite (a file) and on PostgreSQL, and a real HTTP server on a
free loopback port. PostgreSQL is never skipped: if it is unreachable, the tests fail."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from controlroom.accounts import projects
from controlroom.config import Settings
from controlroom.server.app import create_app
from controlroom.store.engine import Store
from controlroom.store.tables import metadata

# the dashboard tests' browser fixtures (tests/web/web_fixtures.py): one definition for every module
pytest_plugins = ["web_fixtures"]

PG_ADMIN_URL = os.environ.get("CONTROLROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A database of this test worker's own, migrated once."""
    name = f"controlroom_test_{worker_id}_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    store = Store(url)
    store.migrate()
    store.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'controlroom.db'}"
    url: str = request.getfixturevalue("pg_url")
    _truncate(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def project(store: Store) -> projects.Project:
    with store.write() as conn:
        return projects.create_project(conn, name="acme")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    key: str  # an agent key: what agents (and the SDK) use
    store: Store
    settings: Settings
    admin_key: str = ""  # an admin key of the same project: budgets, prices, keys

    def client(self, key: str | None = None, *, admin: bool = False) -> httpx.Client:
        key = key or (self.admin_key if admin else self.key)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


def start_server(
    store: Store, settings: Settings, *, dashboard: Path | None = None
) -> tuple[_Server, threading.Thread]:
    app = create_app(settings, store=store, dashboard=dashboard)
    server = _Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        threading.Event().wait(0.01)
    return server, thread


def price_and_cap(
    live: LiveServer,
    cap_usd: str,
    *,
    model: str = "acme-1",
    input_per_mtok: str = "1",
    output_per_mtok: str = "1",
) -> None:
    """Through the API: a price override for ``model`` ($1/M tokens in and out by default) and a
    daily cap for the key's project (set with its admin key)."""
    with live.client(admin=True) as http:
        price = {"model": model, "input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}
        r = http.post("/v1/prices", json=price)
        assert r.status_code == 201, r.text
        r = http.put("/v1/budgets", json={"cap_usd": cap_usd})
        assert r.status_code == 200, r.text


@pytest.fixture
def live(store: Store, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A real controlroom server on a free loopback port, with a project key.
    ``@pytest.mark.settings(name=value)`` changes its settings.

    Its worker runtime (projector, sweeper, hold expiry) runs as a thread of the server's process
    (``create_app(run_worker=True)``), not as the child process ``serve`` starts, because a child
    per test costs about 0.7 s of CPU to start (the interpreter and its imports) and, not woken by
    ingest, adds a poll interval to every wait for the read model: hundreds of tests would take
    minutes longer. The runtime is the same code either way (``standard_runtime`` with the same
    settings); the child topology itself is tested with real processes: ``serve`` and its child
    (tests/cli/test_cli.py, tests/sdk/test_delivery.py) and two ``controlroom worker`` processes on
    PostgreSQL (tests/workers/test_worker_topology.py)."""
    port = free_port()
    marker = request.node.get_closest_marker("settings")
    settings = Settings.load(
        env={},
        **{
            "database_url": store.url,
            "port": port,
            "max_batch_events": 1000,
            "max_body_bytes": 2_000_000,
            "abandon_after_seconds": 3600,
            **(marker.kwargs if marker else {}),
        },
    )
    with store.write() as conn:
        p = projects.ensure_project(conn, name="acme")
        key = projects.create_key(conn, project=p).key
        admin_key = projects.create_key(conn, project=p, name="admin", scope="admin").key
    server, thread = start_server(store, settings)
    yield LiveServer(f"http://127.0.0.1:{port}", key, store, settings, admin_key)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def traced(live: LiveServer, tmp_path: Path) -> Iterator[LiveServer]:
    """The SDK initialised against ``live`` (strict: SDK errors fail the test), shut down after."""
    import controlroom

    controlroom.init(
        url=live.url, api_key=live.key, spool_dir=tmp_path / "spool", strict=True, flush_interval=0.05
    )
    yield live
    controlroom.shutdown(timeout=10)


@pytest.fixture
def cheap_hashes() -> Iterator[None]:
    """Argon2id with small parameters for the passwords a test makes: the same code path, a
    fraction of the time (verification follows the parameters stored in each hash)."""
    from argon2 import PasswordHasher

    from controlroom.accounts import passwords

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    passwords.use_hasher(None)


@pytest.fixture
def fake() -> Iterator[Any]:
    """A fake model provider (OpenAI and Anthropic wire formats) on a free loopback port."""
    from fake_provider import FakeProvider

    with FakeProvider() as provider:
        yield provider
