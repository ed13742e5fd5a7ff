"""The demo's live fleet: the three agents running now through the real SDK, and the demo's
approver deciding the small refunds they ask for."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from controlroom.accounts.projects import Project
from controlroom.demo.history import QUESTIONS, REJECTIONS
from controlroom.store.engine import Store

logger = logging.getLogger(__name__)


class LiveFleet:
    """Runs the three agents now, through the real SDK, every few seconds, until stopped. Now and
    then the support bot asks to refund an order and waits (a thread of its own, up to two minutes)
    for a person; with ``store``, the demo's approver decides the smaller refunds after a little
    while (:class:`DemoApprover`), and the larger ones wait for a real person in the queue."""

    MAX_WAITING = 3  # support bots waiting for a decision at once

    def __init__(
        self, url: str, api_key: str, *, every_seconds: float = 3.0, approver: DemoApprover | None = None
    ) -> None:
        self.url, self.api_key, self.every = url, api_key, every_seconds
        self.approver = approver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controlroom-demo-fleet", daemon=True)
        self._waiting = threading.BoundedSemaphore(self.MAX_WAITING)

    def start(self) -> None:
        self._thread.start()
        if self.approver is not None:
            self.approver.start(self._stop)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import controlroom

        controlroom.init(url=self.url, api_key=self.api_key, flush_interval=0.5)
        rng = random.Random()
        while not self._stop.wait(self.every * rng.uniform(0.5, 1.5)):
            try:
                if rng.random() < 0.06 and self._waiting.acquire(blocking=False):
                    threading.Thread(
                        target=self._refund_run, args=(controlroom, rng.randint(1000, 99999)), daemon=True
                    ).start()
                    continue
                self._one_run(controlroom, rng)
            except Exception:
                logger.exception("demo fleet run failed")

    def _refund_run(self, cr: Any, order: int) -> None:
        """A customer wants their money back: the refund runs only once a person approved it."""
        rng = random.Random(order)
        usd = round(rng.uniform(5, 300), 2)
        try:
            with cr.run("support-bot", inputs={"question": f"refund order #{order}"}, tags=["live"]) as run:
                try:
                    with (
                        cr.approval("refund", {"order_id": order, "usd": usd}, wait=120),
                        cr.tool("issue_refund", input={"order_id": order, "usd": usd}) as tool,
                    ):
                        tool.set_output({"refund_id": f"re_{order}", "usd": usd})
                    run.set_output({"refund": "issued"})
                except cr.ApprovalRejected as e:
                    run.set_output({"refund": "declined", "reason": e.reason})
                except cr.ApprovalPending:
                    run.set_output({"refund": "waiting for a person"})
        except Exception:
            logger.exception("demo refund run failed")
        finally:
            self._waiting.release()

    @staticmethod
    def _one_run(cr: Any, rng: random.Random, agent: str | None = None) -> None:
        agent = agent or rng.choice(["support-bot"] * 6 + ["research-agent"] * 2 + ["coding-agent"])
        question = rng.choice(QUESTIONS).format(n=rng.randint(1000, 99999))
        try:
            with cr.run(agent, inputs={"question": question}, environment="production", tags=["live"]):
                # The small model first (the dear one only as the fallback): a run every 1.5 to
                # 4.5 s costs any agent well under the overview's spike minimum an hour (at most
                # ~$1.20 for the support bot), so a running demo does not flag its own live hours.
                def call(model: str) -> str:
                    with cr.llm("openai", model, input=question) as c:
                        if model == "gpt-4o-mini" and rng.random() < 0.1:
                            raise TimeoutError("Request timed out.")
                        c.record(
                            output="(answer)",
                            input_tokens=rng.randint(500, 3000),
                            output_tokens=rng.randint(50, 500),
                        )
                    return "(answer)"

                cr.call_with_fallback(call, ["gpt-4o-mini", "gpt-4o"], retries=1, backoff=0.05)
                with cr.tool("lookup_order", input={"question": question}):
                    if rng.random() < 0.05:
                        raise RuntimeError("order service returned 503")
        except (RuntimeError, cr.BudgetExceeded):
            pass  # recorded as a failed run (a refused call fails it too); the demo goes on


class DemoApprover:
    """The demo's approver at work on the live fleet's refunds: each one of at most
    :data:`LIMIT_USD` is decided 15 to 60 seconds after it was asked (most approved, a few
    rejected with a reason), as the ``approver`` user; larger ones are left for a real person."""

    LIMIT_USD = 200

    def __init__(self, store: Store, project: Project) -> None:
        self.store, self.project = store, project
        self._later: dict[str, float] = {}

    def start(self, stop: threading.Event) -> None:
        threading.Thread(
            target=self._loop, args=(stop,), name="controlroom-demo-approver", daemon=True
        ).start()

    def _loop(self, stop: threading.Event) -> None:
        rng = random.Random()
        while not stop.wait(2.0):
            try:
                self.decide_due(rng, time.monotonic())
            except Exception:
                logger.exception("demo approver failed")

    def decide_due(self, rng: random.Random, now: float) -> int:
        from controlroom.accounts import users as u
        from controlroom.approvals import requests as ap
        from controlroom.errors import Conflict

        with self.store.read() as conn:
            pending = ap.queue(conn, project_id=self.project.id, status="pending", limit=100)
            person = u.get_user(conn, login="approver")
            role = None if person is None else u.role_in(conn, user_id=person.id, project_id=self.project.id)
        if person is None or role is None:
            return 0
        decided = 0
        for a in pending:
            usd = a.arguments.get("usd") if isinstance(a.arguments, dict) else None
            if a.action != "refund" or not isinstance(usd, int | float) or usd > self.LIMIT_USD:
                continue
            due = self._later.setdefault(a.id, now + rng.uniform(15, 60))
            if due > now:
                continue
            reject = rng.random() < 0.15
            try:
                ap.decide(
                    self.store,
                    project_id=self.project.id,
                    approval_id=a.id,
                    decision="rejected" if reject else "approved",
                    arguments_hash=a.arguments_hash,
                    decider=ap.Decider(person.id, person.login, role),
                    reason=rng.choice(REJECTIONS) if reject else None,
                )
                decided += 1
            except Conflict:  # a real person decided first
                pass
            self._later.pop(a.id, None)
        return decided
