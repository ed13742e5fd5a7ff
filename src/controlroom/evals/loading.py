"""Recorded runs read from the read model as evaluator snapshots, many at a time: the batch path of
eval jobs (and of ``controlroom evals try``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Select, select

from controlroom.evals.snapshot import (
    JSON_RUN_COLUMNS,
    JSON_SPAN_COLUMNS,
    RUN_COLUMNS,
    SCORE_COLUMNS,
    SPAN_COLUMNS,
    NotLoaded,
    RecordedScore,
    Run,
    build_run,
)
from controlroom.store.json_text import json_text
from controlroom.store.tables import runs, scores, spans

__all__ = ["CHUNK", "load_runs"]

CHUNK = 500
"""Run ids per query: `run_id IN (...)` on the primary key, well under SQLite's variable limit."""


def load_runs(
    conn: Connection, project_id: int, run_ids: Iterable[str], *, reads: Iterable[str] = ("spans", "scores")
) -> dict[str, Run]:
    """The runs of ``run_ids`` in the read model, by id (ids it does not hold are left out).

    Three queries per chunk of 500 ids, whatever the runs hold; JSON values stay text until read.
    ``reads`` names what to load beyond the runs' rows (an evaluator's ``reads``): without
    "spans" or "scores", those are :class:`NotLoaded` (one query per chunk when neither is read)."""
    reads = frozenset(reads)
    no_spans = None if "spans" in reads else NotLoaded("spans")
    no_scores = None if "scores" in reads else NotLoaded("scores")
    wanted = list(dict.fromkeys(run_ids))
    dialect = conn.dialect.name
    run_cols = [json_text(runs.c[c], dialect) if c in JSON_RUN_COLUMNS else runs.c[c] for c in RUN_COLUMNS]
    span_cols = [  # the run id last: a row is a span's values as _span reads them, no copy
        *(json_text(spans.c[c], dialect) if c in JSON_SPAN_COLUMNS else spans.c[c] for c in SPAN_COLUMNS),
        spans.c.run_id,
    ]
    score_cols = [scores.c.run_id, *(scores.c[c] for c in SCORE_COLUMNS)]
    out: dict[str, Run] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        run_rows = _tuples(
            conn, select(*run_cols).where(runs.c.project_id == project_id, runs.c.run_id.in_(chunk))
        )
        if not run_rows:
            continue
        found = [r[0] for r in run_rows]
        by_run: defaultdict[str, list[Any]] = defaultdict(list)
        if no_spans is None:
            span_rows = _tuples(
                conn, select(*span_cols).where(spans.c.project_id == project_id, spans.c.run_id.in_(found))
            )
            for s in span_rows:
                by_run[s[-1]].append(s)
        scored: defaultdict[str, list[RecordedScore]] = defaultdict(list)
        if no_scores is None:
            for sc in conn.execute(
                select(*score_cols)
                .where(scores.c.project_id == project_id, scores.c.run_id.in_(found))
                .order_by(scores.c.ts, scores.c.event_id)
            ):
                scored[sc[0]].append(RecordedScore(*sc[1:]))
        for r in run_rows:
            run = build_run(
                r, by_run.get(r[0], ()), tuple(scored.get(r[0], ())) if no_scores is None else no_scores
            )
            if no_spans is not None:
                object.__setattr__(run, "spans", no_spans)
            out[r[0]] = run
    return out


# -- internals ------------------------------------------------------------------------------------


def _tuples(conn: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``query`` as the driver returns them (plain tuples, no Row objects: a snapshot
    keeps its spans' values as they are). For columns that need no conversion on the way out only:
    text, integers, and JSON read as text (json_text)."""
    result = conn.execute(query)
    try:
        return cast("list[tuple[Any, ...]]", result.cursor.fetchall())
    finally:
        result.close()
