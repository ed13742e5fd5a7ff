"""The LLM judge: a classifier over a recorded run, asking a model through the SDK.

A judge is a template filled from the run (``{inputs}``, ``{output}``, ``{reference}``,
``{messages}``, ...) and a fixed set of choices, each mapped to a score. The model is asked to
reason first and then name exactly one choice, as one JSON object ``{"reasoning", "choice"}``; an
answer that is not such an object, or names no valid choice, is an eval error — never a guess. The
score is categorical: its label the choice, its value the choice's number, its comment the
reasoning; the evaluator's range is (lowest, highest) of the choices' numbers, so the score
normalises like any other.

Its calls are the calls of an agent of its own, ``judge:<configuration>``, made with the SDK
(``controlroom.run`` and an instrumented ``openai`` / ``anthropic`` client): each judged run gives
one run of that agent, with an ``llm`` span carrying the usage and cost, so judge spend shows in
the cost rollups under that agent and never on the judged run. Inside an eval job the SDK writes
to the store directly (:mod:`controlroom.evals.inprocess`); before each call it reserves the
call's worst case against the project's daily cap *and* the judge's own daily budget (a cap on its
agent, set from ``budget_usd``). A refusal means no request: the judge raises :class:`Skip`
saying which cap is spent, and the run is left to be judged later.

Outside an eval job (a unit test, ``evals try`` without a store) there is no store: the judge
records with the SDK's default client if ``controlroom.init()`` was called — under that server's
caps, ``budget_usd`` not applied — else its calls go unrecorded and unguarded.

Sampling is deterministic by run id (a hash, the same runs every time, on every worker). Answers
are cached by the sha256 of (prompt, model, parameters): in the store's ``judge_cache`` table per
project inside an eval job, in a small in-process LRU outside one. A cache hit makes no call and
costs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from controlroom.evals import context
from controlroom.evals.context import EvalContext
from controlroom.evals.evaluator import Evaluator, Score, Skip
from controlroom.evals.judge_prompt import PROMPT_VERSION, Answer, InvalidAnswer, Prompt, bad, parse_answer
from controlroom.evals.snapshot import Run
from controlroom.money import parse_usd, to_usd
from controlroom.sdk._control import BudgetExceeded

__all__ = ["AGENT_PREFIX", "InvalidAnswer", "Judge", "JudgeSpec", "LLMJudge", "llm_judge"]

AGENT_PREFIX = "judge:"
PROVIDERS = ("openai", "anthropic")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
DEFAULT_MAX_OUTPUT_TOKENS = 512
PAUSE_SECONDS = 30.0  # after a failure the next call would meet too, runs are left alone this long
REQUEST_TIMEOUT = 60.0
SAMPLING_SALT = b"controlroom.llm_judge\0"
MEMORY_CACHE_SIZE = 1024
# rough figures for a backfill's estimate (jobs.preview): what a placeholder adds, what a judge writes
ESTIMATED_PLACEHOLDER_TOKENS = 500
ESTIMATED_OUTPUT_TOKENS = 200
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """What a judge is, checked: its prompt, its model and how to reach it, its sampling and budget."""

    name: str
    prompt: Prompt
    model: str
    provider: str  # the provider's name on the judge's spans (what prices its calls)
    kind: str  # the client: openai, anthropic, or url (an OpenAI-compatible server)
    base_url: str | None
    api_key_env: str | None  # None: a server that wants no key
    temperature: float | None  # None: not sent (anthropic)
    max_output_tokens: int
    sample_rate: float
    budget_nanos: int | None  # the judge's own daily cap; None: none set by the judge


class LLMJudge(Evaluator[[Run], Any]):
    """The evaluator :func:`llm_judge` makes: an :class:`Evaluator` whose function is a
    :class:`Judge`, and which says what judging one run costs, roughly (a backfill's preview)."""

    __slots__ = ()

    @property
    def judge(self) -> Judge:
        return cast(Judge, self.fn)

    @property
    def estimated_cost_per_run_usd(self) -> str | None:
        return self.judge.estimated_cost_per_run_usd()


def llm_judge(
    *,
    template: str,
    choices: Mapping[str, float],
    model: str,
    provider: str = "openai",
    api_key_env: str | None = None,
    base_url: str | None = None,
    temperature: float | None = None,
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
    sample_rate: float = 1.0,
    budget_usd: str | float | int | Decimal | None = None,
    name: str | None = None,
    version: str | None = None,
) -> LLMJudge:
    """An LLM judge (see the module's docstring); every parameter is checked here, a ValueError
    naming the bad one, so a configuration fails when it is saved, not on the first run judged.

    ``template``: text with the placeholders of ``judge_prompt.PLACEHOLDERS`` (``{{`` and ``}}``
    for braces); ``choices``: label -> score, at least two, not all equal; ``provider``:
    ``openai``, ``anthropic``, or the base URL of an OpenAI-compatible server; ``api_key_env``: the
    environment variable holding the key, read when the judge calls (default ``OPENAI_API_KEY`` /
    ``ANTHROPIC_API_KEY``; none for a URL provider); ``base_url``: another endpoint for ``openai``
    / ``anthropic``; ``temperature``: 0 by default (none for ``anthropic``, whose API takes none);
    ``sample_rate``: the share of runs judged, chosen by run id; ``budget_usd``: the judge's own
    daily cap; ``version``: by default a digest of what shapes the answer (template, choices,
    model, provider, base URL, temperature, max_output_tokens), so a changed judge starts a new
    score series and judges runs anew."""
    prompt = Prompt.make(template, choices)
    labels = prompt.labels
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise bad("model", f"must be a model name (1 to 256 characters), got {model!r}")
    span_provider, kind = _provider(provider, base_url)
    if api_key_env is None and kind != "url":
        api_key_env = DEFAULT_KEY_ENV[kind]
    if api_key_env is not None and (not isinstance(api_key_env, str) or not ENV_NAME.match(api_key_env)):
        raise bad("api_key_env", f"must be the name of an environment variable, got {api_key_env!r}")
    if kind == "anthropic":
        if temperature is not None:  # anthropic 2.x's Messages API has no sampling temperature
            raise bad("temperature", "is not taken by the anthropic provider (its API has no temperature)")
    elif temperature is None:
        temperature = 0.0
    elif (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise bad("temperature", f"must be a number from 0 to 2, got {temperature!r}")
    if isinstance(max_output_tokens, bool) or not isinstance(max_output_tokens, int):
        raise bad("max_output_tokens", f"must be an integer, got {max_output_tokens!r}")
    if not 16 <= max_output_tokens <= 100_000:
        raise bad("max_output_tokens", f"must be from 16 to 100000, got {max_output_tokens!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float) or not 0 < sample_rate <= 1:
        raise bad("sample_rate", f"must be more than 0 and at most 1, got {sample_rate!r}")
    budget = None
    if budget_usd is not None:
        try:
            budget = parse_usd(budget_usd, "budget_usd")
        except ValueError as e:
            raise bad("budget_usd", str(e).removeprefix("budget_usd ")) from None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad("name", f"must be a non-empty string, got {name!r}")
    if version is not None and (not isinstance(version, str) or not version.strip() or len(version) > 64):
        raise bad("version", f"must be a non-empty string of at most 64 characters, got {version!r}")
    shaping = {
        "template": template,
        "choices": dict(labels),
        "model": model,
        "provider": provider,
        "base_url": base_url,
        "temperature": None if temperature is None else float(temperature),
        "max_output_tokens": max_output_tokens,
    }
    params: dict[str, Any] = {
        **shaping,
        "api_key_env": api_key_env,
        "sample_rate": float(sample_rate),
        "budget_usd": None if budget is None else to_usd(budget),
    }
    spec = JudgeSpec(
        name=name or "llm_judge",
        prompt=prompt,
        model=model,
        provider=span_provider,
        kind=kind,
        base_url=base_url if kind != "url" else provider,
        api_key_env=api_key_env,
        temperature=None if temperature is None else float(temperature),
        max_output_tokens=max_output_tokens,
        sample_rate=float(sample_rate),
        budget_nanos=budget,
    )
    values = labels.values()
    return LLMJudge(
        Judge(spec),
        spec.name,
        version or _digest({"prompt": PROMPT_VERSION, **shaping})[:12],
        (min(values), max(values)),
        True,
        f"an LLM ({model}) classifies the run: {', '.join(labels)}",
        params,
    )


class Judge:
    """The judge's function over a run (what :class:`LLMJudge` calls), and its state: the provider
    clients it keeps, the budgets it has set, and its pauses after a failure that the next call
    would meet too."""

    def __init__(self, spec: JudgeSpec) -> None:
        self.spec = spec
        self._clients: dict[str, Any] = {}
        self._pauses: dict[tuple[int, int, str], tuple[float, str]] = {}
        self._budgets_set: set[tuple[int, int, str]] = set()
        self._lock = threading.Lock()

    # -- what it does with a run ---------------------------------------------------------------
    def __call__(self, run: Run) -> Score | None:
        if (run.agent or "").startswith(AGENT_PREFIX) or run.status == "running":
            return None  # a judge's own call is never judged (a post-run judge would chase its tail)
        if not self.sampled(run.id):
            return None
        messages = self.spec.prompt.messages(run)
        if messages is None:
            return None
        key = self.cache_key(messages)
        ctx = context.current()
        answer = _cached(ctx, key)
        if answer is None:
            answer = self._ask(ctx, run, messages, key)
        return Score(
            value=self.spec.prompt.labels[answer.choice],
            label=answer.choice,
            comment=answer.reasoning,
            kind="categorical",
        )

    def sampled(self, run_id: str) -> bool:
        """The same answer for a run every time, on every worker; independent of a configuration's
        own sampling, and nested across rates (the runs judged at 0.1 are among those at 0.2)."""
        if self.spec.sample_rate >= 1:
            return True
        digest = hashlib.sha256(SAMPLING_SALT + run_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.spec.sample_rate

    def cache_key(self, messages: list[dict[str, str]]) -> str:
        """sha256 of (prompt, model, parameters): equal keys would be equal requests."""
        spec = self.spec
        return _digest(
            {
                "messages": messages,
                "model": spec.model,
                "kind": spec.kind,
                "base_url": spec.base_url,
                "temperature": spec.temperature,
                "max_output_tokens": spec.max_output_tokens,
            }
        )

    # -- asking the model ----------------------------------------------------------------------
    def _ask(self, ctx: EvalContext | None, run: Run, messages: list[dict[str, str]], key: str) -> Answer:
        import controlroom

        agent = AGENT_PREFIX + (ctx.config if ctx is not None and ctx.config else self.spec.name)
        where = (id(ctx.store), ctx.project_id, agent) if ctx is not None else (0, 0, agent)
        self._check_pause(where)
        api_key = self._api_key(where)
        if ctx is not None:
            self._ensure_budget(ctx, agent, where)
        client = self._client(api_key)
        try:
            with (
                _recording(ctx),
                controlroom.run(
                    agent,
                    inputs={"run_id": run.id, "evaluator": self.spec.name},
                    metadata={"judged_run_id": run.id, "judged_agent": run.agent},
                    tags=["judge"],
                ) as judge_run,
            ):
                text, cut = self._call(client, messages)
                answer = parse_answer(
                    text, self.spec.prompt.labels, cut=cut, max_output_tokens=self.spec.max_output_tokens
                )
                judge_run.set_output({"choice": answer.choice, "reasoning": answer.reasoning})
        except BudgetExceeded as e:
            message = refusal_message(e, agent)
            if e.reason != "held_by_in_flight_calls":  # room comes back within seconds for that one
                self._pause(where, message)
            raise Skip(message) from None
        except Exception as e:
            if _is_provider_error(e) and getattr(e, "status_code", None) not in (400, 413, 422):
                message = f"the provider failed: {type(e).__name__}: {str(e)[:500]}"
                self._pause(where, message)
                raise Skip(message) from None
            raise  # a request the provider refused for this run (too long, ...): an eval error
        _remember(ctx, key, answer, judge_run.run_id)
        return answer

    def _call(self, client: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """The model's text and whether it was cut at ``max_output_tokens``."""
        if self.spec.kind == "anthropic":
            reply = client.messages.create(
                model=self.spec.model,
                system=messages[0]["content"],
                messages=messages[1:],
                max_tokens=self.spec.max_output_tokens,
            )
            text = "".join(getattr(b, "text", "") for b in reply.content if getattr(b, "type", "") == "text")
            return text, reply.stop_reason == "max_tokens"
        # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens);
        # OpenAI-compatible servers mostly know max_tokens only
        limit = "max_completion_tokens" if self.spec.kind == "openai" else "max_tokens"
        reply = client.chat.completions.create(
            model=self.spec.model,
            messages=messages,
            temperature=self.spec.temperature,
            **{limit: self.spec.max_output_tokens},
        )
        choice = reply.choices[0] if reply.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        return text, choice is not None and choice.finish_reason == "length"

    def _client(self, api_key: str) -> Any:
        """The provider's client (instrumented: its calls are LLM spans of the current run), kept
        for the next call."""
        with self._lock:
            client = self._clients.get(api_key)
            if client is None:
                client = self._clients[api_key] = self._new_client(api_key)
            return client

    def _new_client(self, api_key: str) -> Any:
        if self.spec.kind == "anthropic":
            import anthropic

            from controlroom.sdk.integrations.anthropic import instrument as instrument_anthropic

            return instrument_anthropic(
                anthropic.Anthropic(api_key=api_key, base_url=self.spec.base_url, timeout=REQUEST_TIMEOUT),
                provider=self.spec.provider,
            )
        import openai

        from controlroom.sdk.integrations.openai import instrument as instrument_openai

        return instrument_openai(
            openai.OpenAI(api_key=api_key, base_url=self.spec.base_url, timeout=REQUEST_TIMEOUT),
            provider=self.spec.provider,
        )

    def _api_key(self, where: tuple[int, int, str]) -> str:
        if self.spec.api_key_env is None:
            return "none"  # an OpenAI-compatible server that wants no key
        key = os.environ.get(self.spec.api_key_env)
        if not key:
            message = f"the judge's API key: the environment variable {self.spec.api_key_env} is not set here"
            self._pause(where, message)
            raise Skip(message)
        return key

    # -- the budget and pauses -----------------------------------------------------------------
    def _ensure_budget(self, ctx: EvalContext, agent: str, where: tuple[int, int, str]) -> None:
        """The judge's own budget: a daily cap on its agent, set (or changed) to ``budget_usd``
        before its first call in a project. Without ``budget_usd``, a cap set by hand on the agent
        is left as it is."""
        if self.spec.budget_nanos is None or where in self._budgets_set:
            return
        from controlroom.accounts.projects import project_by_id
        from controlroom.budget import ledger

        with ctx.store.read() as conn:
            found = ledger.get_budget(conn, project_id=ctx.project_id, agent=agent)
        if found is None or found.cap_nanos != self.spec.budget_nanos:
            with ctx.store.write() as conn:
                project = project_by_id(conn, ctx.project_id)
                ledger.set_budget(
                    ctx.store, conn, project=project, agent=agent, cap_usd=to_usd(self.spec.budget_nanos)
                )
        self._budgets_set.add(where)

    def _pause(self, where: tuple[int, int, str], message: str) -> None:
        """Leave runs alone for a while without asking again: a spent budget, a provider that is
        down or a missing key would refuse the next call too, and each try is a failed judge run."""
        with self._lock:
            self._pauses[where] = (time.monotonic() + PAUSE_SECONDS, message)

    def _check_pause(self, where: tuple[int, int, str]) -> None:
        with self._lock:
            paused = self._pauses.get(where)
        if paused is not None and paused[0] > time.monotonic():
            raise Skip(paused[1])

    # -- a backfill's estimate -----------------------------------------------------------------
    def estimated_cost_per_run_usd(self) -> str | None:
        """A rough cost of judging one run (USD): the prompt's fixed text at 4 characters a token,
        :data:`ESTIMATED_PLACEHOLDER_TOKENS` per placeholder, :data:`ESTIMATED_OUTPUT_TOKENS` of
        answer (at most ``max_output_tokens``), at the model's genai-prices price, times
        ``sample_rate``. None when the model has no known price."""
        from controlroom.money import ceil_nanos

        rates = _pricer().rates(provider=self.spec.provider, model=self.spec.model, at_ns=time.time_ns())
        if rates is None:
            return None
        prompt = self.spec.prompt
        input_tokens = (
            math.ceil(prompt.fixed_chars() / 4) + ESTIMATED_PLACEHOLDER_TOKENS * prompt.placeholders()
        )
        output_tokens = min(ESTIMATED_OUTPUT_TOKENS, self.spec.max_output_tokens)
        cost = input_tokens * rates.input + output_tokens * rates.output + rates.per_request
        return to_usd(ceil_nanos(cost * Decimal(str(self.spec.sample_rate))))


# -- refusals -----------------------------------------------------------------------------------


def refusal_message(e: BudgetExceeded, agent: str) -> str:
    """What a refused reservation (a ``BudgetExceeded``) means for the judge ``agent``, in words:
    whose cap, and until when."""
    if e.reason not in ("cap_reached", "held_by_in_flight_calls") or e.cap_usd is None:
        return str(e)
    whose = (
        f"judge budget of ${e.cap_usd}"
        if e.agent == agent
        else f"the project's daily cost cap of ${e.cap_usd}"
    )
    if e.reason == "held_by_in_flight_calls":
        return f"{whose} is held by calls in flight"
    needs = f", a call holds up to ${e.requested_usd}" if e.requested_usd else ""
    return f"{whose} for today is spent (${e.settled_usd} spent{needs}; it resets at {e.resets_at})"


# -- the cache ----------------------------------------------------------------------------------

_memory: OrderedDict[str, Answer] = OrderedDict()
_memory_lock = threading.Lock()


def _cached(ctx: EvalContext | None, key: str) -> Answer | None:
    if ctx is None:
        with _memory_lock:
            found = _memory.get(key)
            if found is not None:
                _memory.move_to_end(key)
            return found
    from sqlalchemy import select

    from controlroom.store.tables import judge_cache

    with ctx.store.read() as conn:
        row = conn.execute(
            select(judge_cache.c.choice, judge_cache.c.reasoning).where(
                judge_cache.c.project_id == ctx.project_id, judge_cache.c.key == key
            )
        ).first()
    return None if row is None else Answer(row.choice, row.reasoning)


def _remember(ctx: EvalContext | None, key: str, answer: Answer, judge_run_id: str) -> None:
    if ctx is None:
        with _memory_lock:
            _memory[key] = answer
            _memory.move_to_end(key)
            while len(_memory) > MEMORY_CACHE_SIZE:
                _memory.popitem(last=False)
        return
    from controlroom.store.tables import judge_cache

    row = {
        "project_id": ctx.project_id,
        "key": key,
        "choice": answer.choice,
        "reasoning": answer.reasoning,
        "judge_run_id": judge_run_id,
        "created_at": time.time_ns(),
    }
    with ctx.store.write() as conn:
        conn.execute(ctx.store.insert(judge_cache).values(row).on_conflict_do_nothing())


# -- internals ----------------------------------------------------------------------------------


@contextmanager
def _recording(ctx: EvalContext | None) -> Iterator[None]:
    """Inside an eval job: the SDK records with a client of the job's project that writes to the
    store (flushed when the block ends). Outside: with whatever client the process has."""
    if ctx is None:
        yield
        return
    from controlroom.evals.inprocess import local_client
    from controlroom.sdk._client import recording_with

    with local_client(ctx.store, ctx.project_id) as client, recording_with(client):
        yield


def _is_provider_error(e: Exception) -> bool:
    """An error of the provider's client (an answer with an error status, a timeout, a connection
    that failed), not of the judge's own code."""
    return type(e).__module__.split(".")[0] in ("openai", "anthropic")


@functools.lru_cache(maxsize=1)
def _pricer() -> Any:
    """genai-prices' prices (no project's overrides: an estimate is made without a store)."""
    from controlroom.cost import Pricer

    return Pricer()


def _provider(provider: Any, base_url: Any) -> tuple[str, str]:
    """The provider's name on the spans and the kind of client (openai / anthropic / url)."""
    from controlroom.sdk._transport import check_url

    if base_url is not None:
        if not isinstance(base_url, str):
            raise bad("base_url", f"must be an http(s) URL, got {base_url!r}")
        try:
            check_url(base_url)
        except ValueError as e:
            raise bad("base_url", f"{e}, got {base_url!r}") from None
    if provider in PROVIDERS:
        kind = str(provider)
        name = kind
    elif isinstance(provider, str) and provider.startswith(("http://", "https://")):
        try:
            check_url(provider)
        except ValueError as e:
            raise bad("provider", f"{e}, got {provider!r}") from None
        if base_url is not None:
            raise bad("base_url", "is for openai or anthropic; an OpenAI-compatible provider is its URL")
        kind, name = "url", urlsplit(provider).hostname or "openai-compatible"
    else:
        raise bad("provider", f"must be openai, anthropic or an http(s) URL, got {provider!r}")
    package = "anthropic" if kind == "anthropic" else "openai"
    if importlib.util.find_spec(package) is None:
        raise bad("provider", f"{provider!r} needs the {package} package where the judge runs")
    return name, kind


def _digest(doc: Any) -> str:
    return hashlib.sha256(
        orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    ).hexdigest()
