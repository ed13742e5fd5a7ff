"""A recorded run as an evaluator sees it: a typed, read-only snapshot of the read model.

Two ways to get one, giving equal snapshots of the same events:

- :func:`controlroom.evals.loading.load_runs` reads many runs from the read model in three queries
  per chunk of ids (runs, spans, scores), the batch path of eval jobs;
- :meth:`Run.from_events` folds a list of events in memory with the projector's own fold, so an
  evaluator is unit-tested without a server or a database.

Read-only: the dataclasses are frozen, a span is a view over its stored values, sequences are
tuples, and every JSON value (inputs, output, span input / output / attributes, metadata,
reference) is kept as the JSON text it was stored as and decoded on each access, so what an evaluator gets is its own copy: changing it changes nothing
another evaluator (or the next access) sees. Decoding on access also makes loading cheap: a value
nobody reads is never decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar, cast

import orjson

from controlroom import events as ev
from controlroom.cost import Pricer
from controlroom.evals.messages import reply_messages, to_messages
from controlroom.money import Usage
from controlroom.projections import fold
from controlroom.projections.queries import _acyclic_parents
from controlroom.store.json_text import decode

__all__ = ["Error", "LlmCall", "NotLoaded", "RecordedScore", "Run", "Span", "ToolCall"]

T = TypeVar("T")
NANOS_PER_USD = Decimal(10**9)
TOOL_NAME_PREFIX = "execute_tool "  # OpenTelemetry GenAI names a tool span "execute_tool {tool}"


@dataclass(frozen=True, slots=True)
class Error:
    """What failed: the exception's type and message, and the span it came from."""

    type: str
    message: str | None
    span_id: str | None


class Span(tuple):  # type: ignore[type-arg]
    """One span of a run: a read-only view over its stored values (a span is as cheap to load as
    the row it is read from: the eval batch path builds hundreds of thousands a second).
    ``error`` and ``usage`` are made on access; ``input``, ``output`` and ``attributes`` are decoded
    on each access (a copy). Spans compare by identity, as the span objects of one run."""

    __slots__ = ()
    FIELDS = (  # what a span tells, beside input, output and attributes
        "id",
        "parent_id",
        "kind",
        "name",
        "status",
        "started_at_ns",
        "ended_at_ns",
        "error",
        "provider",
        "model",
        "attempt",
        "retry_of",
        "fallback_from",
        "usage",
        "cost_nanos",
        "cost_source",
    )
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    @property
    def id(self) -> str:
        return cast(str, self[0])

    @property
    def parent_id(self) -> str | None:
        return cast("str | None", self[1])

    @property
    def kind(self) -> str | None:
        return cast("str | None", self[2])

    @property
    def name(self) -> str | None:
        return cast("str | None", self[3])

    @property
    def status(self) -> str:
        """running / ok / error"""
        return cast(str, self[4])

    @property
    def started_at_ns(self) -> int | None:
        return cast("int | None", self[5])

    @property
    def ended_at_ns(self) -> int | None:
        return cast("int | None", self[6])

    @property
    def error(self) -> Error | None:
        return Error(self[7], self[8], self[0]) if self[7] else None

    @property
    def provider(self) -> str | None:
        return cast("str | None", self[9])

    @property
    def model(self) -> str | None:
        return cast("str | None", self[10])

    @property
    def attempt(self) -> int | None:
        return cast("int | None", self[11])

    @property
    def retry_of(self) -> str | None:
        return cast("str | None", self[12])

    @property
    def fallback_from(self) -> str | None:
        return cast("str | None", self[13])

    @property
    def usage(self) -> Usage | None:
        """None: the span reported no token usage."""
        if self[14] is None:
            return None
        return Usage(self[14], self[15] or 0, self[16] or 0, self[17] or 0, self[18] or 0)

    @property
    def cost_nanos(self) -> int | None:
        """None: no cost (not a call, or a call of a model with no known price)."""
        return cast("int | None", self[19])

    @property
    def cost_source(self) -> str | None:
        """reported / computed / unknown; None for spans without usage."""
        return cast("str | None", self[20])

    @property
    def input(self) -> Any:
        return decode(self[22])

    @property
    def output(self) -> Any:
        return decode(self[23])

    @property
    def attributes(self) -> dict[str, Any]:
        return decode(self[24]) or {}

    @property
    def duration_s(self) -> float | None:
        if self[5] is None or self[6] is None:
            return None
        return cast(float, (self[6] - self[5]) / 1e9)

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self[19] is None else Decimal(self[19]) / NANOS_PER_USD

    def __repr__(self) -> str:
        return f"Span(id={self.id!r}, kind={self.kind!r}, name={self.name!r}, status={self.status!r})"

    def __reduce__(self) -> Any:
        return (_span, (tuple(self),))


