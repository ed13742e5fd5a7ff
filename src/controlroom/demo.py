"""`controlroom demo`: a living system for a first look. A simulated fleet of three agents (a support
bot, a research agent, a coding agent) on a simulated model provider: 30 days of history written
straight into the run log, then live runs sent through the real SDK while the server runs.

The history has what production has: successes, provider timeouts and their retries, fallbacks to
another model, tool errors, abandoned runs, cost that varies by day — and one cost-spike day, when the
research agent looped. A new demo project also gets daily cost caps (DEMO_CAPS): a generous one for
the project, and a small one for the coding agent, whose live runs are refused once it is spent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controlroom.accounts.projects import Project
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import budgets

logger = logging.getLogger(__name__)

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
MS = 10**6


@dataclass(frozen=True)
class Model:
    provider: str
    name: str


GPT4O_MINI = Model("openai", "gpt-4o-mini")
GPT4O = Model("openai", "gpt-4o")
SONNET = Model("anthropic", "claude-sonnet-4-5")
HAIKU = Model("anthropic", "claude-3-5-haiku-latest")
O3_MINI = Model("openai", "o3-mini")

QUESTIONS = [
    "Where is my order #{n}?",
    "Can I get a refund for order #{n}?",
    "How do I reset my password?",
    "My invoice #{n} is wrong",
    "Cancel my subscription",
    "Is product {n} in stock?",
]
TOPICS = [
    "EU AI Act obligations",
    "vector database benchmarks",
    "battery recycling startups",
    "LLM evaluation methods",
    "solid-state battery patents",
    "carbon capture costs",
]
TASKS = [
    "fix flaky test in billing",
    "add pagination to /orders",
    "upgrade SQLAlchemy to 2.x",
    "refactor auth middleware",
    "write migration for invoices",
    "speed up CSV export",
]


@dataclass(frozen=True)
class DemoApproval:
    """An approval request of the history, and what a person made of it (``decision`` None: nobody
    has yet; "expired": nobody did in time)."""

    run_id: str
    span_id: str
    agent: str
    action: str
    arguments: dict[str, Any]
    requested_at: int
    decision: str | None
    decided_at: int
    by: str
    reason: str | None


@dataclass
class Recorder:
    """Builds run-log events for one simulated run, on a simulated clock."""

    run_id: str
    clock: int
    rng: random.Random
    events: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[DemoApproval] = field(default_factory=list)

    def emit(self, type_: str, body: dict[str, Any], ts: int, suffix: str) -> None:
        self.events.append(
            {"id": f"{self.run_id}{suffix}", "type": type_, "run_id": self.run_id, "ts": ts, "body": body}
        )

    def advance(self, ms: float) -> int:
        self.clock += int(ms * MS)
        return self.clock

    def span_id(self) -> str:
        return f"{self.rng.getrandbits(64) | 1:016x}"

    def span(self, name: str, kind: str, parent: str | None, **start: Any) -> str:
        sid = self.span_id()
        body = {"span_id": sid, "kind": kind, "name": name, **start}
        if parent:
            body["parent_span_id"] = parent
        self.emit("span.started", body, self.advance(self.rng.uniform(1, 20)), f"{sid}.s")
        return sid

    def end(self, sid: str, took_ms: float, **end: Any) -> None:
        self.emit("span.ended", {"span_id": sid, **end}, self.advance(took_ms), f"{sid}.e")

    def llm(
        self,
        parent: str,
        model: Model,
        prompt: Any,
        *,
        tokens_in: int,
        tokens_out: int,
        fail: str | None = None,
        **extra: Any,
    ) -> str:
        sid = self.span(
            f"{model.provider}.chat",
            "llm",
            parent,
            provider=model.provider,
            model=model.name,
            input=prompt,
            **extra,
        )
        if fail == "timeout":
            self.end(
                sid,
                30_000,
                status="error",
                error={"type": "APITimeoutError", "message": "Request timed out."},
            )
        elif fail == "overloaded":
            self.end(
                sid,
                800,
                status="error",
                error={"type": "InternalServerError", "message": "Error code: 529 - overloaded"},
            )
        else:
            cached = tokens_in // 3 if self.rng.random() < 0.5 else 0
            reasoning = tokens_out // 2 if model is O3_MINI else 0
            usage = {
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "cache_read_tokens": cached,
                "reasoning_tokens": reasoning,
            }
            self.end(
                sid,
                300 + tokens_out * self.rng.uniform(8, 25),
                usage=usage,
                output={"role": "assistant", "content": f"({tokens_out} tokens of answer)"},
            )
        return sid

    def call_with_retry(
        self, parent: str, models: list[Model], prompt: Any, fail_p: float, **kw: Any
    ) -> None:
        """Try the first model, retry it up to twice, then fall back — as call_with_fallback does.
        Now and then the first provider is degraded, and most attempts on it fail."""
        if self.rng.random() < 0.06:
            fail_p = 0.8
        last_failed: str | None = None
        for i, model in enumerate(models):
            retry_of = None
            for attempt in (1, 2, 3):
                failing = i < len(models) - 1 and self.rng.random() < fail_p
                extra: dict[str, Any] = {"attempt": attempt}
                if retry_of:
                    extra["retry_of"] = retry_of
                if attempt == 1 and last_failed and i > 0:
                    extra["fallback_from"] = last_failed
                sid = self.llm(
                    parent,
                    model,
                    prompt,
                    fail=self.rng.choice(["timeout", "overloaded"]) if failing else None,
                    **extra,
                    **kw,
                )
                if not failing:
                    return
                last_failed = retry_of = sid
                self.advance(500 * attempt)


def _ask_for_refund(rec: Recorder, root: str, order: int, now: int) -> None:
    """A refund waits for a person (an ``approval`` span, as the SDK records it). Most are approved
    within minutes, some rejected with a reason, a few expire unanswered; those of the last hours
    are still waiting. Now and then the customer asks to erase their data: admins only."""
    rng = rec.rng
    erase = rng.random() < 0.1
    action = "erase_customer_data" if erase else "refund"
    arguments: dict[str, Any] = (
        {"customer": f"user-{rng.randint(1, 400)}"}
        if erase
        else {"order_id": order, "usd": round(rng.uniform(5, 250), 2)}
    )
    asked = rec.clock
    sid = rec.span(action, "approval", root, input=arguments)
    age = now - rec.clock
    roll = rng.random()
    decided_at = asked + int(rng.uniform(1, 40) * 60 * 10**9)
    if age < 6 * HOUR_NS:  # still waiting (the refund policy expires them after 8 hours)
        decision, reason, by = None, None, ""
    elif roll < 0.75:
        decision, reason, by = "approved", None, "admin" if erase else "approver"
    elif roll < 0.92 or erase or age < 10 * HOUR_NS:
        decision, by = "rejected", "admin" if erase else "approver"
        reason = rng.choice(REJECTIONS)
    else:  # a refund nobody answered: it expired after the policy's 8 hours
        decision, reason, by = "expired", None, ""
        decided_at = asked + 8 * HOUR_NS
    rec.approvals.append(
        DemoApproval(
            rec.run_id, sid, "support-bot", action, arguments, asked, decision, decided_at, by, reason
        )
    )
    if decision is None:  # the agent stopped waiting: the request stays pending, nothing runs
        rec.end(
            sid,
            30_000,
            status="error",
            error={"type": "ApprovalPending", "message": f"nobody has decided on {action!r} yet"},
        )
        return
    if decision != "approved":
        status = "rejected" if decision == "rejected" else "expired"
        rec.end(
            sid,
            30_000,
            status="error",
            error={"type": f"Approval{status.title()}", "message": reason or f"the request {status}"},
        )
        return
    rec.clock = decided_at
    rec.end(
        sid, 5, attributes={"controlroom.approval.status": "claimed", "controlroom.approval.decided_by": by}
    )
    tool = rec.span("issue_refund" if not erase else "erase_customer_data", "tool", root, input=arguments)
    rec.end(tool, rng.uniform(100, 900), output={"ok": True})


REJECTIONS = (
    "the order was delivered: ask for a return first",
    "over the refund limit for this customer",
    "duplicate of an earlier refund",
)


# Agent versions over the history: the support bot's 1.5.0 went out four days ago and made it
# worse (more failed order lookups, less helpful answers): a regression its evals flag. The
# research agent's 2.2.0, five days ago, changed nothing its evals see.
SUPPORT_BOT_BAD_VERSION = "1.5.0"
VERSIONS = {
    "support-bot": (("1.4.0", None), (SUPPORT_BOT_BAD_VERSION, 4 * DAY_NS)),
    "research-agent": (("2.1.0", None), ("2.2.0", 5 * DAY_NS)),
    "coding-agent": (("0.9.0", None),),
}


def _version(agent: str, age_ns: int) -> str:
    """The agent's version for a run started ``age_ns`` ago."""
    current = VERSIONS[agent][0][0]
    for version, since in VERSIONS[agent][1:]:
        if since is not None and age_ns < since:
            current = version
    return current


