"""The budget ledger's storage: its own database connections, its transactions, and its
statements, as operations in the ledger's terms (budgets, budget days, reservations,
nano-dollars). ``controlroom.budget.ledger`` decides; this module reads and writes.

The hot path (a reservation and its settlement per paid call) runs plain SQL on the driver's
connection: building SQLAlchemy expressions per call would cost more than the database work. The
same connections serve other hot paths in *durable* transactions, whose commits wait for the disk
(an approval's transition: ``store.approvals``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, delete, select, text
from sqlalchemy.engine import make_url

from controlroom.errors import ServiceUnavailable
from controlroom.store.tables import budget_days, budgets

# The SQLite connection leaves checkpoints to a background thread, after this many commits (a
# reservation or a settlement writes a few pages; SQLite's own default is 1000 pages).
CHECKPOINT_EVERY = 250
LOCK_TIMEOUT = 30.0  # seconds a ledger transaction waits for SQLite's write lock
PG_IDLE = 8  # idle PostgreSQL ledger connections kept for reuse
PG_MAX = 16  # PostgreSQL ledger connections open at once, per server process
# Fail fast on an unreachable database, and notice a dead peer, instead of holding a thread for minutes.
PG_CONNECT: dict[str, Any] = {
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


class LedgerTx:
    """Plain SQL (``:name`` parameters) in a ledger transaction, on the driver's connection:
    sqlite3, or psycopg (the parameters rewritten as ``%(name)s``, once per statement)."""

    def __init__(self, driver: Any, *, postgresql: bool) -> None:
        self._driver, self.postgresql = driver, postgresql

    def _execute(self, sql: str, params: dict[str, Any]) -> Any:
        return self._driver.execute(_pg_sql(sql) if self.postgresql else sql, params)

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


class LedgerConnections:
    """The ledger's connections to one database (see :meth:`transaction`)."""

    def __init__(self, url: str) -> None:
        u = make_url(url)
        self.sqlite = u.get_backend_name() == "sqlite"
        self._path = u.database or ""
        self._conn: sqlite3.Connection | None = None
        self._synchronous = ""  # the SQLite connection's setting: the last transaction's
        self.lock = threading.Lock()
        self._commits = 0
        self._checkpointing = threading.Lock()
        self._pg_idle: list[Any] = []  # idle ledger connections (psycopg) on PostgreSQL
        self._pg_idle_durable: list[Any] = []  # the same for durable transactions (synchronous_commit on)
        self._disposed = False
        self._pg_slots = threading.BoundedSemaphore(PG_MAX)
        self._pg_dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def transaction(self, *, wait: bool = True, durable: bool = False) -> Iterator[LedgerTx]:
        """A write transaction for the ledger's hot path, which commits without waiting for the
        disk: the commit survives a crash of this process, but the last moments of commits may be
        lost on power loss or an OS crash (SQLite WAL with synchronous=NORMAL; PostgreSQL
        synchronous_commit=off, where a database-server crash counts too).

        ``durable``: the commit waits for the disk instead, as ``Store.write()``'s do (SQLite
        synchronous=FULL, PostgreSQL synchronous_commit on). Waiting for the disk is waiting: a
        durable transaction never runs on the event loop (``wait=False`` raises ``LedgerBusy``).

        On SQLite it runs on one connection of its own, outside SQLAlchemy: the driver alone takes
        a fraction of the time SQLAlchemy's machinery would. With ``wait=False`` it never waits: if
        another transaction holds the write lock it raises ``LedgerBusy`` before doing anything, so
        the caller (the server's event loop) can run the transaction inline when the database is
        free — tens of microseconds — and hand it to a thread only when it is not. PostgreSQL
        always waits (its statements are network round trips)."""
        if durable and not wait:
            raise LedgerBusy("a durable commit waits for the disk: not on the event loop")
        if not self.sqlite:
            if not wait:
                raise LedgerBusy("PostgreSQL ledger transactions run off the event loop")
            with self._pg_transaction(durable) as tx:
                yield tx
            return
        if not self.lock.acquire(blocking=wait):
            raise LedgerBusy("another ledger transaction is running")
        try:
            raw = self.connection()
            synchronous = "FULL" if durable else "NORMAL"
            if self._synchronous != synchronous:  # set outside a transaction, for its commit
                raw.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            self._begin(raw, wait)
            try:
                yield LedgerTx(raw, postgresql=False)
                raw.execute("COMMIT")
            except BaseException:
                try:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                except sqlite3.Error:  # never leave the write lock taken: start over on a new connection
                    self._close()
                raise
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0:
                self.checkpoint_in_background()
        finally:
            self.lock.release()

    def connection(self) -> sqlite3.Connection:
        """The SQLite connection of the ledger (opened on first use)."""
        if self._conn is None:
            raw = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA synchronous=NORMAL")
            self._synchronous = "NORMAL"
            raw.execute("PRAGMA foreign_keys=ON")
            # Copying the WAL into the database (and its fsync) must not run on the event loop: the
            # ledger connection never checkpoints on commit; a background thread does, now and then.
            raw.execute("PRAGMA wal_autocheckpoint=0")
            raw.execute("PRAGMA busy_timeout=0")  # waiting for the write lock is _begin's
            self._conn = raw
        return self._conn

    @staticmethod
    def _begin(raw: sqlite3.Connection, wait: bool) -> None:
        """Take the write lock. Waiting, it asks again every half millisecond: SQLite's own busy
        handler sleeps in growing steps (up to 100 ms), so a waiting reservation would sleep long
        after a batch of trace events released the lock."""
        deadline = time.monotonic() + LOCK_TIMEOUT
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
                        f"the database stayed locked by another writer for {LOCK_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.0005)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    @contextmanager
    def _pg_transaction(self, durable: bool) -> Iterator[LedgerTx]:
        """On PostgreSQL: a driver connection of the ledger's own (synchronous_commit off for its
        session unless ``durable``; at most PG_MAX at once, up to PG_IDLE of each kind kept idle),
        in an explicit transaction. A lost connection, or a transaction the database aborted (a
        deadlock, a timeout), is ServiceUnavailable: the caller may try again."""
        import psycopg

        with self._pg_slots:
            conn = self._pg_begin(durable)
            try:
                yield LedgerTx(conn, postgresql=True)
                conn.execute("COMMIT")
            except psycopg.OperationalError as e:
                lost = conn.broken or conn.closed
                self._pg_release(conn, durable, rollback=not lost)
                what = "connection was lost" if lost else "transaction was aborted"
                raise ServiceUnavailable(f"the database {what}: {e}") from None
            except BaseException:
                self._pg_release(conn, durable, rollback=True)
                raise
            self._pg_release(conn, durable, rollback=False)

    def _pg_begin(self, durable: bool) -> Any:
        """A connection with a transaction begun. An idle connection that died (a database restart,
        an idle timeout) fails its BEGIN, before anything was done: it is dropped for the next one."""
        import psycopg

        while True:
            idle = self._pg_idle_durable if durable else self._pg_idle
            with self.lock:
                conn = idle.pop() if idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = psycopg.connect(self._pg_dsn, autocommit=True, **PG_CONNECT)
                    if not durable:
                        conn.execute("SET synchronous_commit = off")
                conn.execute("BEGIN")
                return conn
            except psycopg.OperationalError as e:
                if conn is not None:
                    conn.close()
                if fresh:
                    raise ServiceUnavailable(f"the database is unreachable: {e}") from None

    def _pg_release(self, conn: Any, durable: bool, *, rollback: bool) -> None:
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
        with self.lock:
            idle = self._pg_idle_durable if durable else self._pg_idle
            if not self._disposed and len(idle) < PG_IDLE:  # after dispose: closed, never kept
                idle.append(conn)
                return
        conn.close()

    def checkpoint_in_background(self) -> None:
        """A passive checkpoint (it never blocks writers) on a connection and thread of its own."""
        if not self._checkpointing.locked():
            threading.Thread(target=self.checkpoint, name="controlroom-checkpoint", daemon=True).start()

    def checkpoint(self) -> None:
        with self._checkpointing:
            conn = sqlite3.connect(self._path, timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                logger.warning("WAL checkpoint failed; the next one will retry", exc_info=True)
            finally:
                conn.close()

    def dispose(self) -> None:
        with self.lock:
            self._disposed = True  # a transaction still under way closes its connection at its end
            self._close()
            idle = self._pg_idle + self._pg_idle_durable
            self._pg_idle, self._pg_idle_durable = [], []
        for conn in idle:
            conn.close()


# -- budgets (SQLAlchemy: off the hot path) --------------------------------------------------------
_BUDGET_COLUMNS = (
    budgets.c.id,
    budgets.c.project_id,
    budgets.c.agent,
    budgets.c.cap_nanos,
    budgets.c.timezone,
)


def upsert_budget(
    conn: Connection, insert: Any, *, project_id: int, agent: str, cap_nanos: int, timezone: str
) -> None:
    """Create or change the budget of (project, agent); ``insert`` is the dialect's INSERT."""
    now = time.time_ns()
    stmt = insert(budgets).values(
        project_id=project_id,
        agent=agent,
        cap_nanos=cap_nanos,
        timezone=timezone,
        created_at=now,
        updated_at=now,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["project_id", "agent"],
            set_={"cap_nanos": cap_nanos, "timezone": timezone, "updated_at": now},
        )
    )


