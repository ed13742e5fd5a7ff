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

from controlroom.budget.ledger import expire_holds
from controlroom.projections.projector import Projector
from controlroom.store.engine import Store
from controlroom.workers.consumer import Consumer
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
        """Let every consumer finish the batch it has under way."""
        for consumer in self.consumers.values():
            try:
                consumer.close()
            except Exception:
                logger.exception("worker: consumer %s failed to finish", consumer.name)

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
) -> Runtime:
    """controlroom's consumers and jobs: the read model's projector; the abandoned-run sweeper and
    budget hold expiry, each looked for at least twice per its timeout."""

    def sweep() -> int:
        return sweep_abandoned(store, quiet_seconds=abandon_after_seconds)

    jobs = [
        PeriodicJob("expire_holds", min(sweep_every_seconds, hold_seconds / 2), lambda: expire_holds(store)),
        PeriodicJob(
            "sweep_abandoned", min(sweep_every_seconds, abandon_after_seconds / 2), sweep, when_idle=True
        ),
    ]
    return Runtime(store, [Projector(store, batch=batch)], jobs, poll_seconds=poll_seconds)
