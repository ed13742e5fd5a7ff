"""Agent-trace workload: run-log events shaped like the ones the SDK sends for a real agent run.

A run is a root ``agent`` span whose children alternate ``llm`` and ``tool`` spans. An llm span
carries provider / model, token usage, four attributes and about 1 KB of message content spread
over its input and output. A run is sent either the SDK's way (``run.started``, then
``span.started`` + ``span.ended`` per span as they happen, then ``run.ended``) or with one
``span.recorded`` event per span. Event ids and integer-nanosecond timestamps are the ones
``controlroom.sdk`` makes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controlroom.events import format_ts

MS = 1_000_000  # nanoseconds

_TEXT = (
    "the agent checks the order status and the refund policy before it answers the customer about "
    "shipping delays invoices a missing package warranty terms account settings and billing history "
    "while the retriever returns three documents from the knowledge base with relevant passages on "
    "returns exchanges damaged items subscription renewals payment methods and escalation rules"
)
_WORDS = tuple(_TEXT.split())


def _paragraphs(seed: int, count: int, length: int) -> tuple[str, ...]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words: list[str] = []
        size = 0
        while size < length:
            w = rng.choice(_WORDS)
            words.append(w)
            size += len(w) + 1
        out.append(" ".join(words)[:length])
    return tuple(out)


# Pools of text, so that building a million spans does not cost a million random paragraphs.
SYSTEM_PROMPTS = _paragraphs(1, 16, 200)
USER_MESSAGES = _paragraphs(2, 256, 380)
ANSWERS = _paragraphs(3, 256, 420)
QUERIES = _paragraphs(4, 128, 60)
TOOL_RESULTS = _paragraphs(5, 128, 160)
TOOLS = ("search_docs", "get_order", "http_get", "run_sql", "send_email")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What one run looks like; ``build_run`` turns it into events."""

    run_id: str
    agent: str
    start_ns: int
    n_spans: int = 6
    status: str = "succeeded"  # succeeded / failed / cancelled / running (never ended)
    flaky: bool = False  # the first llm call fails (and the agent carries on)
    provider: str = "openai"
    model: str = "gpt-4o-mini"
    environment: str = "production"
    agent_version: str = "1.4.2"
    tags: tuple[str, ...] = ()
    user_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def hex_id(*parts: object, size: int = 16) -> str:
    """A deterministic non-zero hex id of ``2 * size`` characters (32: run ids, 16: span ids)."""
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=size).hexdigest()


def _ts(ns: int, as_ns: bool) -> int | str:
    if as_ns:
        return ns
    ts = format_ts(ns)
    assert ts is not None
    return ts


