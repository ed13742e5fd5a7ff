"""The runtime: one background thread that runs the log consumers and the periodic jobs.

Each pass lets every consumer handle a batch, then runs the jobs that are due. It passes again at
once while there is work; otherwise it sleeps until woken (``notify``: ingest in the same process)
or for ``poll_seconds`` (new events from another process are noticed by polling).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Connection

from controlroom.approvals import requests as approvals
from controlroom.budget.ledger import expire_holds
from controlroom.evals import jobs as eval_jobs
from controlroom.evals import monitor, postrun, schedule
from controlroom.events import APPROVAL_EVENT_TYPES
from controlroom.notifications import consumer as notifications
from controlroom.notifications import webhooks
from controlroom.projections.projector import Projector
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.log import LoggedEvent
from controlroom.workers.consumer import Consumer, DatabaseConsumer, lock_name, position, save_position
from controlroom.workers.jobs import PeriodicJob
from controlroom.workers.sweeper import sweep_abandoned

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        store: Store,
        consumers: Sequence[Consumer],
        jobs: Sequence[PeriodicJob] = (),
        *,
        poll_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.consumers = {c.name: c for c in consumers}
        self.jobs = list(jobs)
        self.poll = poll_seconds
        self._failed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """New events are in the log."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="controlroom-worker", daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        try:
            while not self._stop.is_set():
                self._failed = False
                done = self.step()
                if self._failed:
                    self._stop.wait(1.0)  # something is wrong (the database?): retry, not in a hot loop
                elif not done:
                    self._wake.wait(self.poll)
                    self._wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Let every consumer finish the batch it has under way, and stop the jobs that work on
        threads of their own (webhook sending, batch evals) at their next step."""
        for consumer in self.consumers.values():
            try:
                consumer.close()
            except Exception:
                logger.exception("worker: consumer %s failed to finish", consumer.name)
        for job in self.jobs:
            close = getattr(job.run, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("worker: job %s failed to stop", job.name)

    def step(self) -> int:
        """One pass: a batch for every consumer, then every job that is due (a job that waits for
        the consumers to catch up, when none had work). Jobs run even while consumers are behind
        (expired holds are spend the cap must see now). Returns the events the consumers handled."""
        handled = self._consume()
        now = time.monotonic()
        for job in self.jobs:
            if not job.due(now) or (job.when_idle and handled):
                continue
            try:
                if job.run_if_mine(self.store) and job.when_idle:
                    handled += self._consume()  # what it wrote to the log, folded at once
            except Exception:
                self._failed = True
                logger.exception("worker: job %s failed; it runs again at its next turn", job.name)
        return handled

    def _consume(self) -> int:
        handled = 0
        for consumer in self.consumers.values():
            try:
                handled += consumer.run_once()
            except Exception:
                self._failed = True
                logger.exception("worker: consumer %s failed; retrying", consumer.name)
        return handled


def standard_runtime(
    store: Store,
    *,
    batch: int = 5000,
    abandon_after_seconds: float = 3600.0,
    hold_seconds: float = 600.0,
    poll_seconds: float = 0.5,
    sweep_every_seconds: float = 10.0,
    public_url: str = "http://127.0.0.1:8750",
    regressions_every_seconds: float = 300.0,
) -> Runtime:
    """controlroom's consumers and jobs: the read model's projector, the notifications consumer
    (webhook deliveries for approval events) and the post-run evals consumer; the abandoned-run
    sweeper and budget hold expiry, each looked for at least twice per its timeout; approval
    expiry; sending webhook deliveries; judging post-run evals that are due, queueing scheduled
    eval jobs and working batch eval jobs (on a thread of their own); looking for eval
    regressions every ``regressions_every_seconds``."""

    def sweep() -> int:
        return sweep_abandoned(store, quiet_seconds=abandon_after_seconds)

    jobs = [
        PeriodicJob("expire_holds", min(sweep_every_seconds, hold_seconds / 2), lambda: expire_holds(store)),
        PeriodicJob(
            "sweep_abandoned", min(sweep_every_seconds, abandon_after_seconds / 2), sweep, when_idle=True
        ),
        PeriodicJob("expire_approvals", APPROVAL_EXPIRY_EVERY, lambda: approvals.expire_due(store)),
        PeriodicJob("send_webhooks", WEBHOOKS_EVERY, webhooks.Sender(store)),
        PeriodicJob(
            "evals_postrun",
            EVALS_EVERY,
            eval_jobs.OnItsOwnThread(
                "controlroom-evals-postrun", lambda stop: postrun.judge_all_due(store, stop=stop)
            ),
        ),
        PeriodicJob("evals_schedule", EVALS_EVERY, lambda: schedule.queue_due(store)),
        PeriodicJob(
            "evals_batch",
            EVALS_EVERY,
            eval_jobs.OnItsOwnThread(
                "controlroom-evals-batch", lambda stop: eval_jobs.run_due(store, stop=stop)
            ),
        ),
        PeriodicJob("evals_regressions", regressions_every_seconds, lambda: monitor.check_all(store)),
    ]
    consumers: list[Consumer] = [
        Projector(store, batch=batch),
        Notifications(store, public_url=public_url),
        PostRunEvals(store),
    ]
    return Runtime(store, consumers, jobs, poll_seconds=poll_seconds)


APPROVAL_EXPIRY_EVERY = 1.0
EVALS_EVERY = 1.0
WEBHOOKS_EVERY = 1.0


class TypedConsumer(DatabaseConsumer):
    """A database consumer of a few event types, a sliver of the log: it reads only those (by
    type, in a read transaction), and writes only when it found some, or every
    :data:`SAVE_EVERY` seconds to move its position past the rest — never a write transaction per
    poll, which on SQLite would compete with ingest for the one write lock. Its effects and its
    position are written together: exactly once."""

    types: tuple[str, ...] = ()
    SAVE_EVERY = 5.0

    def __init__(self, store: Store, *, batch: int = 500) -> None:
        super().__init__(store, batch=batch)
        self._next_save = 0.0

    def run_once(self) -> int:
        with self.store.read() as conn:
            start = position(conn, self.name)
            head = log.head(conn)
            if head <= start:
                return 0
            found = log.read_after(conn, start, self.batch, types=self.types, until=head)
        if not found and time.monotonic() < self._next_save:
            return 0
        end = found[-1].seq if len(found) == self.batch else head
        with self.store.write() as conn:
            if not self.store.try_lock(conn, lock_name(self.name)) or position(conn, self.name) != start:
                return 0  # another worker has it, or moved it meanwhile
            self.handle(conn, found)
            save_position(conn, self.name, end)
        self._next_save = time.monotonic() + self.SAVE_EVERY
        return len(found)


class Notifications(TypedConsumer):
    """Follows the log for approval events and enqueues their webhook deliveries."""

    name = notifications.NAME
    types = APPROVAL_EVENT_TYPES

    def __init__(self, store: Store, *, public_url: str, batch: int = 500) -> None:
        super().__init__(store, batch=batch)
        self.public_url = public_url

    def handle(self, conn: Connection, events: list[LoggedEvent]) -> None:
        notifications.handle(self.store, conn, events, public_url=self.public_url)


class PostRunEvals(TypedConsumer):
    """Follows the log for runs that end and queues them for the post-run eval configurations
    (with a position of its own: a rebuild of the read model never re-runs evals)."""

    name = postrun.NAME
    types = postrun.ENDINGS

    def handle(self, conn: Connection, events: list[LoggedEvent]) -> None:
        postrun.handle(self.store, conn, events)
