"""Judging a chunk of runs with an evaluator, and recording the outcome — for batch jobs and
post-run evals alike.

No run is judged twice by one evaluator version: runs are *claimed* by inserting their
``eval_items`` rows (primary key: project, evaluator, version, run) with ``ON CONFLICT DO
NOTHING`` — the database's unique key decides, on SQLite and with any number of workers on
PostgreSQL, never a read-then-insert. Only the runs a chunk claimed are judged; then their scores
(``score.recorded`` events in the run log, with ids derived from evaluator, version, run and score
name, so a replayed score is a no-op; and their rows in the read model, so they are queryable when
the job says done) and the items' outcomes are written in one transaction. A claim whose worker
died before writing its outcome is taken over after :data:`CLAIM_LEASE_NS`.

An evaluator's exception is an eval error on the item and the job (type, message), never a failure
of the judged run, and the next run is judged. Evaluators read recorded runs only.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from controlroom.evals.context import EvalContext, evaluating
from controlroom.evals.evaluator import Evaluator, Outcome, Score, evaluate
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.tables import eval_items, eval_jobs, scores

COSTLY_CHUNK = 20  # runs judged at a time by an evaluator that costs (claims renewed in between)
CLAIM_LEASE_NS = 300 * 10**9  # a claim older than this, never finished, is taken over
MAX_ERROR = 2000


@dataclass(frozen=True, slots=True)
class Counts:
    """What one chunk did: runs looked at, scored, not applicable, eval errors, left alone."""

    processed: int = 0
    scored: int = 0
    not_applicable: int = 0
    errors: int = 0
    skipped: int = 0

    def __add__(self, o: Counts) -> Counts:
        return Counts(
            self.processed + o.processed,
            self.scored + o.scored,
            self.not_applicable + o.not_applicable,
            self.errors + o.errors,
            self.skipped + o.skipped,
        )


def score_event_id(evaluator: str, version: str, run_id: str, name: str) -> str:
    """The same id every time a run gets a score of that name from that evaluator version."""
    digest = hashlib.sha256(f"{evaluator}\0{version}\0{run_id}\0{name}".encode()).hexdigest()
    return f"score-{digest[:58]}"


def normalised(e: Evaluator[..., Any], s: Score) -> float | None:
    """The score on 0..1, 1 the best: a boolean's True (the good outcome), a number within the
    evaluator's range (flipped when lower is better), a categorical score's value if it has one."""
    if s.value is None:
        return None
    if s.kind == "boolean":
        return s.value
    lo, hi = e.range
    if hi <= lo:
        return None
    x = min(1.0, max(0.0, (s.value - lo) / (hi - lo)))
    return x if e.higher_is_better else 1.0 - x


def _score_rows(
    project_id: int, run_id: str, e: Evaluator[..., Any], o: Outcome, now: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The log rows and read-model rows of an outcome's scores."""
    events, rows = [], []
    for s in o.scores:
        name = s.name or e.name
        body: dict[str, Any] = {
            "name": name,
            "source": "evaluator",
            "evaluator": e.name,
            "evaluator_version": e.version,
            "kind": s.kind,
        }
        norm = normalised(e, s)
        for key, value in (
            ("value", s.value),
            ("label", s.label),
            ("comment", s.comment),
            ("normalised", norm),
        ):
            if value is not None:
                body[key] = value
        event_id = score_event_id(e.name, e.version, run_id, name)
        events.append(
            {
                "project_id": project_id,
                "event_id": event_id,
                "type": "score.recorded",
                "run_id": run_id,
                "ts": now,
                "received_at": now,
                "body": orjson.dumps(body),
            }
        )
        rows.append(
            {
                "project_id": project_id,
                "event_id": event_id,
                "run_id": run_id,
                "span_id": None,
                "name": name,
                "value": s.value,
                "label": s.label,
                "comment": s.comment,
                "source": "evaluator",
                "evaluator": e.name,
                "ts": now,
                "evaluator_version": e.version,
                "kind": s.kind,
                "normalised": norm,
                "author": None,
            }
        )
    return events, rows


