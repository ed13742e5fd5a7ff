"""Log consumers: how a follower of the run log reads it, and where its position is kept.

Delivery semantics:

- A consumer whose effects are rows in this database (``DatabaseConsumer``; the read model) writes
  its effects and its new position in one transaction: each event takes effect exactly once, even
  across crashes and across worker processes.
- A consumer with effects outside the database (``ExternalConsumer``: a notification, a call to
  a model) makes them, then stores its position: a crash in between makes them again on restart,
  so effects are at least once and must be idempotent (e.g. keyed by the event's seq or id).

On PostgreSQL a consumer's batch runs under the advisory lock named ``consumer:<name>`` (the
projector keeps it while batches stream), so any number of worker processes may run it side by
side: one folds, the others skip that turn.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Protocol

from sqlalchemy import Connection, delete, select, update

from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.tables import consumer_positions


class Consumer(Protocol):
    """What the runtime runs: a name (its position's key) and one step."""

    name: str

    def run_once(self) -> int:
        """Handle one batch after the stored position; how many events (0: caught up, or another
        process has the consumer's lock)."""
        ...

    def close(self) -> None:
        """Finish what is under way and let go of any lock (the runtime is stopping)."""
        ...


def lock_name(consumer: str) -> str:
    return f"consumer:{consumer}"


def position(conn: Connection, name: str) -> int:
    """The seq of the last event consumer ``name`` is done with (0: none yet)."""
    pos = conn.execute(
        select(consumer_positions.c.position).where(consumer_positions.c.name == name)
    ).scalar()
    return int(pos or 0)


def save_position(conn: Connection, name: str, seq: int) -> None:
    now = time.time_ns()
    n = conn.execute(
        update(consumer_positions)
        .where(consumer_positions.c.name == name)
        .values(position=seq, updated_at=now)
    ).rowcount
    if n == 0:
        conn.execute(consumer_positions.insert().values(name=name, position=seq, updated_at=now))


def reset_position(conn: Connection, name: str) -> None:
    """Start consumer ``name`` again from the beginning of the log (other consumers keep theirs)."""
    conn.execute(delete(consumer_positions).where(consumer_positions.c.name == name))


def lag(conn: Connection, name: str) -> tuple[int, int, int]:
    """(position, head of the log, age in ns of the oldest event not yet consumed: 0 if none)."""
    pos = position(conn, name)
    head = log.head(conn)
    if head <= pos:
        return pos, head, 0
    oldest = log.read_after(conn, pos, 1)
    return pos, head, max(0, time.time_ns() - oldest[0].received_at) if oldest else 0


class DatabaseConsumer(ABC):
    """A consumer whose effects are rows in this database: ``handle`` writes them in the
    transaction that also stores the new position (exactly once)."""

    name: str

    def __init__(self, store: Store, *, batch: int = 1000) -> None:
        self.store = store
        self.batch = batch

    @abstractmethod
    def handle(self, conn: Connection, events: list[log.LoggedEvent]) -> None:
        """Write the effects of ``events`` (in seq order) through ``conn``."""

    def run_once(self) -> int:
        with self.store.read() as conn:  # caught up: no write transaction (SQLite's one write lock)
            if log.head(conn) <= position(conn, self.name):
                return 0
        with self.store.write() as conn:
            if not self.store.try_lock(conn, lock_name(self.name)):
                return 0
            events = log.read_after(conn, position(conn, self.name), self.batch)
            if not events:
                return 0
            self.handle(conn, events)
            save_position(conn, self.name, events[-1].seq)
            return len(events)

    def close(self) -> None:
        """Nothing outlives a batch here."""
        return None


class ExternalConsumer(ABC):
    """A consumer whose effects are outside the database: ``deliver`` makes them, then the position
    is stored (at least once: a crash between the two delivers the batch again)."""

    name: str

    def __init__(self, store: Store, *, batch: int = 100) -> None:
        self.store = store
        self.batch = batch

    @abstractmethod
    def deliver(self, events: list[log.LoggedEvent]) -> None:
        """Make the effects of ``events`` (in seq order); raise to have the batch tried again."""

    def run_once(self) -> int:
        with self.store.exclusive(lock_name(self.name)) as mine:
            if not mine:
                return 0
            with self.store.read() as conn:
                events = log.read_after(conn, position(conn, self.name), self.batch)
            if not events:
                return 0
            self.deliver(events)
            with self.store.write() as conn:
                save_position(conn, self.name, events[-1].seq)
            return len(events)

    def close(self) -> None:
        """Nothing outlives a batch here."""
        return None
