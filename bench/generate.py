"""Build a large store through controlroom's own code path, for the query benchmark.

Default: 150,000 runs with 1,000,000 spans over the last 30 days (1,000 of the runs have 200
spans), six agents on four providers, three environments, a dozen tags (one on 0.5% of the
runs, one on 30 runs), and the statuses of a real fleet (succeeded, failed, cancelled, flaky runs
with a failed-then-retried call, and runs that never ended, which the abandoned-run sweeper closes). Events go into the log
with ``controlroom.store.ingest.ingest_events`` (validation included), then
``Projector(store).catch_up()`` folds them into the read model, exactly as the server would.

Built stores are kept under ``bench/cache/`` (SQLite files) or as PostgreSQL databases named
``bench_store_<key>``, keyed by size, generator version and a digest of the migrations, and reused. A build
is resumable: it records its progress per chunk of runs (re-appending a chunk is a no-op, since
event ids are deterministic), and the projector resumes from its stored position.

    .venv/bin/python bench/generate.py --backend sqlite            # build (or reuse) the default store
    .venv/bin/python bench/generate.py --backend sqlite --runs 15000 --spans 100000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from common import BACKENDS, CACHE, log, pg_create_database, pg_database_exists, pg_drop_database, pg_url
from controlroom.accounts import projects
from controlroom.projections.projector import Projector
from controlroom.store.engine import MIGRATIONS, Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import runs, spans
from controlroom.workers.sweeper import sweep_abandoned
from workload import RunSpec, build_run, hex_id

GEN_VERSION = 3  # bump when the generated data changes shape
DAY_NS = 86_400 * 10**9

# (agent, weight, provider, model)
AGENTS = (
    ("support-bot", 40, "openai", "gpt-4o-mini"),
    ("research-agent", 15, "anthropic", "claude-3-5-sonnet-latest"),
    ("sql-analyst", 15, "openai", "gpt-4o-mini"),
    ("code-reviewer", 10, "openai", "gpt-4o"),
    ("triage", 12, "google", "gemini-1.5-flash"),
    ("summarizer", 8, "vllm", "acme-llama-8b"),  # self-hosted: no known price
)
ENVIRONMENTS = (("production", 80), ("staging", 15), ("dev", 5))
TAGS = (
    "customer:acme",
    "customer:globex",
    "customer:initech",
    "tier:free",
    "tier:pro",
    "tier:enterprise",
    "experiment:a",
    "experiment:b",
    "channel:email",
    "channel:chat",
    "channel:api",
)
RARE_TAG = "vip"  # on ~0.5% of runs
TINY_TAG = "customer:tiny"  # on one run in 5,000 (30 of 150,000): fewer than a page
# status -> weight; "flaky" succeeds after a failed call, "running" never ends (the sweeper abandons it)
STATUSES = (("succeeded", 86), ("flaky", 4), ("failed", 6), ("cancelled", 2), ("running", 2))
_SPAN_OFFSETS = (-3, -2, -1, 0, 0, 1, 2, 3)  # spread of span counts around the mean; sums to 0


@dataclass(frozen=True)
class GenConfig:
    backend: str = "sqlite"
    runs: int = 150_000
    spans: int = 1_000_000
    big_runs: int = 1_000
    big_run_spans: int = 200
    days: int = 30
    chunk_runs: int = 2_000
    seed: int = 7

    @property
    def key(self) -> str:
        raw = json.dumps([GEN_VERSION, schema_fingerprint(), asdict(self)], sort_keys=True)
        digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
        return f"{self.backend}_r{self.runs}_s{self.spans}_{digest}"


@dataclass
class BuiltStore:
    """A finished store: where it is, the API key for its project, and what is in it."""

    config: GenConfig
    url: str
    api_key: str
    project: str
    stats: dict[str, Any]
    seconds: dict[str, float]  # what building it took: append, fold_after_append, sweep, finish, total


def schema_fingerprint() -> str:
    """A digest of the migration scripts: a store built under other ones is not reused (the
    initial migration may be edited in place while the project is young)."""
    digest = hashlib.sha1()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _weighted(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    total = sum(row[1] for row in table)
    x = rng.random() * total
    for row in table:
        x -= row[1]
        if x < 0:
            return row
    return table[-1]


class Plan:
    """Which run gets how many spans, when it starts and what it looks like: a pure function of
    the config and the run's index, so that any chunk can be (re)built on its own."""

    def __init__(self, cfg: GenConfig, end_ns: int) -> None:
        self.cfg = cfg
        self.end_ns = end_ns
        self.start_ns = end_ns - cfg.days * DAY_NS
        self.stride = max(1, cfg.runs // cfg.big_runs) if cfg.big_runs else 0
        self.offset = self.stride // 2
        normal_runs = cfg.runs - cfg.big_runs
        self.mean = (cfg.spans - cfg.big_runs * cfg.big_run_spans) / max(1, normal_runs)
        if self.mean < 2:
            raise ValueError("too few spans for that many runs (a run has at least 2 spans)")

    def is_big(self, i: int) -> bool:
        return bool(self.stride) and i % self.stride == self.offset and i // self.stride < self.cfg.big_runs

    def n_spans(self, i: int) -> int:
        if self.is_big(i):
            return self.cfg.big_run_spans
        big_before = 0
        if self.stride:
            big_before = min(self.cfg.big_runs, max(0, (i - self.offset + self.stride - 1) // self.stride))
        k = i - big_before  # ordinal among normal runs
        base = int((k + 1) * self.mean) - int(k * self.mean)
        return max(2, base + _SPAN_OFFSETS[k % len(_SPAN_OFFSETS)])

    def spec(self, i: int, rng: random.Random) -> RunSpec:
        big = self.is_big(i)
        agent, _, provider, model = AGENTS[1] if big else _weighted(rng, AGENTS)
        status = _weighted(rng, STATUSES)[0]
        tags = rng.sample(TAGS, rng.randrange(0, 4))
        if rng.random() < 0.005:
            tags.append(RARE_TAG)
        if i % 5000 == 17:
            tags.append(TINY_TAG)
        window = self.end_ns - self.start_ns - 3600 * 10**9  # the last hour stays empty
        return RunSpec(
            run_id=hex_id("run", self.cfg.seed, i),
            agent=agent,
            start_ns=self.start_ns + window * i // self.cfg.runs + rng.randrange(0, 10**9),
            n_spans=self.n_spans(i),
            status="succeeded" if status == "flaky" else status,
            flaky=status == "flaky",
            provider=provider,
            model=model,
            environment=_weighted(rng, ENVIRONMENTS)[0],
            agent_version=f"1.{rng.randrange(0, 6)}.0",
            tags=tuple(tags),
            user_id=f"user-{rng.randrange(5000)}",
            session_id=f"session-{i // 3}",
            metadata={"region": rng.choice(("eu-west-1", "us-east-1", "ap-south-1"))},
        )

    def chunk_events(self, chunk: int) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.cfg.seed}/{chunk}")
        lo = chunk * self.cfg.chunk_runs
        hi = min(self.cfg.runs, lo + self.cfg.chunk_runs)
        out: list[dict[str, Any]] = []
        for i in range(lo, hi):
            out.extend(build_run(self.spec(i, rng), rng, ts_ns=True))
        return out


# -- where a store lives --------------------------------------------------------------------------


def _state_path(cfg: GenConfig) -> Path:
    return CACHE / f"{cfg.key}.json"


def _url(cfg: GenConfig) -> str:
    if cfg.backend == "sqlite":
        return f"sqlite:///{CACHE / f'{cfg.key}.db'}"
    return pg_url(_pg_name(cfg))


def _pg_name(cfg: GenConfig) -> str:
    return f"bench_store_{cfg.key.split('_')[-1]}"


def _load_state(cfg: GenConfig) -> dict[str, Any] | None:
    path = _state_path(cfg)
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    exists = (
        Path(_url(cfg).removeprefix("sqlite:///")).exists()
        if cfg.backend == "sqlite"
        else pg_database_exists(_pg_name(cfg))
    )
    return state if exists else None


def _save_state(cfg: GenConfig, state: dict[str, Any]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = _state_path(cfg).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(_state_path(cfg))


def _drop(cfg: GenConfig) -> None:
    _state_path(cfg).unlink(missing_ok=True)
    if cfg.backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(_url(cfg).removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    else:
        pg_drop_database(_pg_name(cfg))


def _drop_stale(cfg: GenConfig) -> None:
    """Remove stores of the same backend and size built by another generator or schema."""
    prefix = cfg.key.rsplit("_", 1)[0] + "_"
    for path in CACHE.glob(f"{prefix}*.json"):
        key = path.stem
        if key == cfg.key:
            continue
        log(f"generate {cfg.backend}: removing the stale store {key}")
        path.unlink()
        if cfg.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (CACHE / f"{key}.db{suffix}").unlink(missing_ok=True)
        else:
            pg_drop_database(f"bench_store_{key.rsplit('_', 1)[1]}")


# -- building -------------------------------------------------------------------------------------


def build(cfg: GenConfig, *, rebuild: bool = False) -> BuiltStore:
    """The store for ``cfg``: reused when already built, resumed when half built, else built."""
    if rebuild:
        _drop(cfg)
    state = _load_state(cfg)
    if state is not None and state.get("done"):
        log(f"generate {cfg.backend}: reusing {cfg.key} (built in {state['seconds']['total']} s)")
        return BuiltStore(
            cfg, _url(cfg), state["api_key"], state["project"], state["stats"], state["seconds"]
        )
    if state is None:
        _drop(cfg)
        _drop_stale(cfg)
        CACHE.mkdir(parents=True, exist_ok=True)
        if cfg.backend == "postgresql":
            pg_create_database(_pg_name(cfg))
        state = {"config": asdict(cfg), "key": cfg.key, "end_ns": time.time_ns(), "chunks_done": 0}
        state["seconds"] = {"append": 0.0, "fold_after_append": 0.0, "sweep": 0.0, "finish": 0.0}
    else:
        log(f"generate {cfg.backend}: resuming {cfg.key} at chunk {state['chunks_done']}")
    store = Store(_url(cfg))
    try:
        store.migrate()
        with store.write() as conn:
            project = projects.ensure_project(conn, name="bench")
            if "api_key" not in state:
                state["api_key"] = projects.create_key(conn, project=project, name="bench").key
                state["project"] = project.name
        _save_state(cfg, state)
        _append_and_fold(cfg, store, project.id, state)
        t = time.monotonic()
        projector = Projector(store)
        for _ in range(cfg.runs // 1000 + 2):  # bounded: each pass closes up to 1000 runs
            if not sweep_abandoned(store, quiet_seconds=0):
                break
            projector.catch_up()  # the swept runs stop being "running" only once folded
        state["seconds"]["sweep"] += time.monotonic() - t
        t = time.monotonic()
        _finish(store)
        state["seconds"]["finish"] += time.monotonic() - t
        state["stats"] = _stats(store)
        state["seconds"]["total"] = round(sum(state["seconds"].values()), 1)
        state["done"] = True
        _save_state(cfg, state)
    finally:
        store.dispose()
    log(f"generate {cfg.backend}: built {cfg.key} in {state['seconds']['total']} s: {state['stats']}")
    return BuiltStore(cfg, _url(cfg), state["api_key"], state["project"], state["stats"], state["seconds"])


def _append(cfg: GenConfig, store: Store, project_id: int, state: dict[str, Any]) -> None:
    plan = Plan(cfg, state["end_ns"])
    chunks = -(-cfg.runs // cfg.chunk_runs)
    for chunk in range(state["chunks_done"], chunks):
        t = time.monotonic()
        events = plan.chunk_events(chunk)
        for i in range(0, len(events), 5000):
            result = ingest_events(store, project_id, {"events": events[i : i + 5000]}, max_events=5000)
            if result.rejected:
                raise RuntimeError(f"generated events were rejected: {result.rejected[:3]}")
        state["chunks_done"] = chunk + 1
        state["seconds"]["append"] += time.monotonic() - t
        _save_state(cfg, state)
        if chunk % 10 == 9 or chunk == chunks - 1:
            log(f"  appended {chunk + 1}/{chunks} chunks ({state['seconds']['append']:.0f} s)")


def _append_and_fold(cfg: GenConfig, store: Store, project_id: int, state: dict[str, Any]) -> None:
    """Append in this process while a projector process folds behind it (two cores, two jobs)."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited database connections
    appended = ctx.Event()
    folder = ctx.Process(target=_fold_until, args=(store.url, appended), name="bench-projector")
    folder.start()
    try:
        _append(cfg, store, project_id, state)
        appended.set()
        t = time.monotonic()
        folder.join(timeout=3600)
        if folder.exitcode != 0:
            raise RuntimeError(f"the projector process failed (exit code {folder.exitcode})")
        state["seconds"]["fold_after_append"] += time.monotonic() - t
    finally:
        if folder.is_alive():
            folder.kill()
            folder.join(10)


def _fold_until(url: str, appended: Any) -> None:
    """Fold whatever is in the log; once the appender is done, fold the rest and stop."""
    store = Store(url)
    projector = Projector(store)
    total = 0
    last_report = time.monotonic()
    deadline = time.monotonic() + 3600
    try:
        while time.monotonic() < deadline:
            done = appended.is_set()  # read before folding: nothing is appended after it is set
            n = projector.run_once()
            total += n
            if time.monotonic() - last_report > 30:
                log(f"  folded {total} events")
                last_report = time.monotonic()
            if n == 0:
                if done:
                    return
                appended.wait(0.2)
        raise TimeoutError("the projector did not catch up within an hour")
    finally:
        store.dispose()


def _finish(store: Store) -> None:
    """What a long-running deployment would have done by now: statistics (PostgreSQL's autovacuum)
    and a checkpointed WAL (SQLite). SQLite gets no ANALYZE: controlroom never runs one."""
    if store.is_sqlite:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def _stats(store: Store) -> dict[str, Any]:
    with store.read() as conn:
        by_status: dict[str, int] = {
            status: n
            for status, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
        }
        return {
            "runs": conn.execute(select(func.count()).select_from(runs)).scalar_one(),
            "spans": conn.execute(select(func.count()).select_from(spans)).scalar_one(),
            "runs_200_spans": conn.execute(
                select(func.count()).select_from(runs).where(runs.c.span_count >= 200)
            ).scalar_one(),
            "has_error": conn.execute(
                select(func.count()).select_from(runs).where(runs.c.has_error.is_(True))
            ).scalar_one(),
            "by_status": by_status,
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    ap.add_argument("--runs", type=int, default=GenConfig.runs)
    ap.add_argument("--spans", type=int, default=GenConfig.spans)
    ap.add_argument("--big-runs", type=int, default=GenConfig.big_runs, help="runs with 200 spans")
    ap.add_argument("--rebuild", action="store_true", help="drop the cached store and build it again")
    args = ap.parse_args(argv)
    for backend in args.backend or BACKENDS:
        cfg = GenConfig(backend=backend, runs=args.runs, spans=args.spans, big_runs=args.big_runs)
        built = build(cfg, rebuild=args.rebuild)
        print(json.dumps({"url": built.url, "stats": built.stats}, indent=2))


if __name__ == "__main__":
    main()
