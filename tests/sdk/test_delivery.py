"""Never block, never lose: the server killed mid-run, spool replay by a later process, and a
lost response that makes the exporter send a batch twice."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import controlroom
from conftest import LiveServer, free_port
from controlroom.accounts import projects
from controlroom.cli import main
from controlroom.store.engine import Store
from controlroom.store.tables import events, runs, spans
from controlroom.store.tables import events as events_table
from tests_support import wait_for

CLI = str(Path(sys.executable).with_name("controlroom"))


class ServerProcess:
    """`controlroom serve` as a separate process, which a test can kill and start again."""

    def __init__(self, db_url: str, port: int, log: Path) -> None:
        self.db_url, self.port, self.log = db_url, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [CLI, "serve", "--db", self.db_url, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def server_process(db_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, str, Store]]:
    store = Store(db_url)
    store.migrate()
    with store.write() as conn:
        key = projects.create_key(conn, project=projects.ensure_project(conn, name="acme")).key
    server = ServerProcess(db_url, free_port(), tmp_path / "server.log")
    try:
        yield server, key, store
    finally:
        server.stop()
        store.dispose()


def count(store: Store, table: object, *where: object) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_server_killed_mid_run_and_restarted_10s_later(
    server_process: tuple[ServerProcess, str, Store], tmp_path: Path
) -> None:
    server, key, store = server_process
    server.start()
    client = controlroom.init(
        url=server.url,
        api_key=key,
        spool_dir=tmp_path / "spool",
        strict=True,
        flush_interval=0.05,
        batch_size=100,
    )
    try:
        with controlroom.run("long-agent") as run:
            for i in range(300):
                with controlroom.span(f"step-{i}", attributes={"i": i, "a": 1, "b": "x", "c": 2.5}):
                    pass
            assert controlroom.flush(15)
            server.kill()
            for i in range(300, 1000):
                with controlroom.span(f"step-{i}", attributes={"i": i, "a": 1, "b": "x", "c": 2.5}):
                    pass
        assert not controlroom.flush(1)  # the server is down: nothing is lost, it waits in the spool
        assert client.exporter.spool.pending()
        # the outage under test: the server stays down for 10 s
        threading.Event().wait(10)
        server.start()
        assert controlroom.flush(60)
    finally:
        controlroom.shutdown(timeout=10)

    def folded() -> bool:
        return (
            count(store, runs, runs.c.run_id == run.run_id, runs.c.status == "succeeded") == 1
            and count(store, spans, spans.c.run_id == run.run_id, spans.c.status == "ok") == 1000
        )

    wait_for(folded, timeout=60)
    assert count(store, events, events.c.run_id == run.run_id) == 2 * 1000 + 2  # each event exactly once
    assert not list((tmp_path / "spool").glob("*.batch.gz"))


AGENT = textwrap.dedent("""
    import sys, controlroom
    controlroom.init(url=sys.argv[1], api_key=sys.argv[2], spool_dir=sys.argv[3], shutdown_timeout=1)
    if sys.argv[4] == "run":
        with controlroom.run("spooled-agent") as run:
            for i in range(50):
                with controlroom.span(f"s{i}"):
                    pass
        print(run.run_id)
    else:
        print(controlroom.flush(30))
""")


def test_spool_is_replayed_by_a_later_process(
    server_process: tuple[ServerProcess, str, Store], tmp_path: Path
) -> None:
    server, key, store = server_process
    spool = tmp_path / "spool"
    env = {**os.environ, "CONTROLROOM_STRICT": "0"}
    first = subprocess.run(
        [sys.executable, "-c", AGENT, server.url, key, str(spool), "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = first.stdout.strip()
    assert list(spool.glob("*.batch.gz")), first.stderr  # the server was down: the run waits on disk
    server.start()
    second = subprocess.run(
        [sys.executable, "-c", AGENT, server.url, key, str(spool), "flush"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert second.stdout.strip() == "True", second.stderr
    wait_for(lambda: count(store, spans, spans.c.run_id == run_id) == 50, timeout=30)
    assert count(store, events, events.c.run_id == run_id) == 2 * 50 + 2
    assert not list(spool.glob("*.batch.gz"))


class DropFirstResponse:
    """A loopback proxy that forwards every request but throws away the server's first response,
    as a network would that failed after the server committed the batch."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.dropped = 0
        self.forwarded = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_message(f: object) -> bytes | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = f.readline()  # type: ignore[attr-defined]
            if not line:
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + f.read(length)  # type: ignore[attr-defined, no-any-return]

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                request = self._read_message(reader)
                if request is None:
                    return
                with (
                    socket.create_connection(("127.0.0.1", self.upstream_port)) as up,
                    up.makefile("rb") as ur,
                ):
                    up.sendall(request)
                    response = self._read_message(ur)
                assert response is not None
                if self.dropped == 0 and b"POST" in request[:8]:
                    self.dropped += 1
                    return  # the response is lost; the connection drops
                self.forwarded += 1
                conn.sendall(response)

    def close(self) -> None:
        self.sock.close()