def budget_rows(conn: Connection, *, project_id: int, agent: str | None = None) -> list[dict[str, Any]]:
    """The project's budgets (only the agent's, ``""`` for the project's own, if ``agent`` is given),
    in id order: {id, project_id, agent, cap_nanos, timezone}."""
    q = select(*_BUDGET_COLUMNS).where(budgets.c.project_id == project_id)
    if agent is not None:
        q = q.where(budgets.c.agent == agent)
    return [dict(r) for r in conn.execute(q.order_by(budgets.c.id)).mappings()]


def delete_budget(conn: Connection, *, project_id: int, agent: str) -> bool:
    """Delete a budget and its days; False if there was none."""
    for row in budget_rows(conn, project_id=project_id, agent=agent):
        # SQLite may give a later budget the same id: it must start at zero
        conn.execute(delete(budget_days).where(budget_days.c.budget_id == row["id"]))
    deleted = conn.execute(
        delete(budgets).where(budgets.c.project_id == project_id, budgets.c.agent == agent)
    )
    return bool(deleted.rowcount)


# -- the hot path: plain statements --------------------------------------------------------------
_APPLICABLE = (
    "SELECT id, project_id, agent, cap_nanos, timezone FROM budgets"
    " WHERE project_id = :project_id AND agent IN ('', :agent) ORDER BY id"
)
_PROJECT_BUDGETS = (
    "SELECT id, project_id, agent, cap_nanos, timezone FROM budgets WHERE project_id = :project_id"
)
_OPEN_DAY = (
    "INSERT INTO budget_days (budget_id, day, settled_nanos, held_nanos) VALUES (:budget_id, :day, 0, 0)"
    " ON CONFLICT DO NOTHING"
)
_UNGUARDED_SQL = (
    "(SELECT COALESCE(SUM(cost_nanos), 0) FROM unguarded_spend WHERE project_id = :project_id"
    " AND bucket >= :lo AND bucket < :hi{agent})"
)
_ADMIT = {
    scoped: "UPDATE budget_days SET held_nanos = held_nanos + :hold WHERE budget_id = :budget_id AND day = :day"
    " AND settled_nanos + held_nanos + :hold + "
    + _UNGUARDED_SQL.format(agent=" AND agent = :agent" if scoped else "")
    + " <= :cap"
    for scoped in (False, True)
}
_UNGUARDED = {
    scoped: "SELECT " + _UNGUARDED_SQL.format(agent=" AND agent = :agent" if scoped else "") + " AS n"
    for scoped in (False, True)
}
_DAY_FIGURES = "SELECT settled_nanos, held_nanos FROM budget_days WHERE budget_id = :budget_id AND day = :day"
_SETTLE_DAY = (
    "UPDATE budget_days SET held_nanos = held_nanos - :hold, settled_nanos = settled_nanos + :actual"
    " WHERE budget_id = :budget_id AND day = :day"
)
_RESERVATION = (
    "SELECT id, project_id, provider, model, hold_nanos, holds, state, actual_nanos, expires_at"
    " FROM reservations WHERE id = :id"
)
_JSONB = {False: ":holds", True: "CAST(:holds AS JSONB)"}
_NEW_RESERVATION = {
    pg: "INSERT INTO reservations (id, project_id, agent, run_id, span_id, provider, model, hold_nanos, holds,"
    " state, created_at, expires_at) VALUES (:id, :project_id, :agent, :run_id, :span_id, :provider, :model,"
    f" :hold, {holds}, 'held', :created_at, :expires_at) ON CONFLICT (id) DO NOTHING"
    for pg, holds in _JSONB.items()
}
_RELEASED_UNSEEN = {
    pg: "INSERT INTO reservations (id, project_id, agent, provider, model, hold_nanos, holds, state,"
    f" actual_nanos, created_at, expires_at, settled_at) VALUES (:id, :project_id, '', NULL, '', 0, {empty},"
    " 'released', 0, :now, :now, :now) ON CONFLICT (id) DO NOTHING"
    for pg, empty in ((False, "'[]'"), (True, "CAST('[]' AS JSONB)"))
}
_CLOSE = {
    from_state: "UPDATE reservations SET state = :state, actual_nanos = :actual, settled_at = :now"
    f" WHERE id = :id AND state = '{from_state}'"
    for from_state in ("held", "expired")
}
_EXPIRED = (
    "SELECT id, project_id, provider, model, hold_nanos, holds, state, actual_nanos, expires_at"
    " FROM reservations WHERE state = 'held' AND expires_at < :now ORDER BY expires_at LIMIT :limit"
)