def claim(
    store: Store, *, project_id: int, e: Evaluator[..., Any], job_id: int, run_ids: Sequence[str], now: int
) -> list[str]:
    """Claim ``run_ids`` for judging by ``e``: the ones no one judged or is judging (or whose claim
    went stale). The unique key decides; returns the runs this caller may judge."""
    if not run_ids:
        return []
    with store.write() as conn:
        fresh = _insert_items(store, conn, [_item(project_id, e, job_id, r, "claimed", now) for r in run_ids])
        stale = conn.execute(
            update(eval_items)
            .where(
                eval_items.c.project_id == project_id,
                eval_items.c.evaluator == e.name,
                eval_items.c.evaluator_version == e.version,
                eval_items.c.run_id.in_([r for r in run_ids if r not in fresh]),
                eval_items.c.state == "claimed",
                eval_items.c.claimed_at < now - CLAIM_LEASE_NS,
            )
            .values(job_id=job_id, claimed_at=now)
            .returning(eval_items.c.run_id)
        )
        return [r for r in run_ids if r in fresh or r in {s.run_id for s in stale}]


def _claim_pg(store: Store, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    stmt = store.insert(eval_items).values(rows).on_conflict_do_nothing().returning(eval_items.c.run_id)
    return {r.run_id for r in conn.execute(stmt)}


@dataclass
class _Judged:
    """A chunk's outcomes, as rows to write."""

    log_rows: list[dict[str, Any]]
    score_rows: list[dict[str, Any]]
    items: dict[str, tuple[str, str | None, str | None]]  # run -> (state, error type, message)
    released: list[str]  # not judged now: gone from the read model, or skipped by the evaluator
    skipped: int
    notes: list[str]


def _judge(
    store: Store,
    project_id: int,
    e: Evaluator[..., Any],
    config: str | None,
    run_ids: Sequence[str],
    now: int,
) -> _Judged:
    from controlroom.evals.loading import load_runs

    with store.read() as conn:
        loaded = load_runs(conn, project_id, run_ids, reads=e.reads)
    with evaluating(EvalContext(store, project_id, config)):
        judged = [(run_id, evaluate(e, loaded[run_id]) if run_id in loaded else None) for run_id in run_ids]
    out = _Judged([], [], {}, [], 0, [])
    for run_id, o in judged:
        if o is None or o.status == "skipped":
            # gone from the read model (a rebuild under way), or left alone by the evaluator (a
            # judge's budget is spent): released, to be judged later
            out.released.append(run_id)
            if o is not None:
                out.skipped += 1
                if o.error is not None and o.error.message not in out.notes:
                    out.notes.append(o.error.message)
        elif o.status == "scored":
            ev_rows, rows = _score_rows(project_id, run_id, e, o, now)
            out.log_rows += ev_rows
            out.score_rows += rows
            out.items[run_id] = ("scored", None, None)
        elif o.status == "not_applicable":
            out.items[run_id] = ("not_applicable", None, None)
        else:
            err = o.error
            out.items[run_id] = (
                "error",
                (err.type if err else "Error")[:256],
                ((err.message if err else "") or "")[:MAX_ERROR],
            )
    return out


def _counts(j: _Judged, runs_: set[str]) -> Counts:
    states = [state for r, (state, _, _) in j.items.items() if r in runs_]
    return Counts(
        len(states), states.count("scored"), states.count("not_applicable"), states.count("error"), j.skipped
    )


def _save(
    store: Store,
    conn: Connection,
    job_id: int,
    j: _Judged,
    c: Counts,
    job_values: dict[str, Any] | None,
    mine: set[str],
) -> None:
    log.append(store, conn, [r for r in j.log_rows if r["run_id"] in mine])
    store.insert_many(
        conn,
        scores,
        [r for r in j.score_rows if r["run_id"] in mine],
        lambda stmt: stmt.on_conflict_do_nothing(),
    )
    values = dict(job_values or {}) | ({"note": "; ".join(j.notes)[:MAX_ERROR]} if j.notes else {})
    _count(conn, job_id, c, **values)


def judge_chunk(
    store: Store,
    *,
    project_id: int,
    e: Evaluator[..., Any],
    job_id: int,
    run_ids: Sequence[str],
    config: str | None = None,
    job_values: dict[str, Any] | None = None,
    claim_first: bool = True,
    now: int | None = None,
) -> Counts:
    """Judge and record the runs of ``run_ids`` (already chosen by the selector) that no one
    judged before; ``job_values`` (a batch job's cursor and lease) are saved on the job with the
    chunk's outcome.

    ``claim_first`` (any evaluator that costs something: a judge, your own): the runs are claimed
    in a transaction of their own before they are judged, so no two workers ever judge one run.
    Otherwise (the model-free built-ins, which cost nothing to run again) the runs judged before
    are left out, the others judged, and the claim and the outcome written in one transaction —
    half the commits; two workers racing on a run may both judge it, and the unique key keeps
    exactly one outcome."""
    now = time.time_ns() if now is None else now
    key = (
        eval_items.c.project_id == project_id,
        eval_items.c.evaluator == e.name,
        eval_items.c.evaluator_version == e.version,
    )
    if claim_first:
        mine = claim(store, project_id=project_id, e=e, job_id=job_id, run_ids=run_ids, now=now)
        if not mine:
            if job_values:
                with store.write() as conn:
                    conn.execute(update(eval_jobs).where(eval_jobs.c.id == job_id).values(**job_values))
            return Counts()
        j = _judge(store, project_id, e, config, mine, now)
        c = _counts(j, set(j.items))
        with store.write() as conn:
            _save(store, conn, job_id, j, c, job_values, set(j.items))
            mine_key = (*key, eval_items.c.job_id == job_id)
            for state in ("scored", "not_applicable"):
                ids = [r for r, (st, _, _) in j.items.items() if st == state]
                if ids:
                    conn.execute(
                        update(eval_items)
                        .where(*mine_key, eval_items.c.run_id.in_(ids))
                        .values(state=state, finished_at=now)
                    )
            for r, (st, etype, message) in j.items.items():
                if st == "error":
                    conn.execute(
                        update(eval_items)
                        .where(*mine_key, eval_items.c.run_id == r)
                        .values(state="error", finished_at=now, error_type=etype, error_message=message)
                    )
            if j.released:
                conn.execute(eval_items.delete().where(*mine_key, eval_items.c.run_id.in_(j.released)))
        return c
    with store.read() as conn:
        done = set(
            conn.execute(select(eval_items.c.run_id).where(*key, eval_items.c.run_id.in_(run_ids))).scalars()
        )
    j = _judge(store, project_id, e, config, [r for r in run_ids if r not in done], now)
    rows = [
        _item(project_id, e, job_id, r, state, now, finished_at=now, error_type=etype, error_message=message)
        for r, (state, etype, message) in j.items.items()
    ]
    # derived from stored runs, with the job's cursor: a commit lost to a crash of the machine is a
    # chunk judged again (the same ids: the same scores), never a score without its claim
    with store.write(derived=True) as conn:
        inserted = _insert_items(store, conn, rows)
        c = _counts(j, inserted)
        _save(store, conn, job_id, j, c, job_values, inserted)
    return c


def _item(
    project_id: int, e: Evaluator[..., Any], job_id: int, run_id: str, state: str, now: int, **outcome: Any
) -> dict[str, Any]:
    """An ``eval_items`` row: the claim of (evaluator version, run), and its outcome if known."""
    return {
        "project_id": project_id,
        "evaluator": e.name,
        "evaluator_version": e.version,
        "run_id": run_id,
        "job_id": job_id,
        "state": state,
        "claimed_at": now,
        "finished_at": None,
        "error_type": None,
        "error_message": None,
    } | outcome


def _insert_items(store: Store, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert item rows unless their key is taken; the runs whose rows went in."""
    if not rows:
        return set()
    if store.is_sqlite:
        stmt = store.insert(eval_items).on_conflict_do_nothing().returning(eval_items.c.run_id)
        return {r.run_id for r in conn.execute(stmt, rows)}
    return _claim_pg(store, conn, rows)


def _count(conn: Connection, job_id: int, c: Counts, **values: Any) -> None:
    conn.execute(
        update(eval_jobs)
        .where(eval_jobs.c.id == job_id)
        .values(
            processed=eval_jobs.c.processed + c.processed,
            scored=eval_jobs.c.scored + c.scored,
            not_applicable=eval_jobs.c.not_applicable + c.not_applicable,
            errors=eval_jobs.c.errors + c.errors,
            skipped=eval_jobs.c.skipped + c.skipped,
            **values,
        )
    )