def test_a_batch_resent_after_a_lost_response_counts_nothing_twice(live: LiveServer, tmp_path: Path) -> None:
    proxy = DropFirstResponse(int(live.url.rsplit(":", 1)[1]))
    controlroom.init(
        url=f"http://127.0.0.1:{proxy.port}",
        api_key=live.key,
        spool_dir=tmp_path / "spool",
        strict=True,
        flush_interval=0.05,
    )
    try:
        with controlroom.run("support-bot") as run:
            for _ in range(3):
                with controlroom.llm("openai", "gpt-4o") as call:
                    call.record(input_tokens=1000, output_tokens=200)
        assert controlroom.flush(15)
    finally:
        controlroom.shutdown(timeout=5)
        proxy.close()
    assert proxy.dropped == 1 and proxy.forwarded >= 1
    with live.client() as http:
        view = wait_for(
            lambda: (
                (r := http.get(f"/v1/runs/{run.run_id}")).status_code == 200
                and r.json()["status"] == "succeeded"
                and r.json()
            )
        )
        costs = http.get("/v1/costs/daily").json()
    assert view["counts"]["llm"] == 3
    assert view["cost_usd"] == "0.0135"  # 3 x (1000 x $2.50/M + 200 x $10/M), not twice that
    assert costs["total"] == {
        "calls": 3,
        "cost_usd": "0.0135",
        "unpriced_calls": 0,
        "succeeded_runs": 1,
        "refused_calls": 0,
    }
    assert count(live.store, events, events.c.run_id == run.run_id) == 2 + 3 * 2


def test_a_refused_batch_is_kept_on_disk_not_dropped(live: LiveServer, tmp_path: Path) -> None:
    """A 4xx (here: a key that is not valid) cannot be retried; the batch is kept for a human."""
    controlroom.init(
        url=live.url,
        api_key="cr_" + "n" * 43,
        spool_dir=tmp_path / "spool",
        strict=False,
        budget=False,
        flush_interval=0.05,
    )
    try:
        with controlroom.run("support-bot"), controlroom.span("step"):
            pass
        controlroom.flush(5)
    finally:
        controlroom.shutdown(timeout=1)
    kept = list((tmp_path / "spool" / "rejected").glob("*.batch.gz"))
    assert kept
    import gzip

    import orjson

    events = [e for f in kept for e in orjson.loads(gzip.decompress(f.read_bytes()))["events"]]
    assert {e["type"] for e in events} == {"run.started", "span.started", "span.ended", "run.ended"}
    copies = tmp_path / "copies"
    copies.mkdir()
    for f in kept:
        shutil.copy(f, copies / f.name)

    # once the cause is fixed (here: the right key), `controlroom resend` sends them again
    rejected_dir = str(tmp_path / "spool" / "rejected")

    def resend(*args: str, **kw: Any) -> Any:
        return CliRunner().invoke(main, ["resend", *args], **kw)

    wrong = resend(rejected_dir, "--url", live.url, "--api-key", "cr_" + "n" * 43)
    assert wrong.exit_code == 1 and "HTTP 401" in wrong.output and "not sent" in wrong.output
    assert all(f.exists() for f in kept)  # a refused batch stays where it is
    sent = resend(rejected_dir, "--url", live.url, "--api-key", live.key)
    assert sent.exit_code == 0, sent.output
    assert "accepted" in sent.output
    assert not any(f.exists() for f in kept)  # sent: deleted
    assert count(live.store, events_table, events_table.c.event_id.in_([e["id"] for e in events])) == len(
        events
    )
    again = resend(*(str(p) for p in copies.iterdir()), "--url", live.url)
    assert again.exit_code != 0 and "--api-key" in again.output  # no key: named
    away = resend(str(copies), "--url", f"http://127.0.0.1:{free_port()}", "--api-key", live.key)
    assert away.exit_code == 1 and "cannot reach the server" in away.output
    again = resend(str(copies), "--url", live.url, env={"CONTROLROOM_API_KEY": live.key})
    assert again.exit_code == 0 and "0 accepted" in again.output and "already stored" in again.output
    empty = resend(rejected_dir, "--url", live.url, "--api-key", live.key)
    assert empty.exit_code == 0 and "no batches" in empty.output
    schemeless = resend(rejected_dir, "--url", "localhost:8750", "--api-key", "k")
    assert (
        schemeless.exit_code == 1
        and "--url='localhost:8750': must be an http:// or https:// URL" in schemeless.output
    )


def test_an_uncapped_agent_keeps_working_while_controlroom_is_down(
    server_process: tuple[ServerProcess, str, Store],
) -> None:
    from controlroom.sdk._control import BudgetExceeded, ControlClient

    server, key, _ = server_process
    server.start()
    call = {
        "agent": "bot",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "max_output_tokens": 10,
    }
    known = ControlClient(server.url, key, timeout=2)
    assert known.reserve(**call) is None  # no cap applies
    server.kill()
    known._no_budget_until.clear()  # past the short cache: the ledger is asked, and is away
    assert known.reserve(**call) is None
    stranger = ControlClient(server.url, key, timeout=2)  # never told: fails closed
    with pytest.raises(BudgetExceeded) as refused:
        stranger.reserve(**call)
    assert refused.value.reason == "ledger_unavailable"
    known.close()
    stranger.close()
