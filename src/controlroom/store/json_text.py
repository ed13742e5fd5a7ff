"""JSON columns read as their stored text, for readers that decode a value only if it is used.

SQLAlchemy's JSON type decodes every value of every row it fetches. A batch reader that loads
thousands of runs a second (the evals' snapshots) uses a fraction of those values, so it asks for
the text and decodes on access with :func:`decode`.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Text, cast, type_coerce
from sqlalchemy.sql.elements import ColumnElement


def json_text(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """``column`` (a JSON column) as the JSON text the database holds, not decoded.

    PostgreSQL renders jsonb as text (its psycopg adapter would decode jsonb whatever the declared
    result type). SQLite returns the stored text as it is — except a bare number, which the column's
    numeric affinity returns already decoded (an int or a float; see ``engine._sqlite_json_loads``);
    a CAST would turn a float back into text with 15 significant digits only."""
    if dialect == "postgresql":
        return cast(column, Text).label(column.key)
    return type_coerce(column, Text).label(column.key)


def decode(raw: Any) -> Any:
    """A value read through :func:`json_text` (or written by ``orjson.dumps``), decoded: a new
    object on every call. SQL NULL and JSON null are both None."""
    if raw is None or isinstance(raw, int | float):
        return raw
    return orjson.loads(raw)