def _run_events(
    rng: random.Random, agent: str, t0: int, spike: bool, now: int | None = None
) -> tuple[list[dict[str, Any]], list[DemoApproval]]:
    now = time.time_ns() if now is None else now
    run_id = f"{rng.getrandbits(128) | 1:032x}"
    rec = Recorder(run_id, t0, rng)
    n = rng.randint(1000, 99999)
    version = _version(agent, now - t0)
    degraded = version == SUPPORT_BOT_BAD_VERSION
    if agent == "support-bot":
        inputs: Any = {
            "question": rng.choice(QUESTIONS).format(n=n),
            "channel": rng.choice(["chat", "email"]),
        }
    elif agent == "research-agent":
        inputs = {"topic": rng.choice(TOPICS), "depth": rng.choice(["brief", "deep"])}
    else:
        inputs = {"task": rng.choice(TASKS), "repo": "acme/shop"}
    rec.emit(
        "run.started",
        {
            "agent": agent,
            "inputs": inputs,
            "agent_version": version,
            "environment": rng.choice(["production"] * 9 + ["staging"]),
            "user_id": f"user-{rng.randint(1, 400)}",
            "tags": [rng.choice(["web", "api", "batch"])],
        },
        t0,
        ".start",
    )
    root = rec.span(agent, "agent", None)
    error: dict[str, str] | None = None
    failing: str | None = None
    if agent == "support-bot":
        rec.call_with_retry(
            root,
            [GPT4O_MINI, HAIKU],
            [{"role": "user", "content": inputs["question"]}],
            0.04,
            tokens_in=rng.randint(600, 2500),
            tokens_out=rng.randint(60, 400),
        )
        tool = rec.span("lookup_order", "tool", root, input={"order_id": n})
        if rng.random() < (0.16 if degraded else 0.05):  # the bad release drops order ids now and then
            rec.end(
                tool,
                rng.uniform(50, 400),
                status="error",
                error={"type": "OrderServiceError", "message": f"order service returned 503 for #{n}"},
            )
            error, failing = (
                {"type": "OrderServiceError", "message": f"order service returned 503 for #{n}"},
                tool,
            )
        else:
            rec.end(
                tool,
                rng.uniform(20, 200),
                output={"order_id": n, "state": rng.choice(["shipped", "processing"])},
            )
            if rng.random() < 0.15:
                _ask_for_refund(rec, root, n, now)
            rec.llm(
                root,
                GPT4O_MINI,
                "compose the answer",
                tokens_in=rng.randint(900, 3000),
                tokens_out=rng.randint(80, 300),
            )
    elif agent == "research-agent":
        loops = rng.randint(12, 30) if spike else rng.randint(2, 5)
        for _ in range(loops):
            search = rec.span("web_search", "tool", root, input={"q": inputs["topic"]})
            rec.end(search, rng.uniform(200, 1500), output={"results": rng.randint(3, 10)})
            rec.call_with_retry(
                root,
                [SONNET, GPT4O],
                f"summarise results on {inputs['topic']}",
                0.06,
                tokens_in=rng.randint(4000, 16000),
                tokens_out=rng.randint(300, 1500),
            )
    else:
        for _ in range(rng.randint(2, 6)):
            rec.llm(
                root,
                O3_MINI,
                f"plan: {inputs['task']}",
                tokens_in=rng.randint(3000, 12000),
                tokens_out=rng.randint(800, 4000),
            )
            tool = rec.span(rng.choice(["run_tests", "edit_file", "read_file"]), "tool", root)
            if rng.random() < 0.04:
                rec.end(
                    tool,
                    rng.uniform(500, 5000),
                    status="error",
                    error={"type": "CalledProcessError", "message": "pytest exited with status 1"},
                )
                error, failing = (
                    {"type": "CalledProcessError", "message": "pytest exited with status 1"},
                    tool,
                )
                break
            rec.end(tool, rng.uniform(100, 8000), output={"ok": True})
    if error is not None:
        rec.end(root, 5, status="error", error=error)
        rec.emit(
            "run.ended",
            {"status": "failed", "error": error, "failing_span_id": failing},
            rec.advance(2),
            ".end",
        )
    elif rng.random() < 0.01:
        pass  # the process died: no end; the sweeper marks it abandoned
    else:
        rec.end(root, 5)
        rec.emit("run.ended", {"status": "succeeded", "output": {"ok": True}}, rec.advance(2), ".end")
        helpful = round(rng.betavariate(5, 3) if degraded else rng.betavariate(8, 2), 3)
        rec.emit(
            "score.recorded",
            {
                "name": "helpfulness",
                "value": helpful,
                "normalised": helpful,
                "source": "evaluator",
                "evaluator": "demo-judge",
                "evaluator_version": "1",
                "kind": "numeric",
            },
            rec.advance(1),
            ".score",
        )
    return rec.events, rec.approvals