@dataclass(frozen=True, slots=True)
class RecordedScore:
    """A score already attached to the run (by the SDK, a person or an evaluator)."""

    name: str
    value: float | None
    label: str | None
    comment: str | None
    span_id: str | None
    source: str  # sdk / human / evaluator
    evaluator: str | None
    ts_ns: int


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool span as a call: its values are decoded copies, the caller's own."""

    name: str
    arguments: Any
    result: Any
    error: Error | None
    span_id: str


@dataclass(frozen=True, slots=True)
class LlmCall:
    """A model call: ``input`` as recorded, ``messages`` the same as ``{role, content}`` messages
    (see :func:`controlroom.evals.messages.to_messages`), ``output`` the reply as recorded."""

    span_id: str
    name: str | None
    provider: str | None
    model: str | None
    input: Any
    messages: list[dict[str, Any]]
    output: Any
    usage: Usage | None
    cost_nanos: int | None
    error: Error | None
    attempt: int | None
    retry_of: str | None
    fallback_from: str | None

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.cost_nanos is None else Decimal(self.cost_nanos) / NANOS_PER_USD


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """A recorded run, read-only. Times are epoch nanoseconds (UTC), money nano-dollars (exact;
    ``cost_usd`` is the same as a Decimal). ``spans`` are in start order; ``reference`` is the
    expected answer when the run is a dataset case (None otherwise)."""

    id: str
    agent: str | None
    status: str  # running / succeeded / failed / cancelled / abandoned
    model: str | None
    agent_version: str | None
    environment: str | None
    session_id: str | None
    user_id: str | None
    started_at_ns: int | None
    ended_at_ns: int | None
    error: Error | None  # for a failed run: its error and failing span
    usage: Usage  # the run's model calls, each counted once
    cost_nanos: int  # of the calls with a known price
    unpriced_calls: int  # calls whose cost is unknown (not in cost_nanos)
    spans: tuple[Span, ...]
    scores: tuple[RecordedScore, ...]
    _inputs: Any = field(default=None, repr=False)
    _output: Any = field(default=None, repr=False)
    _tags: Any = field(default=None, repr=False)
    _metadata: Any = field(default=None, repr=False)
    _reference: Any = field(default=None, repr=False)

    # -- values ----------------------------------------------------------------------------------
    @property
    def inputs(self) -> Any:
        return decode(self._inputs)

    @property
    def output(self) -> Any:
        return decode(self._output)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(decode(self._tags) or ())

    @property
    def metadata(self) -> dict[str, Any]:
        return decode(self._metadata) or {}

    @property
    def reference(self) -> Any:
        return decode(self._reference)

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while the run has not ended."""
        if self.started_at_ns is None or self.ended_at_ns is None:
            return None
        return (self.ended_at_ns - self.started_at_ns) / 1e9

    @property
    def total_tokens(self) -> int:
        return self.usage.input_tokens + self.usage.output_tokens

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_nanos) / NANOS_PER_USD

    @property
    def failing_span(self) -> Span | None:
        return self.span(self.error.span_id) if self.error and self.error.span_id else None

    def with_reference(self, reference: Any) -> Run:
        """The same run with ``reference`` as its expected answer (a JSON value; None: no reference)."""
        return replace(self, _reference=None if reference is None else _dumps(reference))

    # -- the span tree ---------------------------------------------------------------------------
    def span(self, span_id: str) -> Span | None:
        return next((s for s in self.spans if s.id == span_id), None)

    def roots(self) -> tuple[Span, ...]:
        """The top of the tree: spans without a parent, or whose parent never arrived (a chain of
        spans naming each other as parents is cut at its earliest span, as the run detail shows it)."""
        parents = self._parents()
        return tuple(s for s in self.spans if parents[s.id] is None)

    def children(self, span: Span | str) -> tuple[Span, ...]:
        """A span's children, in start order."""
        span_id = span if isinstance(span, str) else span.id
        parents = self._parents()
        return tuple(s for s in self.spans if parents[s.id] == span_id)

    def _parents(self) -> dict[str, str | None]:
        order = {s.id: i for i, s in enumerate(self.spans)}
        return _acyclic_parents({s.id: s.parent_id for s in self.spans}, order)

    # -- calls -----------------------------------------------------------------------------------
    def tool_spans(self) -> list[Span]:
        """The spans of :meth:`tool_calls`, without decoding anything (cheap: for counting)."""
        return [s for s in self.spans if s.kind == "tool"]

    def tool_calls(self) -> list[ToolCall]:
        """The tool spans, in start order. A span named ``execute_tool X`` (OpenTelemetry) is the
        call of X; arguments are the span's input, else its ``gen_ai.tool.call.arguments``
        attribute; the result is its output, else ``gen_ai.tool.call.result``."""
        return [_tool_call(s) for s in self.spans if s.kind == "tool"]

    def llm_calls(self) -> list[LlmCall]:
        """The model calls (``llm`` spans), in start order, each counted once: a span wrapping
        another call that reported usage (a framework's span around the provider's) is left out,
        as it is from the run's cost."""
        return [_llm_call(s) for s in self.llm_spans()]

    def llm_spans(self) -> list[Span]:
        """The spans of :meth:`llm_calls`, without decoding anything (cheap: for counting)."""
        llm = [s for s in self.spans if s.kind == "llm"]
        if not llm:
            return []
        skip = fold.rollup_ids((s.id, s.parent_id, s.cost_source is not None) for s in self.spans)
        return [s for s in llm if s.id not in skip] if skip else llm

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as ``{role, content}`` messages.

        Chat APIs send the whole conversation with each call, so it is the input of the model call
        with the most input messages (the latest of equals: the main thread, not a side call such
        as a short classifier prompt), then that call's reply, then the run's output as a final
        assistant message unless it equals that reply's content. A run without model calls: its
        inputs as a user message and its output as an assistant message. Content is text where the
        recording has text (text parts joined by newlines), else the value as recorded."""
        best: LlmCall | None = None
        for call in self.llm_calls():
            if best is None or len(call.messages) >= len(best.messages):
                best = call
        out: list[dict[str, Any]] = []
        if best is None:
            inputs = self.inputs
            if inputs is not None:
                out.append({"role": "user", "content": inputs})
        else:
            out.extend(best.messages)
            out.extend(reply_messages(best.output))
        output = self.output
        if output is not None and (not out or out[-1]["role"] != "assistant" or out[-1]["content"] != output):
            out.append({"role": "assistant", "content": output})
        return out

    # -- from events -----------------------------------------------------------------------------
    @classmethod
    def from_events(
        cls, events: Iterable[Mapping[str, Any]], *, reference: Any = None, pricer: Pricer | None = None
    ) -> Run:
        """The run these events (wire format, as the SDK sends them: ``{id, type, run_id, ts,
        body}``) make once folded, as :func:`load_runs` would load it after the server took them:
        validated like ingest does (ValueError naming the event), a re-sent id ignored, folded in
        list order with the projector's fold, calls priced by ``pricer`` (default: the bundled
        price data, no project overrides)."""
        validated = _validated(events)
        run_id = validated[0].run_id
        row = fold.new_run(0, run_id, 1, validated[0].ts, validated[0].ts)
        span_rows: dict[str, fold.Row] = {}
        score_rows: list[tuple[int, str, RecordedScore]] = []  # (ts, event id): load_runs' order
        for seq, e in enumerate(validated, start=1):
            body = e.body.model_dump(mode="json", exclude_defaults=True)  # as the log stores it
            if row["abandoned_at"] is not None and e.type in _REVIVING:
                row["abandoned_at"] = None
            if e.type in _RUN_EVENTS:
                fold.apply_run_event(row, e.type, e.ts, body)
            elif e.type in _SPAN_EVENTS:
                span = span_rows.get(body["span_id"])
                if span is None:
                    span = span_rows[body["span_id"]] = fold.new_span(0, run_id, body["span_id"], seq)
                fold.apply_span_event(span, e.type, e.ts, body)
            elif e.type == ev.SCORE_RECORDED:
                b = ev.with_defaults(e.type, body)
                score = RecordedScore(
                    b["name"],
                    b["value"],
                    b["label"],
                    b["comment"],
                    b["span_id"],
                    b["source"],
                    b["evaluator"],
                    e.ts,
                )
                score_rows.append((e.ts, e.id, score))
        pricer = pricer or _default_pricer()
        for span in span_rows.values():
            fold.price_span(span, pricer)
        fold.summarise_run(row, span_rows.values())
        span_values = [
            tuple(_dumps(s[c]) if c in JSON_SPAN_COLUMNS else s[c] for c in SPAN_COLUMNS)
            for s in span_rows.values()
        ]
        run_values = tuple(_dumps(row[c]) if c in JSON_RUN_COLUMNS else row[c] for c in RUN_COLUMNS)
        score_rows.sort(key=lambda s: s[:2])
        built = build_run(run_values, span_values, tuple(s for _, _, s in score_rows))
        return built.with_reference(reference) if reference is not None else built


class NotLoaded(tuple):  # type: ignore[type-arg]
    """What a snapshot holds in place of what was not loaded (an evaluator said it does not read
    it): reading it is an error, never an empty answer."""

    what: str

    def __new__(cls, what: str) -> NotLoaded:
        obj = super().__new__(cls)
        obj.what = what
        return obj

    def _refuse(self, *_: Any) -> Any:
        raise RuntimeError(
            f"this snapshot was loaded without its {self.what}: the evaluator says it does not read them"
        )

    __iter__ = __len__ = __getitem__ = __contains__ = __bool__ = _refuse


_RUN_EVENTS = (ev.RUN_STARTED, ev.RUN_ENDED, ev.RUN_ABANDONED)
_SPAN_EVENTS = (ev.SPAN_STARTED, ev.SPAN_ENDED, ev.SPAN_RECORDED)
_REVIVING = (ev.RUN_STARTED, ev.RUN_ENDED, *_SPAN_EVENTS)  # as the projector's REVIVING_EVENTS

# The stored layout a snapshot is built from (the read model's columns, in the order build_run and
# a Span read them); JSON columns stay JSON text until read.
RUN_COLUMNS = (
    "run_id",
    "agent",
    "status",
    "model",
    "agent_version",
    "environment",
    "session_id",
    "user_id",
    "started_at",
    "ended_at",
    "error_type",
    "error_message",
    "failing_span_id",
    *fold.TOKEN_FIELDS,
    "cost_nanos",
    "unpriced_calls",
    "inputs",
    "output",
    "tags",
    "metadata",
)
JSON_RUN_COLUMNS = frozenset(("inputs", "output", "tags", "metadata"))
SPAN_COLUMNS = (
    "span_id",
    "parent_span_id",
    "kind",
    "name",
    "status",
    "started_at",
    "ended_at",
    "error_type",
    "error_message",
    "provider",
    "model",
    "attempt",
    "retry_of",
    "fallback_from",
    *fold.TOKEN_FIELDS,
    "cost_nanos",
    "cost_source",
    "first_seq",
    "input",
    "output",
    "attributes",
)
JSON_SPAN_COLUMNS = frozenset(("input", "output", "attributes"))
SCORE_COLUMNS = ("name", "value", "label", "comment", "span_id", "source", "evaluator", "ts")
_pricer: Pricer | None = None


def _default_pricer() -> Pricer:
    global _pricer
    if _pricer is None:
        _pricer = Pricer()
    return _pricer


def _dumps(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _builder(cls: type[T]) -> Callable[[tuple[Any, ...]], T]:
    """Instances of the frozen, slotted dataclass ``cls`` from its fields' values, set straight
    through its slots. A frozen dataclass's __init__ sets each field with a call of
    object.__setattr__, about half the cost of building a span; this takes a third of that. For
    values read from the read model only (no __post_init__ runs, no default is filled in)."""
    setters = tuple(vars(cls)[f.name].__set__ for f in dataclasses.fields(cast(Any, cls)))
    new = object.__new__

    def build(values: tuple[Any, ...]) -> T:
        obj = new(cls)
        for set_value, value in zip(setters, values, strict=True):
            set_value(obj, value)
        return obj

    return build


def _span(v: Any) -> Span:
    """A Span over its values in SPAN_COLUMNS order (the run id may follow: it is not read)."""
    return tuple.__new__(Span, v)


def _order(v: Any) -> tuple[int, int]:
    return (v[5] or v[6] or 0, v[21])  # started (or ended) at, then arrival (first_seq)


def build_run(r: Any, span_values: Iterable[Any], run_scores: tuple[RecordedScore, ...]) -> Run:
    """A Run from its values in RUN_COLUMNS order, its spans' and its scores."""
    ordered = sorted(span_values, key=_order)
    return _new_run(
        (
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            Error(r[10], r[11], r[12]) if r[10] else None,
            Usage(r[13], r[14], r[15], r[16], r[17]),
            r[18],
            r[19],
            tuple(_span(v) for v in ordered),
            run_scores,
            r[20],
            r[21],
            r[22],
            r[23],
            None,  # no reference
        )
    )


