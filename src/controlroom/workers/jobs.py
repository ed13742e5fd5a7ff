"""Periodic jobs: work the runtime does every so often rather than per event.

A job runs under the advisory lock named ``job:<name>`` (PostgreSQL), so across any number of
worker processes it runs in one at a time; each process keeps its own schedule, so with N workers
a job may run up to N times per period (each job here is safe to run again: it looks for what is
due and does it in its own transactions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controlroom.store.engine import Store

logger = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    name: str
    every_seconds: float
    run: Callable[[], int]  # does what is due; returns how much it did (for logs and tests)
    when_idle: bool = False  # only when every consumer has caught up (e.g. the sweeper)
    next_at: float = field(default=0.0, compare=False)  # time.monotonic() of its next turn

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def run_if_mine(self, store: Store) -> int:
        """Run now if no other process is running it; schedule the next turn either way."""
        self.next_at = time.monotonic() + self.every_seconds
        with store.exclusive(f"job:{self.name}") as mine:
            return self.run() if mine else 0