RUNS_PER_DAY = {"support-bot": 90, "research-agent": 20, "coding-agent": 15}


def history(
    *, days: int = 30, seed: int = 7, now_ns: int | None = None
) -> Iterator[tuple[list[dict[str, Any]], list[DemoApproval]]]:
    """Batches of events for ``days`` of fleet history, ending an hour ago, with the approval
    requests they made; day ``days - 6`` is the spike."""
    rng = random.Random(seed)
    now = now_ns or time.time_ns()
    start = now - days * DAY_NS
    for day in range(days):
        batch: list[dict[str, Any]] = []
        asked: list[DemoApproval] = []
        weekday_factor = 0.6 if day % 7 in (5, 6) else 1.0
        for agent, per_day in RUNS_PER_DAY.items():
            for _ in range(int(per_day * weekday_factor * rng.uniform(0.8, 1.2))):
                t0 = start + day * DAY_NS + rng.randrange(DAY_NS)
                if t0 > now - 3_600 * 10**9:
                    continue
                spike = agent == "research-agent" and day == days - 6 and rng.random() < 0.7
                events, approvals = _run_events(rng, agent, t0, spike, now)
                batch.extend(events)
                asked.extend(approvals)
        yield batch, asked


# (agent or None for the whole project, USD per day)
DEMO_CAPS: tuple[tuple[str | None, str], ...] = ((None, "500"), ("coding-agent", "0.25"))


