"""Waiting for a decision without a thread per waiter.

An agent waits for its request with a bounded long poll. Every waiter of a server process is an
``asyncio`` future; one poller task per process looks up the status of every awaited request in
one query every :data:`POLL_SECONDS` (a decision made by another server process is seen within that
time) and resolves the futures whose request left the state they wait on. A decision made in this
process wakes its waiters at once (:meth:`Waiters.notify`). A thousand waiting agents cost a
thousand futures and one query per poll, no thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from controlroom.approvals import requests as ap
from controlroom.store.engine import Store
from controlroom.store.tables import approvals

POLL_SECONDS = 0.05
logger = logging.getLogger(__name__)


@dataclass
class _Waiter:
    project_id: int
    status: str  # the state being waited out
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Waiters:
    def __init__(self, store: Store, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._waiting: dict[str, list[_Waiter]] = defaultdict(list)
        self._poller: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    async def wait(
        self, *, project_id: int, approval_id: str, timeout: float, while_status: str = "pending"
    ) -> ap.Approval:
        """The request once it is no longer ``while_status``, or as it is when ``timeout`` seconds
        have passed. NotFound for an unknown id or another project's."""
        current = await asyncio.to_thread(self._get, project_id, approval_id)
        if current.status != while_status or timeout <= 0:
            return current
        waiter = _Waiter(project_id, while_status)
        self._waiting[approval_id].append(waiter)
        self._ensure_poller()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        finally:
            self._forget(approval_id, waiter)
        return await asyncio.to_thread(self._get, project_id, approval_id)

    def notify(self, approval_id: str) -> None:
        """A transition happened in this process: wake its waiters now (call on the event loop)."""
        for waiter in self._waiting.get(approval_id, ()):
            if not waiter.future.done():
                waiter.future.set_result(None)

    def _get(self, project_id: int, approval_id: str) -> ap.Approval:
        with self.store.read() as conn:
            return ap.get(conn, project_id=project_id, approval_id=approval_id)

    def _forget(self, approval_id: str, waiter: _Waiter) -> None:
        waiters = self._waiting.get(approval_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiting.pop(approval_id, None)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="approval-waiters")

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll_seconds)
            ids = list(self._waiting)
            try:
                statuses = await asyncio.to_thread(self._statuses, ids)
            except Exception:
                logger.exception("approval waiters: status poll failed; retrying")
                continue
            for approval_id, status in statuses.items():
                for waiter in self._waiting.get(approval_id, ()):
                    if status != waiter.status and not waiter.future.done():
                        waiter.future.set_result(None)

    def _statuses(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.store.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                out.update(
                    conn.execute(
                        select(approvals.c.id, approvals.c.status).where(approvals.c.id.in_(chunk))
                    ).all()
                )
        return out

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