def build_run(
    spec: RunSpec, rng: random.Random, *, recorded: bool = False, ts_ns: bool = True
) -> list[dict[str, Any]]:
    """The events of one run, in the order an instrumented agent emits them.

    ``recorded``: one ``span.recorded`` per span instead of ``span.started`` + ``span.ended``.
    ``ts_ns``: timestamps as integer epoch nanoseconds (as the SDK sends them), else RFC 3339.
    """
    rid = spec.run_id
    out: list[dict[str, Any]] = []
    suffix = {"run.started": ".start", "run.ended": ".end", "span.started": ".s", "span.ended": ".e"}
    suffix["span.recorded"] = ".r"

    def emit(etype: str, ns: int, body: dict[str, Any]) -> None:
        event_id = rid + body.get("span_id", "") + suffix[etype]  # the SDK's ids
        out.append({"id": event_id, "type": etype, "run_id": rid, "ts": _ts(ns, ts_ns), "body": body})

    question = rng.choice(USER_MESSAGES)
    emit(
        "run.started",
        spec.start_ns,
        {
            "agent": spec.agent,
            "inputs": {"question": question[:120]},
            "model": spec.model,
            "agent_version": spec.agent_version,
            "environment": spec.environment,
            "user_id": spec.user_id,
            "session_id": spec.session_id,
            "tags": list(spec.tags),
            "metadata": spec.metadata,
        },
    )
    root_id = rid[:16]
    # The children run one after another; the root spans them all.
    children: list[tuple[str, dict[str, Any], dict[str, Any], int, int]] = []
    t = spec.start_ns + rng.randrange(1, 5) * MS
    fails = spec.status == "failed"
    last = spec.n_spans - 1
    for j in range(1, spec.n_spans):
        span_id = hex_id(rid, j, size=8)
        failing = (fails and j == last) or (spec.flaky and j == 1)
        if j % 2 == 1:
            start, end = _llm_span(spec, rng, span_id, root_id, j, question, failing)
        else:
            start, end = _tool_span(rng, span_id, root_id, failing)
        ended_at = t + end.pop("_duration_ns")
        children.append((span_id, start, end, t, ended_at))
        t = ended_at + rng.randrange(1, 3) * MS
    run_end = t + MS
    root_start: dict[str, Any] = {
        "span_id": root_id,
        "kind": "agent",
        "name": spec.agent,
        "input": {"question": question[:120]},
    }
    root_end: dict[str, Any] = {"span_id": root_id, "status": "error" if fails else "ok"}
    if fails:
        root_end["error"] = {"type": "ToolError", "message": "the tool call failed after 3 attempts"}
    else:
        root_end["output"] = {"answer": rng.choice(ANSWERS)[:160]}
    ended = spec.status != "running"

    if recorded:
        if ended:
            emit("span.recorded", spec.start_ns, {**root_start, **root_end, "ended_at": _ts(run_end, ts_ns)})
        for _sid, start, end, s_ns, e_ns in children:
            emit("span.recorded", s_ns, {**start, **end, "ended_at": _ts(e_ns, ts_ns)})
    else:
        emit("span.started", spec.start_ns, root_start)
        for _sid, start, end, s_ns, e_ns in children:
            emit("span.started", s_ns, start)
            emit("span.ended", e_ns, end)
        if ended:
            emit("span.ended", run_end, root_end)
    if ended:
        body: dict[str, Any] = {"status": spec.status}
        if fails:
            body["error"] = {"type": "ToolError", "message": "the tool call failed after 3 attempts"}
            body["failing_span_id"] = children[-1][0] if children else root_id
        elif spec.status == "succeeded":
            body["output"] = {"answer": rng.choice(ANSWERS)[:200]}
        emit("run.ended", run_end, body)
    return out


def _llm_span(
    spec: RunSpec,
    rng: random.Random,
    span_id: str,
    parent: str,
    index: int,
    question: str,
    failing: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    start = {
        "span_id": span_id,
        "parent_span_id": parent,
        "kind": "llm",
        "name": "chat.completions",
        "provider": spec.provider,
        "model": spec.model,
        "input": {
            "messages": [
                {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                {"role": "user", "content": question},
            ]
        },
        "attributes": {
            "temperature": 0.2,
            "max_tokens": 1024,
            "step": index,
            "stream": False,
        },
    }
    input_tokens = rng.randrange(300, 2500)
    end: dict[str, Any] = {
        "span_id": span_id,
        "status": "error" if failing else "ok",
        "model": spec.model,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": rng.randrange(40, 600),
            "cache_read_tokens": rng.choice((0, 0, input_tokens // 2)),
        },
        "_duration_ns": rng.randrange(300, 2500) * MS,
    }
    if failing:
        end["error"] = {"type": "RateLimitError", "message": "429 Too Many Requests"}
    else:
        end["output"] = {"role": "assistant", "content": rng.choice(ANSWERS)}
    return start, end


def _tool_span(
    rng: random.Random, span_id: str, parent: str, failing: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    start = {
        "span_id": span_id,
        "parent_span_id": parent,
        "kind": "tool",
        "name": rng.choice(TOOLS),
        "input": {"query": rng.choice(QUERIES)},
        "attributes": {"tool.version": "2"},
    }
    end: dict[str, Any] = {"span_id": span_id, "status": "error" if failing else "ok"}
    if failing:
        end["error"] = {"type": "ToolError", "message": "upstream returned 503"}
    else:
        end["output"] = {"result": rng.choice(TOOL_RESULTS)}
    end["_duration_ns"] = rng.randrange(20, 400) * MS
    return start, end


def batches(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]