def _rows(db: Connection | LedgerTx, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(db, LedgerTx):
        return db.rows(sql, params)
    return [dict(r) for r in db.execute(text(sql), params).mappings()]


def applicable_budgets(tx: LedgerTx, *, project_id: int, agent: str) -> list[dict[str, Any]]:
    """The project's budget and the agent's own, in id order (the order rows are locked in)."""
    return tx.rows(_APPLICABLE, {"project_id": project_id, "agent": agent})


def project_budgets(tx: LedgerTx, *, project_id: int) -> list[dict[str, Any]]:
    """Every budget of the project."""
    return tx.rows(_PROJECT_BUDGETS, {"project_id": project_id})


def day_figures(db: Connection | LedgerTx, *, budget_id: int, day: str) -> tuple[int, int]:
    """(settled, held) nano-dollars of a budget's day; in a ledger transaction or not."""
    found = _rows(db, _DAY_FIGURES, {"budget_id": budget_id, "day": day})
    return (found[0]["settled_nanos"], found[0]["held_nanos"]) if found else (0, 0)


def unguarded_nanos(
    db: Connection | LedgerTx, *, project_id: int, agent: str, buckets: tuple[int, int]
) -> int:
    """Spend seen only in traces (calls no reservation guarded) in [lo, hi) buckets, of the
    project (``agent`` ``""``) or of one agent."""
    params = {"project_id": project_id, "agent": agent, "lo": buckets[0], "hi": buckets[1]}
    return int(_rows(db, _UNGUARDED[bool(agent)], params)[0]["n"])


def admit(
    tx: LedgerTx,
    *,
    budget_id: int,
    day: str,
    hold: int,
    cap: int,
    project_id: int,
    agent: str,
    buckets: tuple[int, int],
) -> bool:
    """Hold ``hold`` on a budget's day if settled + unguarded + held + hold <= cap (opening the day
    first); False, holding nothing, if it would cross the cap."""
    tx.run(_OPEN_DAY, {"budget_id": budget_id, "day": day})
    params = {
        "hold": hold,
        "budget_id": budget_id,
        "day": day,
        "project_id": project_id,
        "lo": buckets[0],
        "hi": buckets[1],
        "agent": agent,
        "cap": cap,
    }
    return tx.run(_ADMIT[bool(agent)], params) == 1


def new_reservation(
    tx: LedgerTx,
    *,
    reservation_id: str,
    project_id: int,
    agent: str,
    run_id: str | None,
    span_id: str | None,
    provider: str | None,
    model: str,
    hold: int,
    holds: list[tuple[int, str]],
    created_at: int,
    expires_at: int,
) -> bool:
    """Write a held reservation (holding ``hold`` on each (budget id, day) of ``holds``); False if
    its id exists already (on PostgreSQL it waits for a concurrent one with the id to finish)."""
    params = {
        "id": reservation_id,
        "project_id": project_id,
        "agent": agent,
        "run_id": run_id,
        "span_id": span_id,
        "provider": provider,
        "model": model,
        "hold": hold,
        "holds": orjson.dumps(holds).decode(),
        "created_at": created_at,
        "expires_at": expires_at,
    }
    return tx.run(_NEW_RESERVATION[tx.postgresql], params) == 1


def released_unseen(tx: LedgerTx, *, reservation_id: str, project_id: int, now: int) -> bool:
    """Remember an id released before its reservation arrived (it will hold nothing); False if
    the id exists already."""
    params = {"id": reservation_id, "project_id": project_id, "now": now}
    return tx.run(_RELEASED_UNSEEN[tx.postgresql], params) == 1


def reservation(tx: LedgerTx, reservation_id: str) -> dict[str, Any] | None:
    """{id, project_id, provider, model, hold_nanos, holds: [(budget id, day)], state,
    actual_nanos, expires_at}, or None."""
    found = tx.rows(_RESERVATION, {"id": reservation_id})
    return _parsed(found[0]) if found else None


def expired_reservations(tx: LedgerTx, *, now: int, limit: int) -> list[dict[str, Any]]:
    """Held reservations whose hold expired before ``now``, oldest first (as :func:`reservation`)."""
    return [_parsed(r) for r in tx.rows(_EXPIRED, {"now": now, "limit": limit})]


def _parsed(r: dict[str, Any]) -> dict[str, Any]:
    holds = r["holds"]  # JSON text on SQLite, parsed on PostgreSQL
    r["holds"] = [(b, d) for b, d in (orjson.loads(holds) if isinstance(holds, str | bytes) else holds)]
    return r


def close_reservation(
    tx: LedgerTx, *, reservation_id: str, from_state: str, state: str, actual: int, now: int
) -> bool:
    """Move a reservation from ``from_state`` (held or expired) to ``state`` with its actual
    cost; False if it was not in ``from_state`` (closed concurrently: the first close stands)."""
    params = {"state": state, "actual": actual, "now": now, "id": reservation_id}
    return tx.run(_CLOSE[from_state], params) == 1


def move_to_settled(tx: LedgerTx, moves: dict[tuple[int, str], tuple[int, int]]) -> None:
    """Per (budget id, day): (hold, actual) — ``hold`` leaves held, ``actual`` joins settled. Day
    rows in (budget id, day) order, the order reservations lock them in: no deadlock."""
    for (budget_id, day), (hold, actual) in sorted(moves.items()):
        tx.run(_SETTLE_DAY, {"hold": hold, "actual": actual, "budget_id": budget_id, "day": day})
