"""Engines for SQLite (embedded default, WAL) and PostgreSQL, transactions, and migrations.

Dialect-specific SQL lives in this package only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"

# Key of the PostgreSQL advisory lock that serialises appends to the run log, so that sequence
# numbers become visible in commit order and the projector never skips a late-committing event.
LOG_APPEND_LOCK = 0x636F6E74726F6C  # "control"
PROJECTOR_LOCK = 0x70726F6A  # "proj"
# The budget ledger's SQLite connection leaves checkpoints to a background thread, after this many
# commits (a reservation or a settlement writes a few pages; SQLite's own default is 1000 pages).
LEDGER_CHECKPOINT_EVERY = 250
logger = logging.getLogger(__name__)


class LedgerBusy(Exception):
    """A ledger transaction asked not to wait found the write lock taken; nothing was done."""


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
                json_deserializer=orjson.loads,
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
        self._ledger_conn: sqlite3.Connection | None = None
        self._ledger_lock = threading.Lock()
        self._ledger_waits: bool | None = None  # the ledger connection's busy timeout: waits or not
        self._ledger_commits = 0
        self._checkpointing = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self, *, flush_to_disk: bool = True) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so a
        read-then-write transaction never fails with a stale snapshot.

        By default a commit is on disk before it returns. ``flush_to_disk=False`` (the budget ledger's
        hot path) commits without waiting for the disk: the commit survives a crash of this process
        but the last moments of commits may be lost on power loss or an OS crash (SQLite WAL with
        synchronous=NORMAL; PostgreSQL synchronous_commit=off, where a database-server crash counts too)."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                if not flush_to_disk:
                    _sqlite_pragma(conn, "synchronous=NORMAL")
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            try:
                with conn.begin():
                    if not flush_to_disk and not self.is_sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                if self.is_sqlite and not flush_to_disk:
                    _sqlite_pragma(conn, "synchronous=FULL")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def ledger(self, *, wait: bool = True) -> Iterator[LedgerTx]:
        """A write transaction for the budget ledger's hot path (a reservation or a settlement per
        paid call), which commits without waiting for the disk (see ``write(flush_to_disk=False)``).

        On SQLite it runs on one connection of its own, outside SQLAlchemy: the driver alone takes
        a fraction of the time SQLAlchemy's machinery would. With ``wait=False`` it never waits: if
        another transaction holds the write lock it raises ``LedgerBusy`` before doing anything, so
        the caller (the server's event loop) can run the transaction inline when the database is
        free — tens of microseconds — and hand it to a thread only when it is not. PostgreSQL
        always waits (its statements are network round trips)."""
        if not self.is_sqlite:
            if not wait:
                raise LedgerBusy("PostgreSQL ledger transactions run off the event loop")
            with self.write(flush_to_disk=False) as conn:
                yield LedgerTx(conn, None)
            return
        if not self._ledger_lock.acquire(blocking=wait):
            raise LedgerBusy("another ledger transaction is running")
        try:
            raw = self._ledger_connection(wait)
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if not wait and e.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise LedgerBusy("the database's write lock is taken") from None
                raise
            try:
                yield LedgerTx(None, raw)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            self._ledger_commits += 1
            if self._ledger_commits % LEDGER_CHECKPOINT_EVERY == 0:
                self._checkpoint_in_background()
        finally:
            self._ledger_lock.release()

    def _ledger_connection(self, wait: bool) -> sqlite3.Connection:
        if self._ledger_conn is None:
            raw = sqlite3.connect(
                self.engine.url.database or "", isolation_level=None, check_same_thread=False
            )
            raw.row_factory = sqlite3.Row
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA foreign_keys=ON")
            # Copying the WAL into the database (and its fsync) must not run on the event loop: the
            # ledger connection never checkpoints on commit; a background thread does, now and then.
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._ledger_conn, self._ledger_waits = raw, None
        if self._ledger_waits is not wait:
            self._ledger_conn.execute(f"PRAGMA busy_timeout={30000 if wait else 0}")
            self._ledger_waits = wait
        return self._ledger_conn

    def _checkpoint_in_background(self) -> None:
        """A passive checkpoint (it never blocks writers) on a connection and thread of its own."""
        if self._checkpointing.locked():
            return

        def run() -> None:
            with self._checkpointing:
                conn = sqlite3.connect(self.engine.url.database or "", timeout=30)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    logger.warning("WAL checkpoint failed; the next one will retry", exc_info=True)
                finally:
                    conn.close()

        threading.Thread(target=run, name="controlroom-checkpoint", daemon=True).start()

    def lock_log_for_append(self, conn: Connection) -> None:
        """Serialise appends so commit order equals sequence order (SQLite already has one writer)."""
        if not self.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOG_APPEND_LOCK})")

    def try_projector_lock(self, conn: Connection) -> bool:
        """Transaction-scoped: only one projector folds the log at a time across processes."""
        if self.is_sqlite:
            return True
        return bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({PROJECTOR_LOCK})").scalar())

    def wait_projector_lock(self, conn: Connection) -> None:
        """Like try_projector_lock, but waits (for a rebuild)."""
        if not self.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PROJECTOR_LOCK})")

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
        if self._ledger_conn is not None:
            self._ledger_conn.close()
            self._ledger_conn, self._ledger_waits = None, None
        self.engine.dispose()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class LedgerTx:
    """Plain SQL (``:name`` parameters) in a ledger transaction, on either database."""

    def __init__(self, conn: Connection | None, raw: sqlite3.Connection | None) -> None:
        self._conn, self._raw = conn, raw

    def run(self, sql: str, params: dict[str, Any]) -> int:
        """Execute; the number of rows changed."""
        if self._raw is not None:
            return self._raw.execute(sql, params).rowcount
        assert self._conn is not None
        return int(self._conn.execute(text(sql), params).rowcount)

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Query; rows as dicts, in column order."""
        if self._raw is not None:
            return [dict(r) for r in self._raw.execute(sql, params).fetchall()]
        assert self._conn is not None
        return [dict(r) for r in self._conn.execute(text(sql), params).mappings().all()]


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    """A pragma outside any transaction, on the driver's connection (SQLAlchemy would begin one)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA {pragma}")


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun explicitly in _sqlite_on_begin
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it returns: acknowledged = durable
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