_new_run = _builder(Run)


def _validated(events: Iterable[Mapping[str, Any]]) -> list[ev.AnyEvent]:
    out: list[ev.AnyEvent] = []
    seen: set[str] = set()
    for i, raw in enumerate(events):
        try:
            if isinstance(raw, Mapping) and raw.get("type") in ev.SERVER_EVENT_TYPES:
                envelope: dict[str, Any] = {k: raw.get(k) for k in ("id", "run_id", "ts", "body")}
                e: ev.AnyEvent = ev.server_event(raw["type"], **envelope)
            else:
                e = ev.validate_event(dict(raw) if isinstance(raw, Mapping) else raw)
        except ValueError as exc:
            which = f"id {raw.get('id')!r}" if isinstance(raw, Mapping) else repr(raw)[:80]
            raise ValueError(f"event {i} ({which}): {exc}") from None
        if out and e.run_id != out[0].run_id:
            raise ValueError(
                f"event {i} (id {e.id!r}) is of run {e.run_id}, the events before it of run {out[0].run_id}"
            )
        if e.id not in seen:  # a re-sent event is a no-op, as in the log
            seen.add(e.id)
            out.append(e)
    if not out:
        raise ValueError("Run.from_events needs at least one event")
    return out


def _tool_call(s: Span) -> ToolCall:
    name = s.name or ""
    if name.startswith(TOOL_NAME_PREFIX):
        name = name[len(TOOL_NAME_PREFIX) :]
    arguments, result = s.input, s.output
    if arguments is None or result is None or not name:
        attrs = s.attributes
        if arguments is None:
            arguments = _json_or_text(attrs.get("gen_ai.tool.call.arguments"))
        if result is None:
            result = _json_or_text(attrs.get("gen_ai.tool.call.result"))
        name = name or str(attrs.get("gen_ai.tool.name") or "")
    return ToolCall(name, arguments, result, s.error, s.id)


def _llm_call(s: Span) -> LlmCall:
    recorded = s.input
    return LlmCall(
        s.id,
        s.name,
        s.provider,
        s.model,
        recorded,
        to_messages(recorded),
        s.output,
        s.usage,
        s.cost_nanos,
        s.error,
        s.attempt,
        s.retry_of,
        s.fallback_from,
    )


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value