def set_demo_caps(store: Store, project: Project) -> list[str]:
    """The demo's daily cost caps, for a project that has none yet; what was set, for the console."""
    from controlroom.budget import ledger

    with store.write() as conn:
        if conn.execute(select(budgets.c.id).where(budgets.c.project_id == project.id).limit(1)).first():
            return []
        for agent, cap in DEMO_CAPS:
            ledger.set_budget(store, conn, project=project, agent=agent, cap_usd=cap, timezone="UTC")
    return [f"${cap} for {agent or 'the project'}" for agent, cap in DEMO_CAPS]


DEMO_PASSWORD = "controlroom-demo"
DEMO_PEOPLE = (("admin", "admin"), ("approver", "approver"), ("viewer", "viewer"))


def ensure_demo_people(store: Store, project: Project) -> list[str]:
    """The demo's people, one per role, created the first time: "login (role)" for the console."""
    from controlroom.accounts import users as u

    with store.write() as conn:
        for login, role in DEMO_PEOPLE:
            if u.get_user(conn, login=login) is None:
                user = u.create_user(conn, login=login, password=DEMO_PASSWORD, name=f"Demo {role}")
                u.set_role(conn, user=user, project=project, role=u.Role[role])
    return [f"{login} ({role})" for login, role in DEMO_PEOPLE]


# Approval policies of a new demo project: refunds need an approver and expire after 8 hours
# unanswered; erasing a customer's data needs an admin, and not the one who started the run.
# The demo's evals: every run judged on whether it succeeded (post-run, and over the history at
# once), a nightly check of step counts; regressions compared by agent version.
DEMO_EVALS: tuple[dict[str, Any], ...] = (
    {"name": "succeeded", "evaluator": "run_succeeded", "trigger": "post_run", "grace_seconds": 5.0},
    {
        "name": "steps",
        "evaluator": "step_count",
        "params": {"max": 40},
        "trigger": "schedule",
        "schedule": "0 3 * * *",
        "window_seconds": 86_400.0,
    },
)


def set_demo_evals(store: Store, project: Project) -> list[str]:
    """The demo's eval configurations and regression settings, for a project that has none."""
    from controlroom.evals import configs as cf
    from controlroom.evals import monitor

    with store.write() as conn:
        if cf.list_configs(conn, project_id=project.id):
            return []
        for c in DEMO_EVALS:
            cf.create_config(store, conn, project_id=project.id, **c)
        monitor.set_settings(
            store, conn, project_id=project.id, settings=monitor.Settings(compare="agent_version")
        )
    return [str(c["name"]) for c in DEMO_EVALS]


