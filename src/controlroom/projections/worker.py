"""The background loop of `serve` and `worker`: keep the read model caught up with the log, sweep
abandoned runs and settle expired budget holds. Ingest wakes it at once; otherwise it polls."""

from __future__ import annotations

import logging
import threading
import time

from controlroom.budget.ledger import expire_holds
from controlroom.projections.projector import Projector
from controlroom.projections.sweeper import sweep_abandoned
from controlroom.store.engine import Store

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        store: Store,
        *,
        batch: int = 5000,
        abandon_after_seconds: float = 3600.0,
        hold_seconds: float = 600.0,
        poll_seconds: float = 0.5,
        sweep_every_seconds: float = 10.0,
    ) -> None:
        self.projector = Projector(store, batch=batch)
        self.store = store
        self.abandon_after = abandon_after_seconds
        self.poll = poll_seconds
        # abandoned runs and expired holds are looked for at least twice per their timeout
        self.sweep_every = min(sweep_every_seconds, abandon_after_seconds / 2)
        self.expire_every = min(sweep_every_seconds, hold_seconds / 2)
        self._next_expiry = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0

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
        while not self._stop.is_set():
            try:
                folded = self.step()
            except Exception:
                logger.exception("projector step failed; retrying")
                folded = 0
                self._stop.wait(1.0)
            if not folded:
                self._wake.wait(self.poll)
                self._wake.clear()

    def step(self) -> int:
        """One pass: fold a batch; settle expired holds when due (even while the projector is
        behind: that is spend the cap must see); when caught up, maybe sweep abandoned runs.
        Returns events folded."""
        folded = self.projector.run_once()
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + self.expire_every
            expire_holds(self.store)
        if folded == 0 and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_every
            if sweep_abandoned(self.store, quiet_seconds=self.abandon_after):
                return self.projector.run_once()
        return folded
