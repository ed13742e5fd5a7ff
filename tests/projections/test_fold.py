"""The fold's rows are exactly the read model's columns."""

from __future__ import annotations

from controlroom.projections.fold import new_run, new_span
from controlroom.store.tables import runs, spans


def test_new_rows_have_every_column() -> None:
    assert set(new_run(1, "a" * 32, 1, 0, 0)) == {c.name for c in runs.c}
    assert set(new_span(1, "a" * 32, "b" * 16, 1)) == {c.name for c in spans.c}
