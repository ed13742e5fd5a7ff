"""Shared benchmark plumbing: databases (SQLite files, throwaway PostgreSQL databases), a real
`controlroom serve` subprocess on a free loopback port, percentiles, machine facts and results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CACHE = BENCH / "cache"
BACKENDS = ("sqlite", "postgresql")
PG_ADMIN_URL = os.environ.get("CONTROLROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- databases ------------------------------------------------------------------------------------


def pg_url(database: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _pg_admin(sql: str) -> list[Any]:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def pg_database_exists(name: str) -> bool:
    return bool(_pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def pg_create_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{name}"')


def pg_drop_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(backend: str, label: str) -> Iterator[str]:
    """A new empty database for one benchmark, removed afterwards; yields its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"controlroom-bench-{label}-") as tmp:
            yield f"sqlite:///{tmp}/controlroom.db"
    elif backend == "postgresql":
        name = f"bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
        pg_create_database(name)
        try:
            yield pg_url(name)
        finally:
            pg_drop_database(name)
    else:
        raise ValueError(f"unknown backend {backend!r}")


# -- the server -----------------------------------------------------------------------------------


def controlroom_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("controlroom")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "controlroom.cli"]


def create_key(db_url: str, project: str = "bench") -> str:
    out = subprocess.run(
        [*controlroom_cmd(), "keys", "create", "--db", db_url, "--project", project],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log_path: Path


@contextlib.contextmanager
def serve(db_url: str, *, separate_worker: bool = False, start_timeout: float = 120.0) -> Iterator[Server]:
    """`controlroom serve` in a subprocess on a free loopback port, up once /v1/health answers;
    always stopped (SIGTERM, then SIGKILL) on the way out. With ``separate_worker`` the projector
    runs in a `controlroom worker` process of its own (`serve --no-worker`)."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="controlroom-serve-", suffix=".log", delete=False) as f:
        log_path = Path(f.name)
    serve_cmd = [*controlroom_cmd(), "serve", "--db", db_url, "--host", HOST, "--port", str(port)]
    commands = [serve_cmd]
    if separate_worker:
        commands = [[*serve_cmd, "--no-worker"], [*controlroom_cmd(), "worker", "--db", db_url]]
    procs: list[subprocess.Popen[bytes]] = []
    url = f"http://{HOST}:{port}"
    try:
        with log_path.open("wb") as out:
            for cmd in commands:
                procs.append(
                    subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
        deadline = time.monotonic() + start_timeout
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(
                            f"{p.args!r} exited with {p.returncode}: {log_path.read_text()[-2000:]}"
                        )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server not up after {start_timeout}s: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
        yield Server(url, procs[0].pid, log_path)
    finally:
        for p in procs:
            _stop(p)
        errors = log_path.read_text(errors="replace")
        if "Traceback" in errors:
            log(f"server log has errors ({log_path}):\n{errors[-3000:]}")
        else:
            log_path.unlink(missing_ok=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
        proc.wait(timeout=10)


# -- numbers --------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not samples:
        return float("nan")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
    }


# -- the machine and the results ------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    pg_version = "unreachable"
    pg_settings: dict[str, str] = {}
    with contextlib.suppress(Exception):
        pg_version = str(_pg_admin("SHOW server_version")[0][0])
        names = ("shared_buffers", "synchronous_commit", "fsync", "work_mem", "max_wal_size")
        pg_settings = {n: str(_pg_admin(f"SHOW {n}")[0][0]) for n in names}
    from controlroom import __version__

    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(BENCH.parent)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout
        commit += " (src/ modified)" if dirty.strip() else ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "controlroom": __version__,
        "commit": commit,
    }


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy (anyone's processes) over the next ``seconds``."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 3)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(timeout: float, threshold: float = 0.25) -> float:
    """Wait (at most ``timeout`` s) until other work on the machine uses under ``threshold`` of
    its CPUs for 3 s in a row, since a benchmark shares the cores with whatever else runs; returns
    the last reading (log a warning if the machine never went quiet)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    busy = cpu_busy()
    while True:
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 3:
            return busy
        if time.monotonic() >= deadline:
            log(
                f"warning: the machine is busy ({busy:.0%} of its CPUs in use by others); results will be low"
            )
            return busy
        busy = cpu_busy()


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
