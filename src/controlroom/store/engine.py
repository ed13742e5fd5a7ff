"""Engines for SQLite (embedded default, WAL) and PostgreSQL, transactions, and migrations.

Dialect-specific SQL lives in this package only (the budget ledger's in ``store.ledger``, the
approval transitions' in ``store.approvals``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from controlroom.store.ledger import LedgerBusy, LedgerConnections, LedgerTx

__all__ = ["LedgerBusy", "LedgerTx", "Store"]  # the ledger's, re-exported for callers of Store.ledger()
MIGRATIONS = Path(__file__).parent / "migrations"

# Key of the PostgreSQL advisory lock that serialises appends to the run log, so that sequence
# numbers become visible in commit order and the projector never skips a late-committing event.
LOG_APPEND_LOCK = 0x636F6E74726F6C  # "control"
logger = logging.getLogger(__name__)


class Store:
    """One database: an engine plus the few places where SQLite and PostgreSQL differ."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        u = make_url(url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=pool_size,
                max_overflow=16,
                json_serializer=_json_dumps,
                json_deserializer=sqlite_json_loads,
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=16,
                pool_pre_ping=True,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
            )
        else:
            raise ValueError(f"unsupported database {url!r}: use sqlite:/// or postgresql+psycopg://")
        self._lock = threading.Lock()
        self.ledger_connections = LedgerConnections(url)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT for ``table``, which has ON CONFLICT (upserts)."""
        return (sqlite_insert if self.is_sqlite else pg_insert)(table)

    def insert_many(
        self,
        conn: Connection,
        table: Table,
        rows: list[dict[str, Any]],
        on_conflict: Callable[[Any], Any] = lambda stmt: stmt,
    ) -> None:
        """INSERT ``rows`` (dicts with the same keys) into ``table`` in one statement;
        ``on_conflict`` turns the dialect's INSERT into an upsert (its ``excluded`` names the row
        that was refused). On PostgreSQL the rows travel as one JSON document, unpacked by the
        server (``json_populate_recordset``): one statement per table per batch instead of one per
        row. SQLite runs an ``executemany``, which its driver loops in C."""
        if not rows:
            return
        if self.is_sqlite:
            conn.execute(on_conflict(sqlite_insert(table)), rows)
            return
        names = [c.name for c in table.c if c.name in rows[0]]
        source: Any = select(*(literal_column(f'"{n}"') for n in names)).select_from(
            text(f'json_populate_recordset(NULL::"{table.name}", CAST(:rows AS json))')
        )
        stmt = on_conflict(pg_insert(table).from_select(names, source))
        conn.execute(stmt, {"rows": _json_dumps(rows)})

    @contextmanager
    def write(self, *, derived: bool = False) -> Iterator[Connection]:
        """A write transaction, on disk before it returns. On SQLite it takes the write lock up front
        (BEGIN IMMEDIATE), so a read-then-write transaction never fails with a stale snapshot.

        ``derived``: the transaction writes only data derived from what is stored together with the
        position it was derived up to (a consumer's batch of the log, a batch eval job's chunk of
        runs with its cursor). Its commit does not wait for the disk (PostgreSQL:
        ``synchronous_commit`` off; SQLite: ``synchronous=NORMAL`` for this transaction, the WAL
        synced at the next durable commit or checkpoint): a crash of the machine (or of the
        database server) may lose the last such commits, effects and position together, and they
        are derived again. The write-ahead log is sequential, so the next durable commit makes
        every earlier one durable too: nothing after a lost commit survives it."""
        with self.engine.connect() as conn:
            fast = derived and self.is_sqlite
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            if fast:
                _sqlite_synchronous(conn, "NORMAL")
            try:
                with conn.begin():
                    if derived and not self.is_sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                if fast:
                    _sqlite_synchronous(conn, "FULL")
            if fast:
                self.ledger_connections.checkpoint_in_background()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def ledger(self, *, wait: bool = True) -> AbstractContextManager[LedgerTx]:
        """A write transaction for the budget ledger's hot path, on connections of the ledger's own
        (see ``controlroom.store.ledger.LedgerConnections.transaction``)."""
        return self.ledger_connections.transaction(wait=wait)

    def plain_write(self) -> AbstractContextManager[LedgerTx]:
        """A write transaction as durable as :meth:`write`'s (on disk before it returns; on SQLite
        the write lock taken up front), in plain SQL on the ledger's connections instead of
        SQLAlchemy's: for hot paths of a few fixed statements (an approval's transition), where
        building expressions costs more than the database work. It may wait: never on the event
        loop."""
        return self.ledger_connections.transaction(durable=True)

    def lock_log_for_append(self, conn: Connection) -> None:
        """Serialise appends so commit order equals sequence order (SQLite already has one writer)."""
        if not self.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOG_APPEND_LOCK})")

    def try_lock(self, conn: Connection, name: str) -> bool:
        """Take the lock called ``name`` for the rest of ``conn``'s transaction, if no other
        transaction or session holds it (PostgreSQL advisory lock); False if one does. SQLite has
        one writer at a time: always True."""
        if self.is_sqlite:
            return True
        return bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({lock_key(name)})").scalar())

    def wait_lock(self, conn: Connection, name: str) -> None:
        """Like try_lock, but waits for the holder to let go (e.g. a rebuild, for a consumer's batch)."""
        if not self.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key(name)})")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold the lock called ``name`` across transactions (a periodic job, a consumer whose effects
        are outside the database): yields True if this process got it, False if another holds it.
        On PostgreSQL a session advisory lock on a connection kept for the purpose (it dies with
        the process); the same lock as try_lock's. SQLite: always True (one writer)."""
        if self.is_sqlite:
            yield True
            return
        key = lock_key(name)
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar())
            try:
                yield got
            finally:
                if got:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")

    # -- migrations ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Apply every pending migration (idempotent)."""
        with self._lock, self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7368291)")  # one migrator at a time
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    def dispose(self) -> None:
        self.ledger_connections.dispose()
        self.engine.dispose()


def lock_key(name: str) -> int:
    """The PostgreSQL advisory-lock key (a signed 64-bit integer) of a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def sqlite_json_loads(value: Any) -> Any:
    """A JSON column's value as SQLite returns it. A column declared JSON has numeric affinity: a
    bare number written as JSON text ("5", "1.5") comes back as an int or a float, already decoded."""
    return value if isinstance(value, int | float) else orjson.loads(value)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun explicitly in _sqlite_on_begin
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns: acknowledged = durable
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_synchronous(conn: Connection, level: str) -> None:
    """Set the connection's ``synchronous`` outside any transaction (on the driver's connection:
    through SQLAlchemy the statement would begin one). At NORMAL the commit does not checkpoint
    either (copying the WAL into the database and syncing it): a thread of its own does, after."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    dbapi_conn.execute(f"PRAGMA synchronous={level}")
    dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={0 if level == 'NORMAL' else 1000}")


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