def judge_history(store: Store, project: Project) -> tuple[int, int]:
    """Fold the history into the read model, judge it with the demo's evals (a backfill of each
    configuration over the 30 days) and look for regressions: the scores and the support bot's
    regression are there when the server starts. Returns (runs scored, regressions opened)."""
    from controlroom.evals import configs as cf
    from controlroom.evals import jobs, monitor
    from controlroom.projections.projector import Projector

    Projector(store).catch_up()
    scored = 0
    with store.read() as conn:
        configs = cf.list_configs(conn, project_id=project.id)
    for c in configs:
        with store.write() as conn:
            job_id = jobs.start_job(conn, c, kind="backfill", since=None, until=time.time_ns())
        job = jobs.take_job(store, job_id=job_id)
        if job is not None:
            scored += jobs.run_job(store, job).scored
    return scored, monitor.check(store, project_id=project.id).opened


DEMO_POLICIES = (("refund", "approver", False, 8 * 3_600.0), ("erase_customer_data", "admin", True, None))


def set_demo_policies(store: Store, project: Project) -> list[str]:
    from controlroom.accounts.users import Role
    from controlroom.approvals import policies

    with store.write() as conn:
        if policies.list_policies(conn, project_id=project.id):
            return []
        for action, role, four_eyes, expiry in DEMO_POLICIES:
            policy = policies.Policy(action, Role[role], four_eyes, expiry)
            policies.set_policy(store, conn, project_id=project.id, policy=policy)
    return [
        f"{action} needs {role}{' (four eyes)' if four_eyes else ''}"
        for action, role, four_eyes, _ in DEMO_POLICIES
    ]


def backfill(store: Store, project: Project, *, days: int = 30) -> int:
    """Write the history into the run log, with its approval requests and what people made of
    them (the demo's approver and admin deciding, as they would have); returns the number of events
    written. The project's approval policies and people are set first (see :data:`DEMO_POLICIES`,
    :func:`ensure_demo_people`)."""
    set_demo_policies(store, project)
    ensure_demo_people(store, project)
    total = 0
    for batch, asked in history(days=days):
        for i in range(0, len(batch), 5000):
            result = ingest_events(store, project.id, {"events": batch[i : i + 5000]}, max_events=5000)
            total += result.accepted
        for a in sorted(asked, key=lambda a: a.requested_at):
            _replay_approval(store, project.id, a)
    return total


def _replay_approval(store: Store, project_id: int, a: DemoApproval) -> None:
    from controlroom.accounts import users as u
    from controlroom.approvals import requests as ap

    request, _ = ap.request(
        store,
        project_id=project_id,
        run_id=a.run_id,
        action=a.action,
        arguments=a.arguments,
        idempotency_key=f"{a.action}#1",
        agent=a.agent,
        span_id=a.span_id,
        now=a.requested_at,
    )
    if a.decision == "expired":
        # the requests due by then: this one (those asked earlier were replayed before it, the
        # ones still waiting were asked in the last hours and are not due)
        ap.expire_due(store, now=a.decided_at)
    elif a.decision is not None:
        with store.read() as conn:
            person = u.user(conn, a.by)
            role = u.role_in(conn, user_id=person.id, project_id=project_id)
        assert role is not None, f"the demo's {a.by} has no role in the project"
        decider = ap.Decider(person.id, person.login, role)
        ap.decide(
            store,
            project_id=project_id,
            approval_id=request.id,
            decision=a.decision,
            arguments_hash=request.arguments_hash,
            decider=decider,
            reason=a.reason,
            now=a.decided_at,
        )
        if a.decision == "approved":
            claimed_at = a.decided_at + 50 * MS
            ap.claim(
                store,
                project_id=project_id,
                approval_id=request.id,
                arguments_hash=request.arguments_hash,
                now=claimed_at,
            )
            ap.complete(
                store,
                project_id=project_id,
                approval_id=request.id,
                outcome="executed",
                now=claimed_at + 500 * MS,
            )


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

                def call(model: str) -> str:
                    with cr.llm("openai", model, input=question) as c:
                        if model == "gpt-4o" and rng.random() < 0.1:
                            raise TimeoutError("Request timed out.")
                        c.record(
                            output="(answer)",
                            input_tokens=rng.randint(500, 3000),
                            output_tokens=rng.randint(50, 500),
                        )
                    return "(answer)"

                cr.call_with_fallback(call, ["gpt-4o", "gpt-4o-mini"], retries=1, backoff=0.05)
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
