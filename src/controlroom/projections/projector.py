"""The projector: folds the run log, in sequence order, into the read model. It is the worker
runtime's first log consumer (``controlroom.workers``), named ``read_model``.

Each pass is one transaction that reads a batch of events after the stored position, folds them
into the affected runs and spans, applies the cost_daily deltas, and stores the new position —
so a crash at any point resumes exactly where it stopped, and replaying from zero (rebuild)
yields the same read model as folding incrementally.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Table, delete, select, tuple_

from controlroom import events as ev
from controlroom.cost.overrides import PricerCache
from controlroom.projections import fold
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.tables import (
    READ_MODEL_TABLES,
    cost_daily,
    cost_hourly,
    projection_errors,
    projects,
    reservations,
    run_outcomes,
    run_tags,
    runs,
    runs_hourly,
    scores,
    spans,
    unguarded_spend,
)
from controlroom.workers import consumer

logger = logging.getLogger(__name__)

NAME = "read_model"
LOCK = consumer.lock_name(NAME)
RUN_EVENTS = (ev.RUN_STARTED, ev.RUN_ENDED, ev.RUN_ABANDONED)
SPAN_EVENTS = (ev.SPAN_STARTED, ev.SPAN_ENDED, ev.SPAN_RECORDED)
# Events that show the agent was still alive (a score may come from an evaluator long after).
REVIVING_EVENTS = (ev.RUN_STARTED, ev.RUN_ENDED, *SPAN_EVENTS)
# Longest a PostgreSQL projector keeps its lock while batches stream: then it lets a waiting
# rebuild (or another worker) in, even if it is still behind.
HOLD_LOCK_SECONDS = 2.0

RunKey = tuple[int, str]
# A batch's runs as folded (each with all its spans by id): the rows the database will hold once
# the batch is written.
Folded = dict[RunKey, tuple[fold.Row, dict[str, fold.Row]]]


@dataclass
class _Fold:
    write: Callable[[Connection], None]
    rows: Folded


@dataclass
class _InFlight:
    """A batch being written by the writer thread (PostgreSQL)."""

    done: Future[bool]  # True: committed; False: another process folded first, nothing written
    end: int  # seq of its last event: the position once committed
    rows: Folded


class Projector:
    """The read model's log consumer (a ``consumer.Consumer``; its effects are in the database, so
    exactly once)."""

    name = NAME

    def __init__(self, store: Store, *, batch: int = 5000) -> None:
        self.store = store
        self.batch = batch
        self._pricers = PricerCache()
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: _InFlight | None = None
        self._lock: contextlib.ExitStack | None = None  # the session lock held while batches stream
        self._lock_until = 0.0  # time.monotonic() at which to let it go

    # -- public -----------------------------------------------------------------------------
    def run_once(self, limit: int | None = None) -> int:
        """Fold up to ``limit`` events; returns how many were folded (0: caught up or locked).

        An event that cannot be folded (a bug, or data the database refuses) must not stop the read
        model for everyone: the batch is retried one event at a time, and the event that still
        fails is set aside in ``projection_errors`` (it stays in the log) and skipped.

        On PostgreSQL a batch is written by a thread of the projector's own while the next one is
        read and folded (the database and Python work at the same time); a call returns once its
        batch is folded and the one before it committed, and the call that finds nothing more to
        fold returns once everything is committed."""
        try:
            if self.store.is_sqlite:
                return self._run_batch(limit or self.batch)
            return self._run_pipelined(limit or self.batch)
        except Exception:
            logger.exception("projector: a batch failed; folding it one event at a time")
        self._drop_inflight()
        try:
            return self._run_batch(1)
        except Exception as e:
            logger.exception("projector: setting aside an event that cannot be folded")
            return self._set_aside(repr(e))

    def _run_batch(self, limit: int) -> int:
        if self.store.is_sqlite:
            # SQLite has one writer: read and fold without holding the write lock (ingest goes on
            # meanwhile), then write if nobody folded in between (the position is the check).
            with self.store.read() as conn:
                position = self.position(conn)
                batch = log.read_after(conn, position, limit)
                if not batch:
                    return 0
                write = self._fold(conn, batch, {}).write
            with self.store.write() as conn:
                if self.position(conn) != position:
                    return 0
                write(conn)
                self._save_position(conn, batch[-1].seq)
            return len(batch)
        with self.store.write(derived=True) as conn:
            if not self.store.try_lock(conn, LOCK):
                return 0
            position = self.position(conn)
            batch = log.read_after(conn, position, limit)
            if not batch:
                return 0
            self._fold(conn, batch, {}).write(conn)
            self._save_position(conn, batch[-1].seq)
            return len(batch)

    def _run_pipelined(self, limit: int) -> int:
        """Read and fold the batch after the one in flight (over its rows as folded, for runs in
        both), then wait for that one to commit and hand this one to the writer thread. While
        batches follow each other the projector holds its lock for the session (other processes
        skip; a rebuild waits), and lets it go when caught up or after HOLD_LOCK_SECONDS."""
        if self._inflight is None and not self._take_lock():
            return 0
        inflight = self._inflight
        with self.store.read() as conn:
            position = inflight.end if inflight else self.position(conn)
            batch = log.read_after(conn, position, limit)
            folded = self._fold(conn, batch, inflight.rows if inflight else {}) if batch else None
        if not self._wait_inflight() or folded is None:
            self._release_lock()
            return 0  # caught up (or the batch before was not written: this fold was over its rows)
        if time.monotonic() > self._lock_until:  # write this one here, and let the lock go
            written = self._commit(position, batch[-1].seq, folded.write)
            self._release_lock()
            return len(batch) if written else 0
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="controlroom-projector-write")
        done = self._writer.submit(self._commit, position, batch[-1].seq, folded.write)
        self._inflight = _InFlight(done, batch[-1].seq, folded.rows)
        return len(batch)

    def _take_lock(self) -> bool:
        lock = contextlib.ExitStack()
        if not lock.enter_context(self.store.exclusive(LOCK)):
            lock.close()
            return False
        self._lock = lock
        self._lock_until = time.monotonic() + HOLD_LOCK_SECONDS
        return True

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _commit(self, position: int, end: int, write: Callable[[Connection], None]) -> bool:
        """Write a batch (in the writer thread, under the lock this projector's session holds)."""
        with self.store.write(derived=True) as conn:
            if self.position(conn) != position:  # cannot happen under the lock; never fold twice
                return False
            write(conn)
            self._save_position(conn, end)
            return True

    def _wait_inflight(self) -> bool:
        """Wait for the batch in flight (if any) to be written; False if it was not (another
        process folded first). Its error, if it failed, is raised."""
        inflight, self._inflight = self._inflight, None
        return inflight is None or inflight.done.result()

    def close(self) -> None:
        """Wait for the batch being written, if any, and let the lock go."""
        self._drop_inflight()

    def _drop_inflight(self) -> None:
        """Wait for the batch in flight, whatever its outcome, and let the lock go."""
        try:
            self._wait_inflight()
        except Exception:
            logger.exception("projector: a batch failed; folding it one event at a time")
        finally:
            self._release_lock()

    def _set_aside(self, error: str) -> int:
        with self.store.write() as conn:
            if not self.store.try_lock(conn, LOCK):
                return 0
            batch = log.read_after(conn, self.position(conn), 1)
            if not batch:
                return 0
            e = batch[0]
            conn.execute(delete(projection_errors).where(projection_errors.c.seq == e.seq))
            conn.execute(
                projection_errors.insert().values(
                    seq=e.seq,
                    project_id=e.project_id,
                    event_id=e.event_id,
                    error=error[:4000],
                    at=time.time_ns(),
                )
            )
            self._save_position(conn, e.seq)
            return 1

    def catch_up(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total

    def rebuild(self) -> int:
        """Drop the read model and replay the whole log from zero. Only the read model: other
        consumers keep their positions (a rebuild never re-runs their effects)."""
        self._drop_inflight()
        with self.store.write() as conn:
            self.store.wait_lock(conn, LOCK)  # a running projector finishes its batch first
            for table in READ_MODEL_TABLES:
                conn.execute(delete(table))
            consumer.reset_position(conn, NAME)
        self._pricers = PricerCache()
        return self.catch_up()

    @staticmethod
    def lag(conn: Connection) -> tuple[int, int, int]:
        """(position, head of the log, age in ns of the oldest event not yet folded: 0 if none)."""
        return consumer.lag(conn, NAME)

    @staticmethod
    def position(conn: Connection) -> int:
        return consumer.position(conn, NAME)

    # -- folding ----------------------------------------------------------------------------
    def _fold(self, conn: Connection, batch: list[log.LoggedEvent], carried: Folded) -> _Fold:
        """Fold a batch over the rows it touches (read through ``conn``, or taken from ``carried``:
        a batch not yet committed); returns the writes to make and the rows as folded."""
        run_keys = sorted({(e.project_id, e.run_id) for e in batch})
        project_ids = sorted({pid for pid, _ in run_keys})
        timezones = dict(
            conn.execute(
                select(projects.c.id, projects.c.timezone).where(projects.c.id.in_(project_ids))
            ).all()
        )
        old_runs, old_spans = self._load(conn, [k for k in run_keys if k not in carried])
        for k in run_keys:
            if k in carried:
                old_runs[k], old_spans[k] = carried[k]
        new_runs = {k: dict(v) for k, v in old_runs.items()}
        new_spans: dict[tuple[int, str], dict[str, fold.Row]] = defaultdict(dict)
        for k, by_id in old_spans.items():
            new_spans[k] = {sid: dict(s) for sid, s in by_id.items()}
        touched_spans: set[tuple[int, str, str]] = set()
        new_scores: list[dict[str, Any]] = []

        for e in batch:
            key = (e.project_id, e.run_id)
            run = new_runs.get(key)
            if run is None:
                run = new_runs[key] = fold.new_run(e.project_id, e.run_id, e.seq, e.ts, e.received_at)
            elif run["abandoned_at"] is not None and e.type in REVIVING_EVENTS:
                run["abandoned_at"] = None  # it was alive after all; the sweeper may abandon it again
            run["last_event_at"] = max(run["last_event_at"], e.received_at)
            body = orjson.loads(e.body)
            if e.type in RUN_EVENTS:
                fold.apply_run_event(run, e.type, e.ts, body)
            elif e.type in SPAN_EVENTS:
                span_id = body["span_id"]
                span = new_spans[key].get(span_id)
                if span is None:
                    span = new_spans[key][span_id] = fold.new_span(e.project_id, e.run_id, span_id, e.seq)
                fold.apply_span_event(span, e.type, e.ts, body)
                touched_spans.add((e.project_id, e.run_id, span_id))
            elif e.type == ev.SCORE_RECORDED:
                new_scores.append(_score_row(e, body))

        pricers = {pid: self._pricers.get(conn, pid) for pid in project_ids}
        for project_id, run_id, span_id in touched_spans:
            fold.price_span(new_spans[(project_id, run_id)][span_id], pricers[project_id])

        reserved = self._reserved(conn, new_spans, old_spans)
        deltas: dict[fold.DayKey, list[int]] = defaultdict(lambda: [0] * len(fold.COST_FIELDS))
        spend: dict[tuple[int, int, str], int] = defaultdict(int)
        hours: dict[fold.HourKey, list[int]] = defaultdict(lambda: [0, 0])
        run_hours: dict[tuple[int, int, str], int] = defaultdict(int)
        succeeded: dict[fold.OutcomeKey, int] = defaultdict(int)
        for key, run in new_runs.items():
            spans_now = new_spans[key].values()
            fold.summarise_run(run, spans_now)
            tz = timezones.get(key[0], "UTC")
            for dk, acc in fold.contributions(run, spans_now, tz).items():
                deltas[dk] = [a + b for a, b in zip(deltas[dk], acc, strict=True)]
            for sk, cost in fold.unguarded(run, spans_now, reserved[key[0]]).items():
                spend[sk] += cost
            for hk, (n, cost) in fold.hourly(run, spans_now).items():
                hours[hk][0] += n
                hours[hk][1] += cost
            if (rh := fold.run_hour(run)) is not None:
                run_hours[rh] += 1
            for ok in fold.outcomes(run, spans_now):
                succeeded[ok] += 1
            if key in old_runs:
                old, old_run_spans = old_runs[key], old_spans.get(key, {}).values()
                for dk, acc in fold.contributions(old, old_run_spans, tz).items():
                    deltas[dk] = [a - b for a, b in zip(deltas[dk], acc, strict=True)]
                for sk, cost in fold.unguarded(old, old_run_spans, reserved[key[0]]).items():
                    spend[sk] -= cost
                for hk, (n, cost) in fold.hourly(old, old_run_spans).items():
                    hours[hk][0] -= n
                    hours[hk][1] -= cost
                if (rh := fold.run_hour(old)) is not None:
                    run_hours[rh] -= 1
                for ok in fold.outcomes(old, old_run_spans):
                    succeeded[ok] -= 1

        def write(conn: Connection) -> None:
            self._write(conn, old_runs, new_runs, new_spans, touched_spans, new_scores, deltas)
            self._write_spend(conn, spend)
            self._write_hours(conn, hours, run_hours)
            self._write_outcomes(conn, succeeded)

        return _Fold(write, {k: (r, new_spans[k]) for k, r in new_runs.items()})

    @staticmethod
    def _reserved(
        conn: Connection, *span_maps: dict[tuple[int, str], dict[str, fold.Row]]
    ) -> defaultdict[int, set[str]]:
        """Per project, which of the reservations the batch's spans name exist in the ledger."""
        named: defaultdict[int, set[str]] = defaultdict(set)
        for spans_by_run in span_maps:
            for (project_id, _), by_id in spans_by_run.items():
                for s in by_id.values():
                    rid = fold.reservation_of(s)
                    if rid is not None:
                        named[project_id].add(rid)
        found: defaultdict[int, set[str]] = defaultdict(set)
        for project_id, ids in named.items():
            wanted = sorted(ids)
            for i in range(0, len(wanted), 1000):
                q = select(reservations.c.id).where(
                    reservations.c.project_id == project_id, reservations.c.id.in_(wanted[i : i + 1000])
                )
                found[project_id].update(conn.execute(q).scalars())
        return found

    def _load(
        self, conn: Connection, run_keys: list[tuple[int, str]]
    ) -> tuple[dict[tuple[int, str], fold.Row], dict[tuple[int, str], dict[str, fold.Row]]]:
        old_runs: dict[tuple[int, str], fold.Row] = {}
        old_spans: dict[tuple[int, str], dict[str, fold.Row]] = defaultdict(dict)
        by_project: dict[int, list[str]] = defaultdict(list)
        for project_id, run_id in run_keys:
            by_project[project_id].append(run_id)
        # `project_id = ? AND run_id IN (...)` uses the primary keys; a (project_id, run_id) IN
        # (VALUES ...) comparison is planned as a scan by SQLite.
        for project_id, run_ids in by_project.items():
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i : i + 500]
                for r in conn.execute(
                    select(runs).where(runs.c.project_id == project_id, runs.c.run_id.in_(chunk))
                ).mappings():
                    old_runs[(project_id, r["run_id"])] = dict(r)
                present = [rid for rid in chunk if (project_id, rid) in old_runs]
                if not present:
                    continue
                rows = conn.execute(
                    select(spans).where(spans.c.project_id == project_id, spans.c.run_id.in_(present))
                ).mappings()
                for sp in rows:
                    old_spans[(project_id, sp["run_id"])][sp["span_id"]] = dict(sp)
        return old_runs, old_spans

    def _write(
        self,
        conn: Connection,
        old_runs: dict[tuple[int, str], fold.Row],
        new_runs: dict[tuple[int, str], fold.Row],
        new_spans: dict[tuple[int, str], dict[str, fold.Row]],
        touched_spans: set[tuple[int, str, str]],
        new_scores: list[dict[str, Any]],
        deltas: dict[fold.DayKey, list[int]],
    ) -> None:
        many = self.store.insert_many
        many(conn, spans, [new_spans[(p, r)][s] for p, r, s in sorted(touched_spans)], _replace(spans))
        many(conn, runs, [r for k, r in new_runs.items() if old_runs.get(k) != r], _replace(runs))
        tag_rows = [
            {"project_id": r["project_id"], "tag": t, "run_id": r["run_id"], "started_at": r["started_at"]}
            for k, r in new_runs.items()
            if r["tags"] and (old_runs.get(k) or {}).get("tags") != r["tags"]
            for t in sorted(set(r["tags"]))
        ]
        many(conn, run_tags, tag_rows, _replace(run_tags))
        many(conn, scores, new_scores, lambda stmt: stmt.on_conflict_do_nothing())
        rows = [
            {
                "project_id": k.project_id,
                "day": k.day,
                "agent": k.agent,
                "provider": k.provider,
                "model": k.model,
                **dict(zip(fold.COST_FIELDS, acc, strict=True)),
            }
            for k, acc in deltas.items()
            if any(acc)
        ]
        many(conn, cost_daily, rows, _add(cost_daily, fold.COST_FIELDS))
        # A bucket whose every call moved elsewhere (e.g. its agent became known) is dropped, as a
        # rebuild would never have created it.
        emptied = [k for k, acc in deltas.items() if any(a < 0 for a in acc)]
        if emptied:
            conn.execute(
                delete(cost_daily).where(
                    tuple_(
                        cost_daily.c.project_id,
                        cost_daily.c.day,
                        cost_daily.c.agent,
                        cost_daily.c.provider,
                        cost_daily.c.model,
                    ).in_([(k.project_id, k.day, k.agent, k.provider, k.model) for k in emptied]),
                    *(cost_daily.c[c] == 0 for c in fold.COST_FIELDS),
                )
            )

    def _write_spend(self, conn: Connection, spend: dict[tuple[int, int, str], int]) -> None:
        self._add_deltas(conn, unguarded_spend, spend, ("cost_nanos",))

    def _write_hours(
        self,
        conn: Connection,
        hours: dict[fold.HourKey, list[int]],
        run_hours: dict[tuple[int, int, str], int],
    ) -> None:
        self._add_deltas(conn, cost_hourly, hours, ("calls", "cost_nanos"))
        self._add_deltas(conn, runs_hourly, run_hours, ("runs",))

    def _write_outcomes(self, conn: Connection, succeeded: dict[fold.OutcomeKey, int]) -> None:
        self._add_deltas(conn, run_outcomes, succeeded, ("succeeded_runs",))

    def _add_deltas(
        self,
        conn: Connection,
        table: Table,
        deltas: Mapping[tuple[Any, ...], int | Sequence[int]],
        columns: tuple[str, ...],
    ) -> None:
        """A rollup's changes: each key (the table's primary key, in its order) adds its deltas to
        ``columns`` of its row, made if missing. A row that a negative delta left at zero in every
        column is dropped (its calls or runs moved elsewhere), as a rebuild would never make it."""
        keys = [c.name for c in table.primary_key]
        rows, shrunk = [], []
        for key, delta in sorted(deltas.items()):
            values = (delta,) if isinstance(delta, int) else tuple(delta)
            if any(values):
                rows.append(dict(zip(keys, key, strict=True)) | dict(zip(columns, values, strict=True)))
            if any(v < 0 for v in values):
                shrunk.append(key)
        self.store.insert_many(conn, table, rows, _add(table, columns))
        if shrunk:
            conn.execute(
                delete(table).where(
                    tuple_(*table.primary_key.columns).in_(shrunk), *(table.c[c] == 0 for c in columns)
                )
            )

    @staticmethod
    def _save_position(conn: Connection, seq: int) -> None:
        consumer.save_position(conn, NAME, seq)


def _replace(table: Table) -> Callable[[Any], Any]:
    """ON CONFLICT of the primary key: replace every other column."""
    return lambda stmt: stmt.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key],
        set_={c.name: stmt.excluded[c.name] for c in table.c if not c.primary_key},
    )


def _add(table: Table, columns: tuple[str, ...]) -> Callable[[Any], Any]:
    """ON CONFLICT of the primary key: add the new row's ``columns`` to the stored row's."""
    return lambda stmt: stmt.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key],
        set_={c: table.c[c] + stmt.excluded[c] for c in columns},
    )


def _score_row(e: log.LoggedEvent, body: dict[str, Any]) -> dict[str, Any]:
    body = ev.with_defaults(ev.SCORE_RECORDED, body)  # the defaults are events.py's
    fields = (
        "span_id",
        "name",
        "value",
        "label",
        "comment",
        "source",
        "evaluator",
        "evaluator_version",
        "kind",
        "normalised",
        "author",
    )
    return {"project_id": e.project_id, "event_id": e.event_id, "run_id": e.run_id, "ts": e.ts} | {
        k: body[k] for k in fields
    }
