"""The demo's history: 30 days of a simulated fleet's runs as run-log events (successes, provider
timeouts and retries, fallbacks, tool errors, abandoned runs, a cost-spike day, a bad release),
and the approval requests those runs made, with what people made of them."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
        loops = rng.randint(40, 90) if spike else rng.randint(2, 5)  # a runaway loop
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
