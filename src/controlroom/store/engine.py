"""Engines for SQLite (embedded default, WAL) and PostgreSQL, transactions, and migrations.

Dialect-specific SQL lives in this package only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from controlroom.errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"

# Key of the PostgreSQL advisory lock that serialises appends to the run log, so that sequence
# numbers become visible in commit order and the projector never skips a late-committing event.
LOG_APPEND_LOCK = 0x636F6E74726F6C  # "control"
# The budget ledger's SQLite connection leaves checkpoints to a background thread, after this many
# commits (a reservation or a settlement writes a few pages; SQLite's own default is 1000 pages).
LEDGER_CHECKPOINT_EVERY = 250
LEDGER_LOCK_TIMEOUT = 30.0  # seconds a ledger transaction waits for SQLite's write lock
LEDGER_PG_IDLE = 8  # idle PostgreSQL ledger connections kept for reuse
LEDGER_PG_MAX = 16  # PostgreSQL ledger connections open at once, per server process
# Fail fast on an unreachable database, and notice a dead peer, instead of holding a thread for minutes.
LEDGER_PG_CONNECT: dict[str, Any] = {
    "application_name": "controlroom-ledger",
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
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
        self._ledger_commits = 0
        self._checkpointing = threading.Lock()
        self._pg_idle: list[Any] = []  # idle ledger connections (psycopg) on PostgreSQL
        self._pg_slots = threading.BoundedSemaphore(LEDGER_PG_MAX)
        self._pg_dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)

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

        ``derived``: the transaction writes only data derived from the log together with the
        position it was derived up to (a consumer's batch). On PostgreSQL its commit does not wait
        for the disk (``synchronous_commit`` off): a crash of the database server may lose the last
        such commits, effects and position together, and the consumer derives them again."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if derived and not self.is_sqlite:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def ledger(self, *, wait: bool = True) -> Iterator[LedgerTx]:
        """A write transaction for the budget ledger's hot path (a reservation or a settlement per
        paid call), which commits without waiting for the disk: the commit survives a crash of this
        process, but the last moments of commits may be lost on power loss or an OS crash (SQLite WAL
        with synchronous=NORMAL; PostgreSQL synchronous_commit=off, where a database-server crash
        counts too).

        On SQLite it runs on one connection of its own, outside SQLAlchemy: the driver alone takes
        a fraction of the time SQLAlchemy's machinery would. With ``wait=False`` it never waits: if
        another transaction holds the write lock it raises ``LedgerBusy`` before doing anything, so
        the caller (the server's event loop) can run the transaction inline when the database is
        free — tens of microseconds — and hand it to a thread only when it is not. PostgreSQL
        always waits (its statements are network round trips)."""
        if not self.is_sqlite:
            if not wait:
                raise LedgerBusy("PostgreSQL ledger transactions run off the event loop")
            with self._pg_ledger() as tx:
                yield tx
            return
        if not self._ledger_lock.acquire(blocking=wait):
            raise LedgerBusy("another ledger transaction is running")
        try:
            raw = self._ledger_connection()
            self._begin_ledger(raw, wait)
            try:
                yield LedgerTx(raw, postgresql=False)
                raw.execute("COMMIT")
            except BaseException:
                try:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                except sqlite3.Error:  # never leave the write lock taken: start over on a new connection
                    self._close_ledger_connection()
                raise
            self._ledger_commits += 1
            if self._ledger_commits % LEDGER_CHECKPOINT_EVERY == 0:
                self._checkpoint_in_background()
        finally:
            self._ledger_lock.release()

    def _ledger_connection(self) -> sqlite3.Connection:
        if self._ledger_conn is None:
            raw = sqlite3.connect(
                self.engine.url.database or "", isolation_level=None, check_same_thread=False
            )
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA foreign_keys=ON")
            # Copying the WAL into the database (and its fsync) must not run on the event loop: the
            # ledger connection never checkpoints on commit; a background thread does, now and then.
            raw.execute("PRAGMA wal_autocheckpoint=0")
            raw.execute("PRAGMA busy_timeout=0")  # waiting for the write lock is _begin_ledger's
            self._ledger_conn = raw
        return self._ledger_conn

    @staticmethod
    def _begin_ledger(raw: sqlite3.Connection, wait: bool) -> None:
        """Take the write lock. Waiting, it asks again every half millisecond: SQLite's own busy
        handler sleeps in growing steps (up to 100 ms), so a waiting reservation would sleep long
        after a batch of trace events released the lock."""
        deadline = time.monotonic() + LEDGER_LOCK_TIMEOUT
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # another connection has the lock
                    raise
                if not wait:
                    raise LedgerBusy("the database's write lock is taken") from None
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"the database stayed locked by another writer for {LEDGER_LOCK_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.0005)

    def _close_ledger_connection(self) -> None:
        if self._ledger_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._ledger_conn.close()
            self._ledger_conn = None

    @contextmanager
    def _pg_ledger(self) -> Iterator[LedgerTx]:
        """On PostgreSQL: a driver connection of the ledger's own (synchronous_commit off for its
        session; at most LEDGER_PG_MAX at once, up to LEDGER_PG_IDLE kept idle), in an explicit
        transaction. A lost connection, or a transaction the database aborted (a deadlock, a
        timeout), is ServiceUnavailable: the caller may try again."""
        import psycopg

        with self._pg_slots:
            conn = self._pg_begin()
            try:
                yield LedgerTx(conn, postgresql=True)
                conn.execute("COMMIT")
            except psycopg.OperationalError as e:
                lost = conn.broken or conn.closed
                self._pg_release(conn, rollback=not lost)
                what = "connection was lost" if lost else "transaction was aborted"
                raise ServiceUnavailable(f"the budget ledger's database {what}: {e}") from None
            except BaseException:
                self._pg_release(conn, rollback=True)
                raise
            self._pg_release(conn, rollback=False)

    def _pg_begin(self) -> Any:
        """A connection with a transaction begun. An idle connection that died (a database restart,
        an idle timeout) fails its BEGIN, before anything was done: it is dropped for the next one."""
        import psycopg

        while True:
            with self._ledger_lock:
                conn = self._pg_idle.pop() if self._pg_idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = psycopg.connect(self._pg_dsn, autocommit=True, **LEDGER_PG_CONNECT)
                    conn.execute("SET synchronous_commit = off")
                conn.execute("BEGIN")
                return conn
            except psycopg.OperationalError as e:
                if conn is not None:
                    conn.close()
                if fresh:
                    raise ServiceUnavailable(f"the budget ledger's database is unreachable: {e}") from None

    def _pg_release(self, conn: Any, *, rollback: bool) -> None:
        """Back to the idle pool — rolled back first if asked — unless it is broken or its rollback
        fails (then it is closed; the caller's own error is what the caller reports)."""
        import psycopg

        if rollback and not (conn.broken or conn.closed):
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()
        if conn.broken or conn.closed:
            conn.close()
            return
        with self._ledger_lock:
            if len(self._pg_idle) < LEDGER_PG_IDLE:
                self._pg_idle.append(conn)
                return
        conn.close()

    def _checkpoint_in_background(self) -> None:
        """A passive checkpoint (it never blocks writers) on a connection and thread of its own."""
        if not self._checkpointing.locked():
            threading.Thread(target=self._checkpoint, name="controlroom-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        with self._checkpointing:
            conn = sqlite3.connect(self.engine.url.database or "", timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                logger.warning("WAL checkpoint failed; the next one will retry", exc_info=True)
            finally:
                conn.close()

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
        with self._ledger_lock:
            self._close_ledger_connection()
            idle, self._pg_idle = self._pg_idle, []
        for conn in idle:
            conn.close()
        self.engine.dispose()


def lock_key(name: str) -> int:
    """The PostgreSQL advisory-lock key (a signed 64-bit integer) of a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class LedgerTx:
    """Plain SQL (``:name`` parameters) in a ledger transaction, on the driver's connection:
    sqlite3, or psycopg (the parameters rewritten as ``%(name)s``, once per statement)."""

    def __init__(self, driver: Any, *, postgresql: bool) -> None:
        self._driver, self._pg = driver, postgresql

    def _execute(self, sql: str, params: dict[str, Any]) -> Any:
        return self._driver.execute(_pg_sql(sql) if self._pg else sql, params)

    def run(self, sql: str, params: dict[str, Any]) -> int:
        """Execute; the number of rows changed."""
        return int(self._execute(sql, params).rowcount)

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Query; rows as dicts, in column order."""
        cur = self._execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


_PG_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache
def _pg_sql(sql: str) -> str:
    """``:name`` -> ``%(name)s`` (and a literal ``%`` doubled) for psycopg."""
    return _PG_PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


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
