"""The `controlroom` command: keys, projects, prices, migrate, rebuild, serve; bad values are named."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import free_port
from controlroom.accounts.projects import get_project, project_for_key
from controlroom.cli import main
from controlroom.projections.projector import Projector
from controlroom.projections.queries import get_run
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from factories import llm_usage, rid, run_started, sid, span_ended, span_started
from tests_support import wait_for


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cli_fails(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code != 0
    return result.output


def test_keys_create_list_revoke(db_url: str) -> None:
    key = cli("keys", "create", "--db", db_url, "--project", "acme").splitlines()[0]
    assert key.startswith("cr_")
    store = Store(db_url)
    with store.read() as conn:
        assert project_for_key(conn, key) is not None
    listing = cli("keys", "list", "--db", db_url, "--project", "acme")
    key_id = listing.split("\t")[0]
    assert (
        key[:10] in listing and "active" in listing and key not in listing
    )  # the secret is never shown again
    cli("keys", "revoke", "--db", db_url, key_id)
    with store.read() as conn:
        assert project_for_key(conn, key) is None
    assert "no active API key with id 999" in cli_fails("keys", "revoke", "--db", db_url, "999")
    store.dispose()


def test_projects_and_timezones(db_url: str) -> None:
    assert "Europe/Paris" in cli("projects", "create", "--db", db_url, "shop", "--timezone", "Europe/Paris")
    assert "shop\tEurope/Paris" in cli("projects", "list", "--db", db_url)
    assert "unknown timezone 'Mars/Olympus'" in cli_fails(
        "projects", "set-timezone", "--db", db_url, "shop", "Mars/Olympus"
    )
    assert "already exists" in cli_fails("projects", "create", "--db", db_url, "shop")
    assert "bad project name" in cli_fails("projects", "create", "--db", db_url, "no spaces")
    cli("projects", "set-timezone", "--db", db_url, "shop", "Asia/Tokyo")
    store = Store(db_url)
    with store.read() as conn:
        assert get_project(conn, name="shop").timezone == "Asia/Tokyo"  # type: ignore[union-attr]
    store.dispose()


def test_prices_set_list_and_rebuild_reprices(db_url: str) -> None:
    cli("projects", "create", "--db", db_url, "acme")
    store = Store(db_url)
    with store.read() as conn:
        project = get_project(conn, name="acme")
    assert project is not None
    r, s = rid(), sid()
    ingest_events(
        store,
        project.id,
        {
            "events": [
                run_started(r),
                span_started(r, s, model="acme-ft-2"),
                span_ended(r, s, usage=llm_usage(2_000_000, 0)),
            ]
        },
        max_events=10,
    )
    Projector(store).catch_up()
    with store.read() as conn:
        assert get_run(conn, project.id, r).summary.unpriced_calls == 1
    out = cli(
        "prices",
        "set",
        "--db",
        db_url,
        "--project",
        "acme",
        "--model",
        "acme-ft-2",
        "--input",
        "0.25",
        "--output",
        "1",
    )
    assert "acme-ft-2 input $0.25/Mtok" in out
    assert "acme-ft-2" in cli("prices", "list", "--db", db_url, "--project", "acme")
    assert "rebuilt the read model from 3 events" in cli("rebuild", "--db", db_url)
    with store.read() as conn:
        run = get_run(conn, project.id, r).summary
    assert run.cost_nanos == 500_000_000 and run.unpriced_calls == 0
    assert "input_per_mtok 'abc' is not a decimal number" in cli_fails(
        "prices",
        "set",
        "--db",
        db_url,
        "--project",
        "acme",
        "--model",
        "m",
        "--input",
        "abc",
        "--output",
        "1",
    )
    assert "no project named 'nope'" in cli_fails("prices", "list", "--db", db_url, "--project", "nope")
    store.dispose()


def test_migrate_reports_the_revision(db_url: str) -> None:
    store = Store(db_url)
    head = store.head_revision()
    store.dispose()
    assert head is not None and head != "0001"  # migrations after the first exist
    assert f"schema at revision {head}" in cli("migrate", "--db", db_url)


@pytest.mark.parametrize("bad", ["mysql://x/y", "not-a-url"])
def test_a_bad_database_url_is_named(bad: str, tmp_path: Path) -> None:
    assert f"--db={bad!r}" in cli_fails("migrate", "--db", bad)


def test_a_bad_environment_setting_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTROLROOM_PORT", "eighty")
    out = cli_fails("serve", "--db", f"sqlite:///{tmp_path}/x.db")
    assert "CONTROLROOM_PORT='eighty'" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_its_worker_before_it_exits(sig: signal.Signals, tmp_path: Path) -> None:
    """`serve` runs the projector in a child `controlroom worker`: stopped by a signal, it stops the
    child and waits for it, so nothing of it outlives the server (a supervisor restarting it, or a
    backup taken after it stopped, sees no writer left behind)."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("controlroom")), "serve", "--db", f"sqlite:///{tmp_path}/c.db"]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1
        worker = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in worker
        proc.send_signal(sig)
        assert proc.wait(30) == 0, (tmp_path / "serve.log").read_text()
        assert not Path(f"/proc/{children[0]}").exists()  # stopped and reaped, not left to notice later
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
